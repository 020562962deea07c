"""comfypack.serve.v2.policy: which graphs a v2 job may run (the served workflow; any graph opt-in)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from comfypack.serve.v2.common import V2Error
from comfypack.serve.v2.policy import asset_refs, check_any, check_served, check_shape
from comfypack.workflow.interface import load_workflow, parse_interface

ROOT = Path(__file__).resolve().parents[4]
ADJUST = load_workflow(ROOT / "examples" / "workflows" / "image_adjust" / "workflow_api.json")
IFACE = parse_interface(ADJUST)
REF = {
    "__type": "core/ASSET",
    "info": {"id": "8c4f2a57-3b51-4e0c-9a5e-0c1d2e3f4a5b", "file_path": "a.png"},
}


def graph() -> dict:
    return copy.deepcopy(ADJUST)


def refused(g: object, code: str = "invalid_workflow") -> V2Error:
    with pytest.raises(V2Error) as info:
        check_served(g, ADJUST, IFACE)  # type: ignore[arg-type]
    assert info.value.status == 422 and info.value.code == code
    return info.value


def test_the_served_graph_as_is_is_a_request_with_every_field_left_out() -> None:
    assert check_served(graph(), ADJUST, IFACE) == ({}, {})


def test_values_on_input_nodes_become_the_request_body() -> None:
    g = graph()
    g["3"]["inputs"]["default"] = 32
    g["2"]["inputs"]["default"] = "area"
    g["1"]["inputs"]["image"] = REF
    body, assets = check_served(g, ADJUST, IFACE)
    assert body == {"width": 32, "upscale_method": "area"}
    assert assets["image"].node_id == "1" and assets["image"].asset_id == REF["info"]["id"]


def test_anything_else_is_refused_naming_the_node() -> None:
    g = graph()
    g["7"]["inputs"]["crop"] = "center"
    e = refused(g)
    assert e.details == {"node_id": "7", "field": "crop"} and "node 7 (ImageScale)" in e.message
    g = graph()
    g["9"]["inputs"]["image"] = ["7", 0]  # a link changed
    assert refused(g).details["node_id"] == "9"  # type: ignore[index]
    g = graph()
    g["3"]["inputs"]["max"] = 10_000  # the input's bounds are the interface, not a value
    assert refused(g).details == {"node_id": "3", "field": "max"}
    g = graph()
    g["3"]["inputs"]["default"] = ["4", 0]  # a value widget linked
    assert refused(g).details["node_id"] == "3"  # type: ignore[index]
    g = graph()
    g["8"]["class_type"] = "ImageSharpen"
    assert refused(g).details == {"node_id": "8", "field": "class_type"}
    g = graph()
    del g["8"]
    assert "node 8 (ImageBlur) of the served workflow is missing" in refused(g).message
    g = graph()
    g["11"] = {"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}}
    assert refused(g).details == {"node_id": "11"}
    g = graph()
    g["3"]["inputs"]["default"] = REF  # an asset where an int goes
    assert refused(g).details["node_id"] == "3"  # type: ignore[index]


def test_malformed_asset_references_and_shapes() -> None:
    g = graph()
    g["1"]["inputs"]["image"] = {"__type": "core/ASSET"}
    assert refused(g, "missing_asset").details == {"node_id": "1", "field": "image"}
    g["1"]["inputs"]["image"] = {"__type": "core/ASSET", "info": {"file_path": "x"}}
    refused(g, "missing_asset")
    refused({"nodes": [], "links": [], "last_node_id": 1}, "workflow_format_ui")
    for bad in (
        [],
        {},
        "x",
        {"1": {"class_type": 3}},
        {"1": {"class_type": "A", "inputs": []}},
        {"x" * 65: {"class_type": "A", "inputs": {}}},
    ):
        refused(bad)
    with pytest.raises(V2Error, match="limit"):
        check_shape({str(i): {"class_type": "A", "inputs": {}} for i in range(5001)})


def test_any_graph_needs_known_node_types_and_links_inside_it() -> None:
    types = {n["class_type"] for n in ADJUST.values()}
    g = graph()
    del g["8"]
    g["9"]["inputs"]["image"] = ["7", 0]
    g["1"]["inputs"]["image"] = REF
    assert check_any(g, types) is g
    assert [(r.node_id, r.input) for r in asset_refs(g)] == [("1", "image")]
    g["12"] = {"class_type": "NoSuchNode", "inputs": {}}
    with pytest.raises(V2Error, match=r"node 12 \(NoSuchNode\)") as info:
        check_any(g, types)
    assert info.value.details == {"node_id": "12", "field": "class_type"}
    del g["12"]
    g["10"]["inputs"]["images"] = ["8", 0]  # node 8 was removed
    with pytest.raises(V2Error, match="links to node '8'"):
        check_any(g, types)


def test_the_sdk_shape_of_a_workflow_round_trips() -> None:
    """What comfy-sdk sends: the graph as JSON, values set with set_input."""
    from comfy_sdk import Comfy  # the real SDK (a dev dependency)

    wf = Comfy(api_key="k").workflows.from_json(json.loads(json.dumps(ADJUST)))
    wf.set_input("4", "default", 24)
    assert check_served(wf.json, ADJUST, IFACE) == ({"height": 24}, {})
