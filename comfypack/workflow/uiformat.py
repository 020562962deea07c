"""Convert a UI-format workflow (what ComfyUI's *Save* writes) to the API format ``/prompt`` takes.

The conversion mirrors what ComfyUI's own frontend (``comfyui-frontend-package``) does in
``app.graphToPrompt()``, using a ComfyUI's ``/object_info`` for the node definitions. Frontends
differ; ``convert(..., frontend="1.45.21")`` picks the one to mirror (tested against the real
1.32.9, 1.45.21 and 1.58.1; see :class:`Frontend`):

- each node's widgets are rebuilt from its definition (inputs in ``input_order``: required, then
  optional, then what the frontend adds itself, e.g. the image ``upload`` button), and
  ``widgets_values`` are assigned to them in order. Widgets the frontend adds without an input
  (the "control after generate" combo after seeds, the upload buttons) take a value slot but are
  not sent. A dynamic combo (``COMFY_DYNAMICCOMBO_V3``) is followed by the widgets of its chosen
  option, named ``<combo>.<input>`` (e.g. ``resize_type.width``), which take the next values;
- an input with a link takes the link instead of its widget value; links are followed through
  ``Reroute`` nodes, bypassed nodes (mode 4: an output passes on the first input of a matching
  type) and subgraphs (node ids become ``"<subgraph node>:<inner node>"``; newer frontends first
  renumber a subgraph's nodes whose ids an earlier definition already uses; a subgraph node's saved
  values reach its promoted widgets, except in 1.33–1.45 where those show the inner widget's
  value; from 1.46 its values for the inner widgets its ``proxyWidgets`` name are that instance's,
  ``null`` too);
- ``PrimitiveNode`` values replace the widgets they feed; muted nodes (mode 2), notes and other
  frontend-only nodes are dropped, and links to dropped nodes removed (newer frontends: a muted
  node feeding a widget leaves the widget's own value; a muted or bypassed subgraph node drops
  all it contains);
- list values are sent as ``{"__value__": [...]}``; ``_meta.title`` is the node's title (or the
  node type's display name).

Missing node types are one :class:`~comfypack.errors.WorkflowError` listing them all.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import WorkflowError

__all__ = ["is_ui_format", "convert", "missing_node_types", "dynamic_prompt"]

logger = logging.getLogger(__name__)

MUTED = 2  # LGraphEventMode.NEVER
BYPASSED = 4  # LGraphEventMode.BYPASS
SUBGRAPH_INPUT = -10
SUBGRAPH_OUTPUT = -20

#: Node types the frontend renames when it loads a graph.
TYPE_RENAMES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
    "Load3DAnimation": "Load3D",
    "Preview3DAnimation": "Preview3D",
}

#: Frontend-only nodes: never sent to ComfyUI.
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"

#: Input types the frontend draws as widgets (core widgets and its bundled extensions').
WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "BOOLEAN",
        "STRING",
        "MARKDOWN",
        "COMBO",
        "IMAGEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "CHART",
        "GALLERIA",
        "TEXTAREA",
        "LOAD_3D",
        "PREVIEW_3D",
        "AUDIO_UI",
        "AUDIOUPLOAD",
        "AUDIO_RECORD",
        "WEBCAM",
        "PAINTER",
        "CURVE",
        "BOUNDING_BOX",
        "BOUNDING_BOXES",
        "RANGE",
        "COLORS",
        DYNAMIC_COMBO,
    }
)

#: Save nodes whose ``filename_prefix`` gets ``%Node.widget%`` / ``%date:…%`` replacements.
SAVE_NODES = frozenset(
    {
        "SaveImage",
        "SaveVideo",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)

#: Nodes the frontend gives an audio player widget (no value slot) → whether it is sent (as "").
#: comfypack's own web extension gives its audio input one too, kept out of the prompt.
AUDIO_UI_NODES: dict[str, bool] = {
    "LoadAudio": True,
    "SaveAudio": True,
    "PreviewAudio": True,
    "SaveAudioMP3": True,
    "SaveAudioOpus": True,
    "SaveAudioAdvanced": True,
    "ComfyPackInputAudio": False,
}

#: The buttons newer frontends give ``Load3D`` after its file combo: (name, value), both saved and sent.
LOAD3D_BUTTONS = (
    ("upload 3d model", "upload3dmodel"),
    ("upload extra resources", "uploadExtraResources"),
    ("clear", "clear"),
)

_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
_UNSET: Any = object()  # JavaScript's `undefined`: the key is left out of the JSON


@dataclass(frozen=True)
class Frontend:
    """What differs between the frontend versions comfypack mirrors (tested: 1.32.9, the one
    ComfyUI 0.3.75 pins; 1.45.21, pinned by 0.28.2; 1.58.1). A version between two tested ones
    behaves as the newer one."""

    version: tuple[int, ...]

    @classmethod
    def parse(cls, version: str | None) -> Frontend:
        """``"1.45.21"`` → its behaviour; ``None`` or unreadable → the newest comfypack knows."""
        nums = re.findall(r"\d+", version or "")
        return cls(tuple(int(n) for n in nums[:3]) if nums else (99,))

    @property
    def modern(self) -> bool:
        """1.33 and later: a muted node feeding an input resolves to nothing (the widget keeps its
        value); a muted or bypassed subgraph node on the root graph drops everything inside it;
        the ``PreviewAny`` text preview is not sent; the image-compare widget is sent; curves
        carry ``__type__``; subgraph node ids are made unique across definitions on load."""
        return self.version >= (1, 33)

    @property
    def instance_widget_values(self) -> bool:
        """1.46 and later: a subgraph node's ``widgets_values`` hold, for each ``proxyWidgets``
        entry naming an inner node, that instance's value of the inner widget — sent instead of
        the inner node's own value, ``null`` included (a value left out keeps the inner one)."""
        return self.version >= (1, 46)

    @property
    def instance_values_loaded(self) -> bool:
        """A subgraph node's saved ``widgets_values`` reach its promoted widgets — not in 1.33 to
        1.45, where a promoted widget is a view of the inner widget: that widget's value is sent."""
        return not self.modern or self.instance_widget_values

    @property
    def audio_ui_sent(self) -> bool:
        """The audio player widget is part of the prompt before 1.46 (1.58: it is not)."""
        return self.version < (1, 46)


