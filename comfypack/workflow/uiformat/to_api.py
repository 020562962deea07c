"""UI format → API format: :func:`convert` (and :func:`missing_node_types`), widget values
serialised the way the frontend sends them, primitives applied.
"""

from __future__ import annotations

import dataclasses
import random
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import WorkflowError
from .execute import _annotated, _Exec
from .frontend import (
    _UNSET,
    _URI_SAFE,
    BYPASSED,
    MUTED,
    SAVE_NODES,
    TYPE_RENAMES,
    VIRTUAL_TYPES,
    WIDGET_TYPES,
    Frontend,
    is_ui_format,
)
from .graph import _Input, _Link, _Node, _Widget
from .load import _Loader
from .prompts import _text_replacements, dynamic_prompt
from .widgets import _combo_default, _round_float, _round_int

__all__ = ["convert", "missing_node_types"]


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
