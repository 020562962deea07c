"""Which graphs a v2 job may run.

``served`` (the default): the submitted API-format graph must be the served workflow — the same
node ids, class types, links and widget values — except the value widget of comfypack's input
nodes (``ComfyPackInput*``'s ``default`` / ``image`` / ``file`` / …). Those values become a request
body for the workflow's :class:`~comfypack.workflow.interface.Interface`, validated exactly as
``POST /generate`` validates (a value equal to the served one counts as left out, so defaults and
random seeds apply as they do there). Anything else is 422 ``invalid_workflow`` naming the node.

``any`` (opt-in, needs an API key): any API-format graph whose node types exist in the service's
ComfyUI (its ``/object_info``).

In both, a ``core/ASSET`` reference (``{"__type": "core/ASSET", "info": {"id", "hash",
"file_path"}}``) stands where a file name would go; :func:`asset_refs` finds them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ...workflow.interface import Interface
from .common import V2Error

__all__ = [
    "AssetRef",
    "check_shape",
    "check_served",
    "check_any",
    "asset_refs",
    "is_asset_ref",
    "MAX_NODES",
]

#: the most nodes a submitted graph may have
MAX_NODES = 5000
_MISSING = object()


@dataclass(frozen=True)
class AssetRef:
    """One ``core/ASSET`` reference in a graph: where it is and what it names."""

    node_id: str
    input: str
    asset_id: str | None
    hash: str | None


def _invalid(
    message: str,
    node_id: str | None = None,
    field: str | None = None,
    code: str = "invalid_workflow",
) -> V2Error:
    details: dict[str, Any] = {}
    if node_id is not None:
        details["node_id"] = node_id
    if field is not None:
        details["field"] = field
    return V2Error(422, code, message, details or None)


def is_asset_ref(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type") == "core/ASSET"


def _title(node_id: str, node: Mapping[str, Any]) -> str:
    return f"node {node_id} ({str(node.get('class_type'))[:100]})"


def check_shape(graph: Any) -> dict[str, dict[str, Any]]:
    """An API-format graph (``{id: {class_type, inputs}}``), or 422 saying what is wrong where."""
    if not isinstance(graph, dict) or not graph:
        raise _invalid(
            "'workflow' must be a non-empty API-format graph: {node id: {class_type, inputs}}",
            field="workflow",
        )
    if isinstance(graph.get("nodes"), list) and "links" in graph:
        raise _invalid(
            "this is a UI-format (saved) workflow; export it in API format "
            "(ComfyUI: Workflow → Export (API))",
            field="workflow",
            code="workflow_format_ui",
        )
    if len(graph) > MAX_NODES:
        raise _invalid(
            f"the graph has {len(graph)} nodes; the limit is {MAX_NODES}", field="workflow"
        )
    for node_id, node in graph.items():
        if len(node_id) > 64 or not node_id.isprintable():
            raise _invalid(f"node id {node_id[:64]!r} is not a short printable id", node_id[:64])
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs", {}), dict)
        ):
            raise _invalid(
                f"node {node_id} must be an object with a 'class_type' string and an "
                "'inputs' object",
                node_id,
            )
    return graph


def _ref(node_id: str, name: str, value: dict[str, Any]) -> AssetRef:
    info = value.get("info")
    if not isinstance(info, dict):
        raise _invalid(
            f"node {node_id}: input {name!r} is a core/ASSET reference without an 'info' object",
            node_id,
            name,
            code="missing_asset",
        )
    asset_id, digest = info.get("id"), info.get("hash")
    if not isinstance(asset_id, str) and not isinstance(digest, str):
        raise _invalid(
            f"node {node_id}: input {name!r} is a core/ASSET reference with neither 'id' nor 'hash'",
            node_id,
            name,
            code="missing_asset",
        )
    return AssetRef(
        node_id,
        name,
        asset_id if isinstance(asset_id, str) else None,
        digest if isinstance(digest, str) else None,
    )


def asset_refs(graph: Mapping[str, Mapping[str, Any]]) -> list[AssetRef]:
    """Every ``core/ASSET`` reference standing as a node input's value."""
    refs = []
    for node_id, node in graph.items():
        for name, value in (node.get("inputs") or {}).items():
            if is_asset_ref(value):
                refs.append(_ref(node_id, name, value))
    return refs


