"""Reading a UI-format workflow into nodes with widgets and links: :class:`_Loader`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .frontend import DYNAMIC_COMBO, TYPE_RENAMES, Frontend
from .graph import _Graph, _Input, _Node, _parse_links, _unique_subgraph_node_ids, _Widget
from .widgets import (
    _dynamic_children,
    _make_widgets,
    _migrate_widgets_values,
    _ordered_specs,
    _widget_kind,
)

__all__ = []


class _Loader:
    def __init__(self, ui: Mapping[str, Any], object_info: Mapping[str, Any], fe: Frontend):
        self.object_info = object_info
        self.fe = fe
        if fe.modern:
            ui = _unique_subgraph_node_ids(ui)
        self.definitions = {
            d["id"]: d
            for d in ((ui.get("definitions") or {}).get("subgraphs") or [])
            if isinstance(d, Mapping) and "id" in d
        }
        self.subgraphs: dict[str, _Graph] = {}
        self.all_nodes: list[_Node] = []
        self.root = self.graph(ui)

    def graph(self, raw: Mapping[str, Any]) -> _Graph:
        g = _Graph(
            links=_parse_links(raw.get("links")),
            inputs=list(raw.get("inputs") or []),
            outputs=list(raw.get("outputs") or []),
        )
        for item in raw.get("nodes") or []:
            if isinstance(item, Mapping) and "id" in item:
                node = self.node(item, g)
                g.nodes[node.id] = node
        return g

    def subgraph(self, sid: str) -> _Graph:
        if sid not in self.subgraphs:
            self.subgraphs[sid] = _Graph()  # a placeholder stops a self-referencing definition
            self.subgraphs[sid] = self.graph(self.definitions[sid])
        return self.subgraphs[sid]

    def node(self, raw: Mapping[str, Any], g: _Graph) -> _Node:
        ntype = str(raw.get("type") or "")
        ntype = TYPE_RENAMES.get(ntype, ntype)
        definition = self.object_info.get(ntype)
        title = raw.get("title") or ""
        node = _Node(
            dict(raw),
            raw["id"],
            ntype,
            int(raw.get("mode") or 0),
            title,
            g,
            definition=dict(definition) if isinstance(definition, Mapping) else None,
        )
        ui_inputs = [i for i in raw.get("inputs") or [] if isinstance(i, Mapping)]
        ui_outputs = [o for o in raw.get("outputs") or [] if isinstance(o, Mapping)]
        values = raw.get("widgets_values")
        if ntype in self.definitions:
            self._subgraph_node(node, ui_inputs, ui_outputs, values)
        elif node.definition is not None:
            self._comfy_node(node, ui_inputs, ui_outputs, values)
        else:
            node.inputs = [
                _Input(
                    str(i.get("name", "")),
                    i.get("type"),
                    i.get("link"),
                    (i.get("widget") or {}).get("name"),
                )
                for i in ui_inputs
            ]
            node.output_types = [o.get("type") for o in ui_outputs]
        if not node.title:
            node.title = self._default_title(node)
        self.all_nodes.append(node)
        return node

    def _default_title(self, node: _Node) -> str:
        if node.definition is not None:
            return str(
                node.definition.get("display_name") or node.definition.get("name") or node.type
            )
        if node.type in self.definitions:
            return str(self.definitions[node.type].get("name") or node.type)
        return {"PrimitiveNode": "Primitive"}.get(node.type, node.type)

    def _comfy_node(
        self,
        node: _Node,
        ui_inputs: list[Mapping[str, Any]],
        ui_outputs: list[Mapping[str, Any]],
        values: Any,
    ) -> None:
        assert node.definition is not None
        specs = _ordered_specs(node.type, node.definition)
        node.widgets = _make_widgets(node.type, specs, self.fe)
        if node.type == "CustomCombo" and self.fe.modern:  # its extension: one widget per option
            count = max(1, len(values) - 2) if isinstance(values, list) else 1
            node.widgets += [_Widget("index", "INT", {}, -1)]
            node.widgets += [_Widget(f"option{i}", "STRING", {}, "") for i in range(1, count + 1)]
        self._assign_values(node, specs, values)
        by_name = {str(i.get("name")): i for i in ui_inputs}
        sockets = [s for s in specs if _widget_kind(s) is None]
        widget_names = {w.name for w in node.widgets}
        sockets += [s for s in specs if _widget_kind(s) is not None and s["name"] in widget_names]
        known = set()
        for s in sockets:
            known.add(s["name"])
            ui = by_name.get(s["name"]) or {}
            is_widget = _widget_kind(s) is not None
            node.inputs.append(
                _Input(s["name"], s.get("type"), ui.get("link"), s["name"] if is_widget else None)
            )
        for i in ui_inputs:
            name = str(i.get("name"))
            if name in known:
                continue
            widget = (i.get("widget") or {}).get("name")
            if widget and node.widget(widget) is None:
                continue  # the frontend drops a widget socket whose widget is gone
            node.inputs.append(_Input(name, i.get("type"), i.get("link"), widget))
        outputs = list(node.definition.get("output") or [])
        node.output_types = ["COMBO" if isinstance(t, list) else t for t in outputs]
        node.output_types += [o.get("type") for o in ui_outputs[len(outputs) :]]

    def _assign_values(self, node: _Node, specs: list[dict[str, Any]], values: Any) -> None:
        if isinstance(values, Mapping):  # some custom nodes save values by name
            for w in node.widgets:
                if w.name in values:
                    w.value = values[w.name]
        elif isinstance(values, list):
            values = _migrate_widgets_values(specs, node.widgets, values)
            # one value per widget that takes a slot, in order; a dynamic combo's value replaces
            # the widgets after it with those of the chosen option, which take the next values
            index = taken = 0
            while index < len(node.widgets) and taken < len(values):
                w = node.widgets[index]
                index += 1
                if not w.slot:
                    continue
                w.value = values[taken]
                taken += 1
                if w.kind == DYNAMIC_COMBO:
                    prefix = w.name + "."
                    node.widgets = [x for x in node.widgets if not x.name.startswith(prefix)]
                    node.widgets[index:index] = _dynamic_children(node.type, w, self.fe)
        sampler = (
            node.widget("sampler_name") if node.type in ("KSampler", "KSamplerAdvanced") else None
        )
        if (
            sampler is not None
            and isinstance(sampler.value, str)
            and sampler.value.startswith("sample_")
        ):
            sampler.value = sampler.value[7:]

    def _subgraph_node(
        self,
        node: _Node,
        ui_inputs: list[Mapping[str, Any]],
        ui_outputs: list[Mapping[str, Any]],
        values: Any,
    ) -> None:
        sub = node.subgraph = self.subgraph(node.type)
        slots = [_Input(str(s.get("name", "")), s.get("type")) for s in sub.inputs]
        for ui in ui_inputs:  # saved links go to the subgraph's input of the same name
            slot = next((x for x in slots if x.name == ui.get("name") and x.link is None), None)
            if slot is not None:
                slot.link = ui.get("link")
        node.inputs = slots
        node.output_types = [o.get("type") for o in sub.outputs]
        for i, ui in enumerate(ui_outputs):
            if i < len(node.output_types):
                node.output_types[i] = ui.get("type")
            else:
                node.output_types.append(ui.get("type"))
        # promoted widgets: one per input whose subgraph slot feeds an inner widget
        for inp in node.inputs:
            sub_slot = next((s for s in sub.inputs if s.get("name") == inp.name), None)
            if sub_slot is None:
                continue
            for link_id in sub_slot.get("linkIds") or []:
                link = sub.links.get(link_id)
                target = sub.nodes.get(link.target_id) if link else None
                if link is None or target is None:
                    continue
                tin = next((i for i in target.inputs if i.link == link.id), None)
                inner = target.widget(tin.widget) if tin else None
                if inner is not None:
                    node.widgets.append(
                        _Widget(inp.name, inner.kind, inner.spec, copy.deepcopy(inner.value))
                    )
                    inp.widget = inp.name
                    break
        if isinstance(values, list) and self.fe.instance_values_loaded:
            for w, v in zip(node.widgets, values, strict=False):
                w.value = v
            proxies = (node.raw.get("properties") or {}).get("proxyWidgets")
            if isinstance(proxies, list):
                for i, v in enumerate(values):
                    p = proxies[i] if i < len(proxies) else None
                    if not (isinstance(p, list) and len(p) == 2):
                        continue
                    if p[0] != "-1":
                        if self.fe.instance_widget_values:
                            node.inner_values[(str(p[0]), str(p[1]))] = v
                        continue
                    promoted = node.widget(p[1])
                    if promoted is not None and v is not None:
                        promoted.value = v
