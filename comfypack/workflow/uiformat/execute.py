"""The export walk: which nodes run and what each input resolves to — links followed through
reroutes, bypassed nodes and subgraphs, muted and frontend-only nodes dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import WorkflowError
from .frontend import _UNSET, BYPASSED, MUTED, SUBGRAPH_INPUT, SUBGRAPH_OUTPUT
from .graph import _Link, _Node, _same_id
from .load import _Loader

__all__ = []


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