def is_ui_format(data: Any) -> bool:
    """Whether ``data`` is a UI-format workflow (``nodes`` and ``links``), not an API one."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


# ----------------------------------------------------------------------------------------------
# the graph


@dataclass
class _Link:
    id: Any
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: Any = None


@dataclass
class _Widget:
    name: str
    kind: str
    spec: dict[str, Any]
    value: Any = _UNSET
    slot: bool = True  # takes a place in widgets_values (litegraph: widget.serialize !== false)
    sent: bool = True  # part of the API prompt (options.serialize !== false)


@dataclass
class _Input:
    name: str
    type: Any
    link: Any = None
    widget: str | None = None


@dataclass
class _Node:
    raw: dict[str, Any]
    id: Any
    type: str
    mode: int
    title: str
    graph: _Graph
    definition: dict[str, Any] | None = None
    subgraph: _Graph | None = None  # set on subgraph instances
    inputs: list[_Input] = field(default_factory=list)
    output_types: list[Any] = field(default_factory=list)
    widgets: list[_Widget] = field(default_factory=list)
    #: on a subgraph node: (inner node id, widget name) → this instance's value of that widget
    inner_values: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def virtual(self) -> bool:
        return self.definition is None

    def widget(self, name: str | None) -> _Widget | None:
        return next((w for w in self.widgets if w.name == name), None) if name else None


@dataclass
class _Graph:
    nodes: dict[Any, _Node] = field(default_factory=dict)
    links: dict[Any, _Link] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # a subgraph's input slots
    outputs: list[dict[str, Any]] = field(default_factory=list)


def _unique_subgraph_node_ids(ui: Mapping[str, Any]) -> Mapping[str, Any]:
    """Newer frontends give a subgraph's node a new id when an earlier definition (or the root
    graph) already uses its id — the next free one after the graph's last node id — and patch
    the definition's links and the ``proxyWidgets`` that name it. A copy of ``ui``, so changed."""
    definitions = (ui.get("definitions") or {}).get("subgraphs") or []
    if not definitions:
        return ui
    ui = copy.deepcopy(dict(ui))
    definitions = ui["definitions"]["subgraphs"]
    state = ui.get("state") if ui.get("version") != 0.4 else None
    last = (state or {}).get("lastNodeId") if isinstance(state, Mapping) else None
    last = int(last if isinstance(last, int) else ui.get("last_node_id") or 0)
    used = {
        n.get("id")
        for n in ui.get("nodes") or []
        if isinstance(n, Mapping) and isinstance(n.get("id"), int)
    }
    remapped: dict[Any, dict[int, int]] = {}
    for sg in definitions:
        if not isinstance(sg, Mapping):
            continue
        mapping: dict[int, int] = {}
        for n in sg.get("nodes") or []:
            nid = n.get("id") if isinstance(n, Mapping) else None
            if not isinstance(nid, int) or isinstance(nid, bool):
                continue
            if nid in used:
                while True:
                    last += 1
                    if last not in used:
                        break
                mapping[nid] = n["id"] = last
                used.add(last)
            else:
                used.add(nid)
                last = max(last, nid)
        if mapping:
            remapped[sg.get("id")] = mapping
            for link in sg.get("links") or []:
                if isinstance(link, dict):
                    for end in ("origin_id", "target_id"):
                        old = link.get(end)
                        link[end] = mapping.get(old, old) if isinstance(old, int) else old
                elif isinstance(link, list) and len(link) >= 5:
                    link[1], link[3] = mapping.get(link[1], link[1]), mapping.get(link[3], link[3])
            for w in sg.get("widgets") or []:
                if isinstance(w, dict) and w.get("id") in mapping:
                    w["id"] = mapping[w["id"]]
    all_nodes = list(ui.get("nodes") or []) + [
        n for sg in definitions if isinstance(sg, Mapping) for n in sg.get("nodes") or []
    ]
    for n in all_nodes:
        renumbered = remapped.get(n.get("type")) if isinstance(n, dict) else None
        proxies = (n.get("properties") or {}).get("proxyWidgets") if renumbered else None
        if not renumbered or not isinstance(proxies, list):
            continue
        for p in proxies:
            if isinstance(p, list) and p:
                try:
                    new = renumbered.get(int(p[0]))
                except (TypeError, ValueError):
                    continue
                if new is not None:
                    p[0] = str(new)
    return ui