def check_served(
    graph: dict[str, Any], workflow: Mapping[str, Any], interface: Interface
) -> tuple[dict[str, Any], dict[str, AssetRef]]:
    """The request body the graph's input-node values make, and the inputs given as assets
    (by API field name); 422 naming the first node that differs otherwise."""
    check_shape(graph)
    for node_id in workflow:
        if node_id not in graph:
            raise _invalid(
                f"{_title(node_id, workflow[node_id])} of the served workflow is missing; "
                "this service runs only its own workflow",
                node_id,
            )
    for node_id in graph:
        if node_id not in workflow:
            raise _invalid(
                f"{_title(node_id, graph[node_id])} is not in the served workflow; this service "
                "runs only its own workflow (change values on its comfypack input nodes)",
                node_id,
            )
    by_node = {spec.node_id: spec for spec in interface.inputs}
    body: dict[str, Any] = {}
    assets: dict[str, AssetRef] = {}
    for node_id in sorted(workflow, key=lambda n: (len(n), n)):
        served, given = workflow[node_id], graph[node_id]
        if given["class_type"] != served.get("class_type"):
            raise _invalid(
                f"node {node_id} is {given['class_type'][:100]!r} here but "
                f"{served.get('class_type')!r} in the served workflow",
                node_id,
                "class_type",
            )
        spec = by_node.get(node_id)
        s_inputs, g_inputs = served.get("inputs") or {}, given.get("inputs") or {}
        for name in sorted(set(s_inputs) | set(g_inputs)):
            if spec is not None and name == spec.widget:
                continue
            if g_inputs.get(name, _MISSING) != s_inputs.get(name, _MISSING):
                what = "a link" if isinstance(s_inputs.get(name), list) else "a setting"
                raise _invalid(
                    f"{_title(node_id, served)}: input {name[:100]!r} differs from the served "
                    f"workflow ({what}); only the values of comfypack's input nodes may change",
                    node_id,
                    name[:100],
                )
        if spec is None:
            continue
        value = g_inputs.get(spec.widget, _MISSING)
        if value is _MISSING or value == s_inputs.get(spec.widget, _MISSING):
            continue  # left as served: the request leaves the field out (its default applies)
        if is_asset_ref(value):
            if not spec.is_file:
                raise _invalid(
                    f"{_title(node_id, served)}: {spec.widget!r} takes a {spec.kind}, not an asset",
                    node_id,
                    spec.widget,
                )
            assets[spec.name] = _ref(node_id, spec.widget, value)
            continue
        if isinstance(value, list):
            raise _invalid(
                f"{_title(node_id, served)}: {spec.widget!r} must be a value, not a link",
                node_id,
                spec.widget,
            )
        body[spec.name] = value
    return body, assets


def check_any(graph: dict[str, Any], node_types: Collection[str]) -> dict[str, Any]:
    """Any API-format graph whose node types this ComfyUI has and whose links name its nodes."""
    check_shape(graph)
    for node_id, node in graph.items():
        if node["class_type"] not in node_types:
            raise _invalid(
                f"{_title(node_id, node)}: no node type {node['class_type'][:100]!r} in this "
                "service's ComfyUI (its locked environment)",
                node_id,
                "class_type",
            )
        for name, value in (node.get("inputs") or {}).items():
            if (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], int)
                and value[0] not in graph
            ):
                raise _invalid(
                    f"{_title(node_id, node)}: input {name[:100]!r} links to node {value[0][:64]!r}, "
                    "which is not in the graph",
                    node_id,
                    name[:100],
                )
    return graph
