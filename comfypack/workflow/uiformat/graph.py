"""A UI-format graph as read: nodes, their inputs and widgets, links, subgraphs (with the
subgraph node ids renumbered the way newer frontends do).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .frontend import _UNSET

__all__ = []


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