def _parse_links(raw: Any) -> dict[Any, _Link]:
    links: dict[Any, _Link] = {}
    for item in raw or []:
        if isinstance(item, list) and len(item) >= 5:
            link = _Link(
                item[0],
                item[1],
                int(item[2]),
                item[3],
                int(item[4]),
                item[5] if len(item) > 5 else None,
            )
        elif isinstance(item, Mapping) and "id" in item:
            link = _Link(
                item["id"],
                item.get("origin_id"),
                int(item.get("origin_slot") or 0),
                item.get("target_id"),
                int(item.get("target_slot") or 0),
                item.get("type"),
            )
        else:
            continue
        links[link.id] = link
    return links


def _same_id(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


# ----------------------------------------------------------------------------------------------
# node definitions → widgets and inputs (what the frontend builds for each node type)


def _spec(raw: Any, name: str, optional: bool) -> dict[str, Any]:
    """A V1 input spec (``["INT", {...}]`` or ``[[options], {...}]``) in the frontend's V2 form."""
    opts = (
        dict(raw[1])
        if isinstance(raw, list) and len(raw) > 1 and isinstance(raw[1], Mapping)
        else {}
    )
    head = raw[0] if isinstance(raw, list) and raw else None
    spec: dict[str, Any] = {"name": name, "isOptional": optional, **opts}
    if isinstance(head, list):
        spec.update(type="COMBO", options=head)
    elif head == "COMBO":
        spec.update(type="COMBO", options=opts.get("options") or [])
    else:
        spec["type"] = head if isinstance(head, str) else "UNKNOWN"
    return spec


def _is_media_upload(raw: Any) -> bool:
    opts = (
        raw[1] if isinstance(raw, list) and len(raw) > 1 and isinstance(raw[1], Mapping) else None
    )
    if not opts or not any(
        opts.get(k) is True for k in ("image_upload", "video_upload", "animated_image_upload")
    ):
        return False
    return isinstance(raw[0], list) or raw[0] == "COMBO"


def _ordered_specs(class_type: str, definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node's input specs in the frontend's order, with the inputs its extensions add."""
    section = definition.get("input") or {}
    required = dict(section.get("required") or {})
    if class_type in AUDIO_UI_NODES:
        required["audioUI"] = ["AUDIO_UI", {}]
    audio = required.get("audio")
    if (
        isinstance(audio, list)
        and len(audio) > 1
        and isinstance(audio[1], Mapping)
        and audio[1].get("audio_upload") is True
    ):
        required["upload"] = ["AUDIOUPLOAD", {}]
    media = next((name for name, raw in required.items() if _is_media_upload(raw)), None)
    if media is not None:
        required["upload"] = ["IMAGEUPLOAD", {**required[media][1], "imageInputName": media}]
    if class_type in ("SaveGLB", "Preview3D"):
        required["image"] = ["PREVIEW_3D"]
    specs: dict[str, dict[str, Any]] = {}
    for name, raw in required.items():
        specs[name] = _spec(raw, name, False)
    for name, raw in (section.get("optional") or {}).items():
        specs[name] = _spec(raw, name, True)
    order = definition.get("input_order")
    if not order:
        return list(specs.values())
    out = [
        specs[n] for n in order.get("required") or [] if n in specs and not specs[n]["isOptional"]
    ]
    out += [specs[n] for n in order.get("optional") or [] if n in specs and specs[n]["isOptional"]]
    seen = {s["name"] for s in out}
    return out + [s for s in specs.values() if s["name"] not in seen]


def _widget_kind(spec: Mapping[str, Any]) -> str | None:
    kind = spec.get("widgetType") or spec.get("type")
    return kind if kind in WIDGET_TYPES and not spec.get("forceInput") else None


def _combo_default(spec: Mapping[str, Any]) -> Any:
    if spec.get("default"):
        return spec["default"]
    if spec.get("options"):
        return spec["options"][0]
    return "Loading..." if spec.get("remote") else _UNSET


def _make_widgets(class_type: str, specs: list[dict[str, Any]], fe: Frontend) -> list[_Widget]:
    widgets: list[_Widget] = []
    for spec in specs:
        kind = _widget_kind(spec)
        if kind is None:
            continue
        name = spec["name"]
        if kind == "INT":
            widgets.append(_Widget(name, kind, spec, spec.get("default", 0)))
            control = spec.get("control_after_generate")
            if control if control is not None else name in ("seed", "noise_seed"):
                widgets.append(
                    _Widget("control_after_generate", "control", {}, "randomize", sent=False)
                )
        elif kind == "COMBO":
            widgets.append(_Widget(name, kind, spec, _combo_default(spec)))
            if class_type == "Load3D" and name == "model_file" and fe.modern:  # its buttons (sent)
                widgets += [_Widget(n, "button", {}, v) for n, v in LOAD3D_BUTTONS]
            if spec.get("control_after_generate") and not spec.get("multi_select"):
                widgets.append(
                    _Widget("control_after_generate", "control", {}, "randomize", sent=False)
                )
                widgets.append(_Widget("control_filter_list", "control", {}, "", sent=False))
        elif kind in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
            widgets.append(
                _Widget(name, kind, spec, "image" if kind == "IMAGEUPLOAD" else "", sent=False)
            )
        elif kind == "AUDIO_UI":  # an audio player: no value slot, sent as "" (or its file's URL)
            sent = AUDIO_UI_NODES.get(class_type, True) and fe.audio_ui_sent
            widgets.append(_Widget(name, kind, spec, "", slot=False, sent=sent))
        elif kind == DYNAMIC_COMBO:  # a combo whose chosen option brings its own widgets
            keys = [o.get("key") for o in spec.get("options") or [] if isinstance(o, Mapping)]
            combo = _Widget(
                name,
                kind,
                {**spec, "options": keys, "raw_options": spec.get("options") or []},
                keys[0] if keys else _UNSET,
            )
            widgets.append(combo)
            widgets += _dynamic_children(class_type, combo, fe)
        elif kind == "IMAGECOMPARE":  # before/after viewer: no value slot; newer frontends send it
            widgets.append(_Widget(name, kind, spec, ["", ""], slot=False, sent=fe.modern))
        elif kind == "FLOAT":
            widgets.append(_Widget(name, kind, spec, spec.get("default", 0)))
        elif kind == "BOOLEAN":
            widgets.append(_Widget(name, kind, spec, spec.get("default", False)))
        elif kind in ("STRING", "MARKDOWN", "TEXTAREA"):
            widgets.append(_Widget(name, kind, spec, spec.get("default") or ""))
        else:
            widgets.append(_Widget(name, kind, spec, spec.get("default", _UNSET)))
    if class_type == "PreviewAny" and not fe.modern:  # a read-only text preview (sent, empty)
        widgets.append(_Widget("preview", "MARKDOWN", {}, "", slot=False))
    return widgets


def _dynamic_children(class_type: str, combo: _Widget, fe: Frontend) -> list[_Widget]:
    """The widgets the chosen option of a dynamic combo brings, named ``<combo>.<input>``
    (required, then optional; nested dynamic combos expand in turn)."""
    option = next(
        (
            o
            for o in combo.spec.get("raw_options") or []
            if isinstance(o, Mapping) and o.get("key") == combo.value
        ),
        None,
    )
    if option is None:
        return []
    section = option.get("inputs") or {}
    specs = [
        _spec(raw, f"{combo.name}.{sub}", optional)
        for optional, part in ((False, "required"), (True, "optional"))
        for sub, raw in (section.get(part) or {}).items()
    ]
    return _make_widgets(class_type, specs, fe)


def _migrate_widgets_values(
    specs: list[dict[str, Any]], widgets: list[_Widget], values: list[Any]
) -> list[Any]:
    """The frontend's ``migrateWidgetsValues``: drop values saved for ``forceInput`` inputs."""
    names = {w.name for w in widgets}
    relevant = [s for s in specs if s["name"] in names or s.get("forceInput")]
    size = sum(
        2 if s.get("control_after_generate") or s["name"] in ("seed", "noise_seed") else 1
        for s in relevant
    )
    if size != len(values):
        return values
    return [
        v for i, v in enumerate(values) if not (i < len(relevant) and relevant[i].get("forceInput"))
    ]


# ----------------------------------------------------------------------------------------------
# loading the graph


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


# ----------------------------------------------------------------------------------------------
# widget value transforms the frontend applies when it serializes


def _round_int(w: _Widget, v: Any) -> Any:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return v
    step = w.spec.get("step") or 1
    if step == 1:
        return _js_round(v)
    base = (w.spec.get("min") or 0) % step
    return _js_round((v - base) / step) * step + base


def _round_float(w: _Widget, v: Any) -> Any:
    """The frontend's float widget callback: round to the step's precision, clamp."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return v
    step = w.spec.get("step")
    step = 0.5 if step is None else float(step)
    precision = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    spec_round = w.spec.get("round")
    rnd = 10.0**-precision if precision and not spec_round else spec_round
    if not rnd:
        return v
    value = round(_js_round(v / rnd) * rnd, precision)
    lo = w.spec.get("min")
    hi = w.spec.get("max")
    return min(max(value, 0 if lo is None else lo), 2048 if hi is None else hi)


def _js_round(x: float) -> int:
    return math.floor(x + 0.5)


_DATE_PARTS = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")


def _format_date(fmt: str, now: datetime) -> str:
    def part(m: re.Match[str]) -> str:
        s = m.group(0)
        if s == "yy":
            return str(now.year)[2:]
        if s == "yyyy":
            return str(now.year)
        value = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}.get(
            s[0]
        )
        return s if value is None else str(value).zfill(len(s))

    return _DATE_PARTS.sub(part, fmt)


def _text_replacements(nodes: list[_Node], text: str) -> str:
    """The frontend's ``applyTextReplacements``: ``%Node.widget%`` and ``%date:FORMAT%``."""

    def sub(m: re.Match[str]) -> str:
        parts = m.group(1).split(".")
        if len(parts) != 2:
            return (
                _format_date(parts[0][5:], datetime.now())
                if parts[0].startswith("date:")
                else m.group(0)
            )
        found = [
            n for n in nodes if (n.raw.get("properties") or {}).get("Node name for S&R") == parts[0]
        ]
        found = found or [n for n in nodes if n.title == parts[0]]
        w = found[0].widget(parts[1]) if found else None
        if w is None:
            return m.group(0)
        value = "" if w.value is _UNSET or w.value is None else _js_str(w.value)
        return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", value)

    return re.sub(r"%([^%]+)%", sub, text)


def _js_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """The frontend's ``processDynamicPrompt``: strip comments, pick one of ``{a|b|c}``."""
    rng = rng or random.Random()
    text = re.sub(r"/\*[\s\S]*?\*/|//.*", "", text)
    pos = 0

    def escape() -> str:
        nonlocal pos
        ch = text[pos] if pos < len(text) else ""
        pos += 1
        return "\\" + ch

    def choice() -> str:
        nonlocal pos
        options: list[str] = []
        current, depth = "", 0
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch == "\\":
                current += escape()
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if not depth:
                    break
                depth -= 1
            elif ch == "|" and not depth:
                options.append(current)
                current = ""
                continue
            current += ch
        options.append(current)
        return dynamic_prompt(rng.choice(options), rng)

    out = ""
    while pos < len(text):
        ch = text[pos]
        pos += 1
        out += escape() if ch == "\\" else choice() if ch == "{" else ch
    return re.sub(r"\\([{}|])", r"\1", out)


def _annotated(value: Any, folder: str) -> Any:
    def one(v: Any) -> Any:
        if (
            not isinstance(v, str)
            or folder == "input"
            or re.search(r"\[(input|output|temp)\]", v, re.I)
        ):
            return v
        return f"{v} [{folder}]"

    return [one(v) for v in value] if isinstance(value, list) else one(value)


# ----------------------------------------------------------------------------------------------
# execution: flatten subgraphs, resolve links (mirrors the frontend's ExecutableNodeDTO)


@dataclass(frozen=True)
class _Resolved:
    origin_id: str | None = None
    origin_slot: int = -1
    value: Any = _UNSET  # a widget value instead of a link

    @property
    def is_value(self) -> bool:
        return self.origin_id is None


class _Exec:
    def __init__(self, loader: _Loader):
        self.loader = loader
        self.dtos: dict[str, tuple[_Node, tuple[Any, ...], _Node | None]] = {}
        self.order: list[str] = []
        for node in loader.root.nodes.values():
            inactive = node.mode in (MUTED, BYPASSED) and loader.fe.modern
            self._add(node, (), None, set(), inner=not inactive)

    def _add(
        self,
        node: _Node,
        path: tuple[Any, ...],
        instance: _Node | None,
        seen: set[str],
        inner: bool = True,
    ) -> None:
        exec_id = ":".join(str(p) for p in (*path, node.id))
        self.dtos[exec_id] = (node, path, instance)
        self.order.append(exec_id)
        if node.subgraph is not None and inner:
            if node.type in seen:
                raise WorkflowError(f"subgraph {node.type!r} contains itself (node {exec_id})")
            for child in node.subgraph.nodes.values():
                self._add(child, (*path, node.id), node, seen | {node.type})

    def _dto(
        self, path: tuple[Any, ...], node_id: Any
    ) -> tuple[str, tuple[_Node, tuple[Any, ...], _Node | None]]:
        exec_id = ":".join(str(p) for p in (*path, node_id))
        if exec_id not in self.dtos:
            raise WorkflowError(f"a link refers to node {exec_id}, which is not in the workflow")
        return exec_id, self.dtos[exec_id]

    def resolve_input(
        self, exec_id: str, slot: int, visited: set[str], type_: Any = None
    ) -> _Resolved | None:
        node, path, instance = self.dtos[exec_id]
        key = f"{exec_id}[I]{slot}"
        if key in visited:
            raise WorkflowError(f"links loop back on themselves at node {exec_id} ({node.title})")
        visited.add(key)
        if slot >= len(node.inputs):
            return None
        inp = node.inputs[slot]
        if inp.link is None:
            return None
        link = node.graph.links.get(inp.link)
        if link is None:
            raise WorkflowError(
                f"node {exec_id} ({node.title}): input {inp.name!r} has link "
                f"{inp.link}, which is not in the workflow"
            )
        if instance is not None and _same_id(link.origin_id, SUBGRAPH_INPUT):
            if link.origin_slot >= len(instance.inputs):
                raise WorkflowError(
                    f"node {exec_id}: subgraph input {link.origin_slot} does not exist"
                )
            outer = instance.inputs[link.origin_slot]
            if outer.link is None:
                w = instance.widget(outer.widget)
                return _Resolved(value=w.value) if w is not None else None
            outer_link = instance.graph.links.get(outer.link)
            if outer_link is None:
                raise WorkflowError(
                    f"node {exec_id}: subgraph input {outer.name!r} has a missing link"
                )
            instance_id = ":".join(str(p) for p in path)
            slot_index = next(
                (i for i, x in enumerate(instance.inputs) if x.link == outer.link),
                outer_link.target_slot,
            )
            return self.resolve_input(instance_id, slot_index, visited)
        origin_id, _ = self._dto(path, link.origin_id)
        return self.resolve_output(
            origin_id, link.origin_slot, type_ if type_ is not None else inp.type, visited
        )

    def resolve_output(
        self, exec_id: str, slot: int, type_: Any, visited: set[str]
    ) -> _Resolved | None:
        node, path, _ = self.dtos[exec_id]
        key = f"{exec_id}[O]{slot}"
        if key in visited:
            raise WorkflowError(f"links loop back on themselves at node {exec_id} ({node.title})")
        visited.add(key)
        if node.mode == MUTED and self.loader.fe.modern:
            return None
        if node.mode == BYPASSED:
            index = self._bypass_slot(node, slot, type_)
            return None if index == -1 else self.resolve_input(exec_id, index, visited)
        if node.subgraph is not None:
            link = self._subgraph_output_link(node, slot)
            if link is None:
                return None
            inner_id, _ = self._dto((*path, node.id), link.origin_id)
            return self.resolve_output(inner_id, link.origin_slot, type_, visited)
        if node.virtual:
            if slot < len(node.inputs) and node.inputs[slot].link is not None:
                return self.resolve_input(exec_id, slot, visited, type_)
            return None
        return _Resolved(exec_id, slot)

    @staticmethod
    def _subgraph_output_link(node: _Node, slot: int) -> _Link | None:
        assert node.subgraph is not None
        outputs = node.subgraph.outputs
        ids = list((outputs[slot].get("linkIds") or []) if slot < len(outputs) else [])
        ids += [
            lk.id
            for lk in node.subgraph.links.values()
            if _same_id(lk.target_id, SUBGRAPH_OUTPUT) and lk.target_slot == slot
        ]
        for link_id in ids:
            link = node.subgraph.links.get(link_id)
            if link is not None:
                return link
        return None

    @staticmethod
    def _bypass_slot(node: _Node, slot: int, type_: Any) -> int:
        inputs = node.inputs
        if type_ in ("*", "", None):
            return slot if len(inputs) > slot else 0
        out_type = node.output_types[slot] if slot < len(node.output_types) else None
        same = inputs[slot] if slot < len(inputs) else None
        if same is not None and _valid(same.type, out_type) and _valid(same.type, type_):
            return slot
        for i, inp in enumerate(inputs):
            if inp.type == type_:
                return i
        for i, inp in enumerate(inputs):
            if _valid(inp.type, out_type) and _valid(inp.type, type_):
                return i
        return -1


def _valid(a: Any, b: Any) -> bool:
    """litegraph's ``isValidConnection``."""
    a = 0 if a in ("", "*") else a
    b = 0 if b in ("", "*") else b
    if not a or not b or a == b:
        return True
    sa, sb = str(a).lower(), str(b).lower()
    if "," not in sa and "," not in sb:
        return sa == sb
    return any(_valid(x, y) for x in sa.split(",") for y in sb.split(","))


# ----------------------------------------------------------------------------------------------
# conversion


def _iter_nodes(ui: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for n in ui.get("nodes") or []:
        if isinstance(n, Mapping):
            yield n
    for sg in (ui.get("definitions") or {}).get("subgraphs") or []:
        for n in (sg.get("nodes") or []) if isinstance(sg, Mapping) else []:
            if isinstance(n, Mapping):
                yield n


def _is_annotation(node: Mapping[str, Any]) -> bool:
    """A frontend-only node we do not know (a note, a label…): no outputs and no links in."""
    return not node.get("outputs") and not any(
        isinstance(i, Mapping) and i.get("link") is not None for i in node.get("inputs") or []
    )


def missing_node_types(ui: Mapping[str, Any], object_info: Mapping[str, Any]) -> list[str]:
    """Node types the workflow needs that ``object_info`` lacks (sorted). Muted and bypassed
    nodes, notes and other frontend-only nodes do not count."""
    subgraphs = {
        sg.get("id")
        for sg in (ui.get("definitions") or {}).get("subgraphs") or []
        if isinstance(sg, Mapping)
    }
    missing = set()
    for n in _iter_nodes(ui):
        ntype = TYPE_RENAMES.get(str(n.get("type") or ""), str(n.get("type") or ""))
        if (
            ntype in object_info
            or ntype in VIRTUAL_TYPES
            or ntype in subgraphs
            or n.get("mode") in (MUTED, BYPASSED)
            or _is_annotation(n)
        ):
            continue
        missing.add(ntype)
    return sorted(missing)


def convert(
    ui: Mapping[str, Any],
    object_info: Mapping[str, Any],
    *,
    providers: Mapping[str, str] | None = None,
    seed: int | None = None,
    frontend: str | None = None,
) -> dict[str, Any]:
    """Convert the UI-format workflow ``ui`` to API format, like the frontend's
    ``graphToPrompt()``, with node definitions from ``object_info`` (ComfyUI's ``/object_info``).

    ``providers`` maps node types to the custom node package that provides them (from a lock),
    to say where a missing type comes from. ``seed`` fixes the choices of dynamic prompts
    (``{a|b}``), which the frontend makes at random.
    """
    if not is_ui_format(ui):
        raise WorkflowError("not a UI-format workflow (it has no 'nodes' and 'links')")
    if (ui.get("extra") or {}).get("groupNodes"):
        raise WorkflowError(
            "this workflow uses legacy group nodes, which comfypack cannot convert; open it in "
            "ComfyUI and convert each group node to a subgraph (or export it with 'Export (API)')"
        )
    missing = missing_node_types(ui, object_info)
    if missing:
        where = [
            f"{t} (from {providers[t]})" if providers and t in providers else t for t in missing
        ]
        raise WorkflowError(
            f"the workflow uses {len(missing)} node type(s) this ComfyUI does not have: "
            f"{', '.join(where)}. Install the custom nodes that provide them (or remove those "
            "nodes), then try again.",
            details={"missing_node_types": missing},
        )
    fe = Frontend.parse(frontend)
    loader = _Loader(ui, object_info, fe)
    ex = _Exec(loader)
    rng = random.Random(seed)
    _apply_primitives(loader)

    output: dict[str, dict[str, Any]] = {}
    for exec_id in ex.order:
        node, _, instance = ex.dtos[exec_id]
        if node.virtual or node.subgraph is not None or node.mode in (MUTED, BYPASSED):
            continue
        inputs: dict[str, Any] = {}
        for w in node.widgets:
            if not w.sent:
                continue
            if instance is not None and (str(node.id), w.name) in instance.inner_values:
                w = dataclasses.replace(w, value=instance.inner_values[(str(node.id), w.name)])
            value = _serialize_widget(node, w, loader, rng)
            if value is not _UNSET:
                inputs[w.name] = _array_value(w, value, fe) if isinstance(value, list) else value
        for i, inp in enumerate(node.inputs):
            r = ex.resolve_input(exec_id, i, set())
            if r is None:
                continue
            if r.is_value:
                if r.value is _UNSET:
                    inputs.pop(inp.name, None)
                else:
                    inputs[inp.name] = (
                        {"__value__": r.value} if isinstance(r.value, list) else r.value
                    )
            else:
                inputs[inp.name] = [r.origin_id, r.origin_slot]
        output[exec_id] = {
            "inputs": inputs,
            "class_type": node.type,
            "_meta": {"title": node.title},
        }
    for node_out in output.values():
        ins = node_out["inputs"]
        for name in [k for k, v in ins.items() if _is_link(v) and v[0] not in output]:
            del ins[name]
    return output


def _array_value(w: _Widget, value: list[Any], fe: Frontend) -> dict[str, Any]:
    if w.kind == "CURVE" and fe.modern:
        return {"__type__": "CURVE", "__value__": value}
    return {"__value__": value}


def _is_link(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2


def _serialize_widget(node: _Node, w: _Widget, loader: _Loader, rng: random.Random) -> Any:
    value = w.value
    if w.kind == "AUDIO_UI" and loader.fe.modern and node.widget("upload") is not None:
        # the player plays the chosen file: /api/view?filename=…&type=input&subfolder=…&rand=…
        audio = node.widget("audio")
        path = str(audio.value) if audio is not None and audio.value not in (_UNSET, None) else ""
        folder, _, name = path.rpartition("/")
        return (
            f"/api/view?filename={urllib.parse.quote(name, safe=_URI_SAFE)}&type=input"
            f"&subfolder={folder}&rand={rng.random()}"
        )
    if value is _UNSET:
        return _UNSET
    if w.kind == "COMBO" and (
        w.spec.get("image_upload")
        or w.spec.get("video_upload")
        or w.spec.get("animated_image_upload")
    ):
        folder = str(w.spec.get("image_folder") or "input")
        if node.widget("upload") is not None:
            value = (
                _annotated(value, folder) if value else _annotated(_combo_default(w.spec), folder)
            )
    if w.kind == "STRING" and w.spec.get("dynamicPrompts") is True and isinstance(value, str):
        value = dynamic_prompt(value, rng)
    if node.type in SAVE_NODES and w.name == "filename_prefix" and isinstance(value, str):
        value = _text_replacements(loader.all_nodes, value)
    return value


def _apply_primitives(loader: _Loader) -> None:
    """Copy each ``PrimitiveNode``'s value into the widgets it feeds (``applyToGraph``)."""
    for node in loader.all_nodes:
        if node.type != "PrimitiveNode":
            continue
        links = [
            lk for lk in (node.graph.links.get(i) for i in _output_links(node)) if lk is not None
        ]
        if not links:
            continue
        first = node.graph.nodes.get(links[0].target_id)
        target_input = _input_for_link(first, links[0]) if first else None
        if target_input is None or (
            target_input.widget is None and target_input.type not in WIDGET_TYPES
        ):
            continue
        values = node.raw.get("widgets_values")
        if not isinstance(values, list) or not values:
            continue
        value = values[0]
        if value and (node.raw.get("properties") or {}).get("Run widget replace on values"):
            value = _text_replacements(loader.all_nodes, str(value))
        for link in links:
            target = node.graph.nodes.get(link.target_id)
            tin = _input_for_link(target, link) if target else None
            w = target.widget(tin.widget) if target and tin else None
            if w is None:
                continue
            w.value = (
                _round_int(w, value)
                if w.kind == "INT"
                else (_round_float(w, value) if w.kind == "FLOAT" else value)
            )


def _output_links(node: _Node) -> list[Any]:
    outs = node.raw.get("outputs") or []
    return list((outs[0].get("links") or []) if outs and isinstance(outs[0], Mapping) else [])


def _input_for_link(node: _Node, link: _Link) -> _Input | None:
    return next((i for i in node.inputs if i.link == link.id), None)


# ----------------------------------------------------------------------------------------------
# loading either format
