"""comfypack.workflow.uiformat: UI-format → API-format conversion on small hand-written graphs.

Node definitions come from ``data/object_info.json`` (a slice of the real ComfyUI 0.3.75
``/object_info`` with comfypack's nodes; ``tests/browser`` checks it is current). The behaviour
pinned here is the frontend's (``app.graphToPrompt()``); tests/browser compares with the real one.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import http_server

from comfypack.errors import WorkflowError
from comfypack.workflow.uiformat import (
    convert,
    dynamic_prompt,
    is_ui_format,
    missing_node_types,
)

from .._helpers import EXAMPLE_NAMES, example

OBJECT_INFO: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "object_info.json").read_text()
)


class Graph:
    """A tiny builder for UI-format graphs."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.extra: dict[str, Any] = {}
        self.subgraphs: list[dict[str, Any]] = []

    def node(
        self,
        node_id: int,
        ntype: str,
        widgets: list[Any] | None = None,
        *,
        mode: int = 0,
        title: str | None = None,
        outputs: list[str] = (),
        **extra: Any,
    ) -> dict[str, Any]:
        node: dict[str, Any] = {
            "id": node_id,
            "type": ntype,
            "pos": [0, 0],
            "size": [100, 100],
            "flags": {},
            "order": len(self.nodes),
            "mode": mode,
            "inputs": [],
            "outputs": [{"name": t, "type": t, "links": []} for t in outputs],
            "properties": {},
            **extra,
        }
        if widgets is not None:
            node["widgets_values"] = widgets
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def _get(self, node_id: int) -> dict[str, Any]:
        return next(n for n in self.nodes if n["id"] == node_id)

    def link(
        self, src: int, slot: int, dst: int, name: str, ltype: str, *, widget: bool = False
    ) -> int:
        link_id = len(self.links) + 1
        source, target = self._get(src), self._get(dst)
        while len(source["outputs"]) <= slot:
            source["outputs"].append({"name": ltype, "type": ltype, "links": []})
        source["outputs"][slot]["links"].append(link_id)
        inp = next((i for i in target["inputs"] if i["name"] == name), None)
        if inp is None:
            inp = {"name": name, "type": ltype, "link": None}
            if widget:
                inp["widget"] = {"name": name}
            target["inputs"].append(inp)
        inp["link"] = link_id
        self.links.append([link_id, src, slot, dst, target["inputs"].index(inp), ltype])
        return link_id

    def ui(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "last_node_id": max([n["id"] for n in self.nodes], default=0),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": self.extra,
            "version": 0.4,
        }
        if self.subgraphs:
            out["definitions"] = {"subgraphs": self.subgraphs}
        return out


#: The frontend ComfyUI 0.3.75 pins (what data/object_info.json comes with).
FRONTEND = "1.32.9"


def conv(g: Graph, **kw: Any) -> dict[str, Any]:
    kw.setdefault("frontend", FRONTEND)
    return convert(g.ui(), OBJECT_INFO, **kw)


def ksampler_graph(seed_widgets: list[Any] | None = None) -> Graph:
    g = Graph()
    g.node(1, "CheckpointLoaderSimple", ["sd15.safetensors"], outputs=["MODEL", "CLIP", "VAE"])
    g.node(2, "CLIPTextEncode", ["a cat"], outputs=["CONDITIONING"])
    g.node(3, "EmptyLatentImage", [512, 512, 1], outputs=["LATENT"])
    g.node(
        4,
        "KSampler",
        seed_widgets or [42, "randomize", 20, 7.5, "euler", "normal", 1.0],
        outputs=["LATENT"],
    )
    g.link(1, 1, 2, "clip", "CLIP")
    g.link(1, 0, 4, "model", "MODEL")
    g.link(2, 0, 4, "positive", "CONDITIONING")
    g.link(2, 0, 4, "negative", "CONDITIONING")
    g.link(3, 0, 4, "latent_image", "LATENT")
    return g


# -- detection ----------------------------------------------------------------------------------


def test_is_ui_format():
    assert is_ui_format({"nodes": [], "links": []})
    assert not is_ui_format({"1": {"class_type": "X", "inputs": {}}})
    assert not is_ui_format([1, 2])


# -- widgets ------------------------------------------------------------------------------------


def test_widgets_values_map_onto_named_inputs_skipping_control_after_generate():
    out = conv(ksampler_graph())
    assert out["4"]["inputs"] == {
        "seed": 42,
        "steps": 20,
        "cfg": 7.5,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
        "model": ["1", 0],
        "positive": ["2", 0],
        "negative": ["2", 0],
        "latent_image": ["3", 0],
    }
    assert out["3"]["inputs"] == {"width": 512, "height": 512, "batch_size": 1}
    assert out["1"]["inputs"] == {"ckpt_name": "sd15.safetensors"}


def g_v3_controls() -> Graph:
    g = Graph()
    g.node(1, "PrimitiveInt", [7, "fixed"], outputs=["INT"])
    g.node(2, "ComfyPackInputChoice", ["mode", "", "a\nb", "b"], outputs=["*"])
    return g


def test_v3_combo_with_control_after_generate_takes_three_slots():
    g = g_v3_controls()
    out = conv(g)
    assert out["1"]["inputs"] == {"value": 7}
    assert out["2"]["inputs"] == {
        "name": "mode",
        "description": "",
        "options": "a\nb",
        "default": "b",
    }


def g_uploads() -> Graph:
    g = Graph()
    g.node(1, "LoadImage", ["cat.png", "image"], outputs=["IMAGE", "MASK"])
    g.node(2, "ComfyPackInputImage", ["picture", "d", "x.png", "image"], outputs=["IMAGE", "MASK"])
    g.node(3, "LoadAudio", ["a.wav", None, ""], outputs=["AUDIO"])
    g.node(4, "ComfyPackInputAudio", ["sound", "", "b.flac", ""], outputs=["AUDIO"])
    return g


def test_upload_button_value_is_not_sent():
    g = g_uploads()
    out = conv(g)
    assert out["1"]["inputs"] == {"image": "cat.png"}
    assert out["2"]["inputs"] == {"name": "picture", "description": "d", "image": "x.png"}
    # the frontend sends LoadAudio's player widget as ""; comfypack's extension keeps its own out
    assert out["3"]["inputs"] == {"audio": "a.wav", "audioUI": ""}
    assert out["4"]["inputs"] == {"name": "sound", "description": "", "audio": "b.flac"}


def test_upload_from_another_folder_is_annotated():
    g = Graph()
    g.node(1, "LoadImageOutput", ["render.png", "image", ""], outputs=["IMAGE", "MASK"])
    assert conv(g)["1"]["inputs"]["image"] == "render.png [output]"


def test_missing_trailing_widget_values_keep_defaults():
    g = Graph()
    g.node(1, "EmptyImage", [64], outputs=["IMAGE"])
    assert conv(g)["1"]["inputs"] == {"width": 64, "height": 512, "batch_size": 1, "color": 0}


def g_widget_socket() -> Graph:
    g = Graph()
    g.node(1, "PrimitiveInt", [99, "fixed"], outputs=["INT"])
    g.node(2, "EmptyImage", [64, 32, 1, 0], outputs=["IMAGE"])
    g.link(1, 0, 2, "height", "INT", widget=True)
    return g


def test_widget_converted_to_input_takes_the_link_keeping_value_order():
    g = g_widget_socket()
    assert conv(g)["2"]["inputs"] == {"width": 64, "height": ["1", 0], "batch_size": 1, "color": 0}


def g_optional() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(2, "ImageCompositeMasked", [3, 4, True], outputs=["IMAGE"])
    g.link(1, 0, 2, "destination", "IMAGE")
    g.link(1, 0, 2, "source", "IMAGE")
    return g


def test_optional_inputs_follow_required_ones():
    g = g_optional()
    assert conv(g)["2"]["inputs"] == {
        "x": 3,
        "y": 4,
        "resize_source": True,
        "destination": ["1", 0],
        "source": ["1", 0],
    }


def test_string_with_dynamic_prompts_loses_comments_and_picks_a_choice():
    g = Graph()
    g.node(
        1,
        "CLIPTextEncode",
        ["a {red|blue} cat // not this\n/* nor */ sitting"],
        outputs=["CONDITIONING"],
    )
    text = conv(g, seed=1)["1"]["inputs"]["text"]
    assert text in ("a red cat \n sitting", "a blue cat \n sitting")


def test_dynamic_prompt_escapes_and_nesting():
    rng = random.Random(3)
    assert dynamic_prompt(r"literal \{braces\} and a\|b", rng) == "literal {braces} and a|b"
    assert dynamic_prompt("{x|{y|z}}", rng) in ("x", "y", "z")
    assert dynamic_prompt("https://example.org // comment") == "https:"


def g_text_replacements() -> Graph:
    g = Graph()
    g.node(1, "EmptyLatentImage", [640, 480, 1], title="Size", outputs=["LATENT"])
    g.node(2, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(3, "SaveImage", ["out/%Size.width%x%Size.height%_%nope.x%"])
    g.link(2, 0, 3, "images", "IMAGE")
    return g


def test_save_filename_prefix_gets_text_replacements():
    g = g_text_replacements()
    assert conv(g)["3"]["inputs"]["filename_prefix"] == "out/640x480_%nope.x%"


def g_titles() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], title="Canvas", outputs=["IMAGE"])
    g.node(2, "ImageInvert", [], outputs=["IMAGE"])
    g.link(1, 0, 2, "image", "IMAGE")
    return g


def test_titles_come_from_the_node_or_its_display_name():
    g = g_titles()
    out = conv(g)
    assert out["1"]["_meta"] == {"title": "Canvas"}
    assert out["2"]["_meta"] == {"title": OBJECT_INFO["ImageInvert"]["display_name"]}


def test_legacy_sampler_names_are_migrated():
    out = conv(ksampler_graph([1, "fixed", 20, 7.0, "sample_euler", "normal", 1.0]))
    assert out["4"]["inputs"]["sampler_name"] == "euler"


# -- links --------------------------------------------------------------------------------------


def g_primitive() -> Graph:
    g = Graph()
    g.node(1, "PrimitiveNode", [300.4, "fixed"], outputs=["INT"])
    g.node(2, "EmptyImage", [64, 32, 1, 0], outputs=["IMAGE"])
    g.node(3, "EmptyImage", [16, 16, 1, 0], outputs=["IMAGE"])
    g.link(1, 0, 2, "width", "INT", widget=True)
    g.link(1, 0, 3, "height", "INT", widget=True)
    return g


def test_primitive_node_value_replaces_the_widgets_it_feeds():
    g = g_primitive()
    out = conv(g)
    assert "1" not in out
    assert out["2"]["inputs"]["width"] == 300  # the INT widget rounds what it is given
    assert out["3"]["inputs"]["height"] == 300
    assert out["3"]["inputs"]["width"] == 16


def g_reroutes() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(2, "Reroute", outputs=["*"])
    g.node(3, "Reroute", outputs=["*"])
    g.node(4, "ImageInvert", outputs=["IMAGE"])
    g.link(1, 0, 2, "", "IMAGE")
    g.link(2, 0, 3, "", "IMAGE")
    g.link(3, 0, 4, "image", "IMAGE")
    return g


def test_reroute_chains_resolve_to_their_source():
    g = g_reroutes()
    out = conv(g)
    assert set(out) == {"1", "4"}
    assert out["4"]["inputs"]["image"] == ["1", 0]


def g_bypass() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(2, "ImageBlur", [1, 1.0], mode=4, outputs=["IMAGE"])
    g.node(3, "ImageInvert", outputs=["IMAGE"])
    g.link(1, 0, 2, "image", "IMAGE")
    g.link(2, 0, 3, "image", "IMAGE")
    return g


def test_bypassed_node_passes_its_matching_input_through():
    g = g_bypass()
    out = conv(g)
    assert "2" not in out
    assert out["3"]["inputs"]["image"] == ["1", 0]


def g_bypass_no_match() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], mode=4, outputs=["IMAGE"])
    g.node(2, "ImageInvert", outputs=["IMAGE"])
    g.link(1, 0, 2, "image", "IMAGE")
    return g


def test_bypassed_node_without_a_matching_input_leaves_the_input_out():
    g = g_bypass_no_match()
    assert conv(g) == {
        "2": {"inputs": {}, "class_type": "ImageInvert", "_meta": {"title": "Invert Image"}}
    }


def g_muted() -> Graph:
    g = Graph()
    g.node(1, "PrimitiveInt", [5, "fixed"], mode=2, outputs=["INT"])
    g.node(2, "EmptyImage", [64, 32, 1, 0], outputs=["IMAGE"])
    g.link(1, 0, 2, "width", "INT", widget=True)
    return g


def test_muted_nodes_are_dropped_with_the_links_to_them():
    g = g_muted()
    out = conv(g)
    assert set(out) == {"2"}
    assert "width" not in out["2"]["inputs"]  # as the frontend: the link wins, then goes


def g_notes() -> Graph:
    g = Graph()
    g.node(1, "Note", ["remember"])
    g.node(2, "MarkdownNote", ["# hi"])
    g.node(3, "Label (rgthree)", [])
    g.node(4, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    return g


def test_notes_and_unknown_unconnected_nodes_are_dropped():
    g = g_notes()
    assert set(conv(g)) == {"4"}


def g_bypass_types() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(2, "EmptyImage", [9, 9, 1, 0], outputs=["IMAGE"])
    g.node(3, "ImageCompositeMasked", [0, 0, False], mode=4, outputs=["IMAGE"])
    g.node(4, "ImageInvert", outputs=["IMAGE"])
    g.link(1, 0, 3, "destination", "IMAGE")
    g.link(2, 0, 3, "source", "IMAGE")
    g.link(3, 0, 4, "image", "IMAGE")
    return g


def test_link_types_choose_the_bypass_input():
    g = g_bypass_types()
    assert conv(g)["4"]["inputs"]["image"] == ["1", 0]  # the first IMAGE input


# -- subgraphs ----------------------------------------------------------------------------------


def subgraph_graph(instance_widgets: list[Any], *, linked: bool) -> Graph:
    """Root: EmptyImage(1) → [subgraph node 10: inner 5 ImageBlur(image, blur_radius) → out] → Invert(3)."""
    sid = "6a1c1b3e-0000-4000-8000-000000000001"
    inner = Graph()
    inner.node(5, "ImageBlur", [3, 2.0], outputs=["IMAGE"])
    inner.nodes[0]["inputs"] = [
        {"name": "image", "type": "IMAGE", "link": 101},
        {"name": "blur_radius", "type": "INT", "widget": {"name": "blur_radius"}, "link": 102},
    ]
    inner.nodes[0]["outputs"][0]["links"] = [103]
    definition = {
        "id": sid,
        "name": "Blur it",
        "nodes": inner.nodes,
        "inputs": [
            {"id": "i1", "name": "image", "type": "IMAGE", "linkIds": [101]},
            {"id": "i2", "name": "radius", "type": "INT", "linkIds": [102]},
        ],
        "outputs": [{"id": "o1", "name": "IMAGE", "type": "IMAGE", "linkIds": [103]}],
        "links": [
            {
                "id": 101,
                "origin_id": -10,
                "origin_slot": 0,
                "target_id": 5,
                "target_slot": 0,
                "type": "IMAGE",
            },
            {
                "id": 102,
                "origin_id": -10,
                "origin_slot": 1,
                "target_id": 5,
                "target_slot": 1,
                "type": "INT",
            },
            {
                "id": 103,
                "origin_id": 5,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 0,
                "type": "IMAGE",
            },
        ],
        "inputNode": {"id": -10, "bounding": [-200, 0, 120, 60]},
        "outputNode": {"id": -20, "bounding": [400, 0, 120, 60]},
        "version": 1,
        "revision": 0,
        "config": {},
        "widgets": [],
        "groups": [],
        "extra": {},
        "state": {"lastGroupId": 0, "lastNodeId": 5, "lastLinkId": 103, "lastRerouteId": 0},
    }
    g = Graph()
    g.subgraphs.append(definition)
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(2, "PrimitiveInt", [17, "fixed"], outputs=["INT"])
    g.node(10, sid, instance_widgets, outputs=["IMAGE"])
    g.node(3, "ImageInvert", outputs=["IMAGE"])
    g.link(1, 0, 10, "image", "IMAGE")
    if linked:
        g.link(2, 0, 10, "radius", "INT")
    g.link(10, 0, 3, "image", "IMAGE")
    return g


#: Hand-written graphs that tests/browser also runs through the real frontend.
SCENARIOS = {
    "ksampler": ksampler_graph,
    "v3_controls": g_v3_controls,
    "uploads": g_uploads,
    "widget_socket": g_widget_socket,
    "optional": g_optional,
    "text_replacements": g_text_replacements,
    "titles": g_titles,
    "primitive": g_primitive,
    "reroutes": g_reroutes,
    "bypass": g_bypass,
    "bypass_no_match": g_bypass_no_match,
    "muted": g_muted,
    "bypass_types": g_bypass_types,
    "subgraph": lambda: subgraph_graph([9], linked=False),
    "subgraph_linked": lambda: subgraph_graph([9], linked=True),
}


# -- what newer frontends do (1.45.21, pinned by ComfyUI 0.28.2; 1.58.1) --------------------------
#
# Node definitions from data/object_info_0.28.2.json (a slice of the real 0.28.2 /object_info;
# tests/browser checks it is current). tests/browser runs SCENARIOS_CURRENT through both frontends.

OBJECT_INFO_CURRENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "object_info_0.28.2.json").read_text()
)
CURRENT = "1.45.21"


def conv_current(g: Graph, **kw: Any) -> dict[str, Any]:
    kw.setdefault("frontend", CURRENT)
    return convert(g.ui(), OBJECT_INFO_CURRENT, **kw)


def g_dynamic_combo() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [64, 32, 1, 0], outputs=["IMAGE"])
    g.node(
        2,
        "ResizeImageMaskNode",
        ["scale dimensions", 300, 200, "disabled", "area"],
        outputs=["IMAGE"],
    )
    g.node(3, "PrimitiveInt", [48, "fixed"], outputs=["INT"])
    g.node(4, "ResizeImageMaskNode", ["scale by multiplier", 1.5, "bicubic"], outputs=["IMAGE"])
    g.link(1, 0, 2, "input", "IMAGE")
    g.link(3, 0, 2, "resize_type.width", "INT", widget=True)
    g.link(1, 0, 4, "input", "IMAGE")
    return g


def test_dynamic_combo_brings_the_chosen_options_widgets_named_after_it():
    out = conv_current(g_dynamic_combo())
    assert out["2"]["inputs"] == {
        "resize_type": "scale dimensions",
        "resize_type.width": ["3", 0],
        "resize_type.height": 200,
        "resize_type.crop": "disabled",
        "scale_method": "area",
        "input": ["1", 0],
    }
    # another option, other widgets: the later widget still gets its own value
    assert out["4"]["inputs"] == {
        "resize_type": "scale by multiplier",
        "resize_type.multiplier": 1.5,
        "scale_method": "bicubic",
        "input": ["1", 0],
    }


def g_muted_current() -> Graph:
    g = Graph()
    g.node(1, "PrimitiveInt", [5, "fixed"], mode=2, outputs=["INT"])
    g.node(2, "EmptyImage", [64, 32, 1, 0], outputs=["IMAGE"])
    g.link(1, 0, 2, "width", "INT", widget=True)
    return g


def test_muted_node_feeding_a_widget_leaves_the_widgets_value_on_newer_frontends():
    assert conv_current(g_muted_current())["2"]["inputs"]["width"] == 64
    assert "width" not in conv_current(g_muted_current(), frontend="1.32.9")["2"]["inputs"]


def g_list_values() -> Graph:
    g = Graph()
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(2, "ImageCompare", [])
    g.node(3, "CustomCombo", ["b", 1, "a", "b", ""], outputs=["STRING", "INT"])
    g.link(1, 0, 2, "image_a", "IMAGE")
    return g


def test_list_widget_values_are_wrapped_and_frontend_widgets_are_sent():
    out = conv_current(g_list_values())
    assert out["2"]["inputs"] == {"compare_view": {"__value__": ["", ""]}, "image_a": ["1", 0]}
    # the Custom Combo extension: one widget per saved option, and the index
    assert out["3"]["inputs"] == {
        "choice": "b",
        "index": 1,
        "option1": "a",
        "option2": "b",
        "option3": "",
    }
    assert conv_current(g_list_values(), frontend="1.32.9")["2"]["inputs"] == {"image_a": ["1", 0]}


def _blur_definition(sid: str, inner_id: int) -> dict[str, Any]:
    g = subgraph_graph([9], linked=False)
    d = copy.deepcopy(g.subgraphs[0])
    d["id"] = sid
    d["nodes"][0]["id"] = inner_id
    for link in d["links"]:
        for end in ("origin_id", "target_id"):
            if link[end] == 5:
                link[end] = inner_id
    return d


def g_subgraph_ids(mode: int = 0) -> Graph:
    """Two subgraph definitions whose inner nodes both have id 5; a root node has id 3."""
    a, b = "6a1c1b3e-0000-4000-8000-00000000000a", "6a1c1b3e-0000-4000-8000-00000000000b"
    g = Graph()
    g.subgraphs += [_blur_definition(a, 5), _blur_definition(b, 5)]
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    g.node(10, a, [9], outputs=["IMAGE"])
    g.node(11, b, [4], outputs=["IMAGE"], mode=mode)
    g.node(3, "ImageInvert", outputs=["IMAGE"])
    g.link(1, 0, 10, "image", "IMAGE")
    g.link(1, 0, 11, "image", "IMAGE")
    g.link(11, 0, 3, "image", "IMAGE")
    return g


def test_newer_frontends_renumber_subgraph_nodes_whose_ids_are_taken():
    out = conv_current(g_subgraph_ids())
    # last_node_id is 11: the second definition's node 5 becomes 12
    assert set(out) == {"1", "3", "10:5", "11:12"}
    assert out["3"]["inputs"]["image"] == ["11:12", 0]
    assert set(conv_current(g_subgraph_ids(), frontend="1.32.9")) == {"1", "3", "10:5", "11:5"}
    # the promoted widget's value (4) reaches the renumbered node on 1.58.1
    assert conv_current(g_subgraph_ids(), frontend="1.58.1")["11:12"]["inputs"]["blur_radius"] == 4


def test_subgraph_node_values_reach_promoted_widgets_except_on_frontends_1_33_to_1_45():
    """1.32.9 and 1.58.1 send the instance's saved value (9); in 1.45.21 a promoted widget is a
    view of the inner widget, whose value (3) is sent, proxyWidgets or not."""
    g = subgraph_graph([9], linked=False)
    assert conv(g)["10:5"]["inputs"]["blur_radius"] == 9
    assert conv_current(g, frontend="1.58.1")["10:5"]["inputs"]["blur_radius"] == 9
    assert conv_current(g)["10:5"]["inputs"]["blur_radius"] == 3
    next(n for n in g.nodes if n["id"] == 10)["properties"]["proxyWidgets"] = [["-1", "radius"]]
    assert conv_current(g)["10:5"]["inputs"]["blur_radius"] == 3
    assert conv_current(g, frontend="1.58.1")["10:5"]["inputs"]["blur_radius"] == 9


def test_a_muted_or_bypassed_subgraph_node_drops_what_it_contains():
    muted = conv_current(g_subgraph_ids(mode=2))
    assert set(muted) == {"1", "3", "10:5"} and muted["3"]["inputs"] == {}
    bypassed = conv_current(g_subgraph_ids(mode=4))
    assert set(bypassed) == {"1", "3", "10:5"} and bypassed["3"]["inputs"]["image"] == ["1", 0]


def g_inner_proxies(values: dict[int, list[Any]] | None = None) -> Graph:
    """Instances of one subgraph (inner node 5: ImageBlur, blur_radius 3, sigma 2.0) whose
    ``proxyWidgets`` name the inner node's widgets; each instance saves its own values for them
    (None as a saved ``null``; a short list leaves some out)."""
    base = subgraph_graph([], linked=False)
    d = base.subgraphs[0]
    d["inputs"] = d["inputs"][:1]  # no promoted input: only the proxies
    d["links"] = [lk for lk in d["links"] if lk["id"] != 102]
    d["nodes"][0]["inputs"][1]["link"] = None
    g = Graph()
    g.subgraphs.append(d)
    g.node(1, "EmptyImage", [8, 8, 1, 0], outputs=["IMAGE"])
    for nid, vals in (values or {10: [None, 0.5], 11: [7, None], 12: [], 13: [4]}).items():
        n = g.node(nid, d["id"], vals, outputs=["IMAGE"])
        n["properties"]["proxyWidgets"] = [["5", "blur_radius"], ["5", "sigma"]]
        g.link(1, 0, nid, "image", "IMAGE")
    return g


def test_newer_frontends_send_each_subgraph_instances_own_inner_widget_values():
    """Frontend 1.58.1 (seen in 14 templates: a saved null seed, prompt or size is sent as null)."""
    out = conv_current(g_inner_proxies(), frontend="1.58.1")
    assert out["10:5"]["inputs"] == {"blur_radius": None, "sigma": 0.5, "image": ["1", 0]}
    assert out["11:5"]["inputs"] == {"blur_radius": 7, "sigma": None, "image": ["1", 0]}
    assert out["12:5"]["inputs"] == {
        "blur_radius": 3,
        "sigma": 2.0,
        "image": ["1", 0],
    }  # none saved
    assert out["13:5"]["inputs"] == {"blur_radius": 4, "sigma": 2.0, "image": ["1", 0]}
    # 1.45.21 sends the inner node's values
    older = conv_current(g_inner_proxies())
    assert {older[k]["inputs"]["blur_radius"] for k in ("10:5", "11:5", "12:5", "13:5")} == {3}


#: Hand-written graphs for the current ComfyUI line that tests/browser also runs through the real
#: frontends (1.45.21 and 1.58.1).
SCENARIOS_CURRENT = {
    "dynamic_combo": g_dynamic_combo,
    "muted_current": g_muted_current,
    "list_values": g_list_values,
    "subgraph_ids": g_subgraph_ids,
    "subgraph_muted": lambda: g_subgraph_ids(mode=2),
    "subgraph_bypassed": lambda: g_subgraph_ids(mode=4),
    "inner_proxies": g_inner_proxies,
    "promoted_values": lambda: subgraph_graph([9], linked=False),
}


def test_subgraph_nodes_are_flattened_with_prefixed_ids():
    out = conv(subgraph_graph([9], linked=False))
    assert set(out) == {"1", "2", "3", "10:5"}
    assert out["10:5"]["class_type"] == "ImageBlur"
    # the image comes in from outside; the promoted widget's value (9) replaces the inner 3
    assert out["10:5"]["inputs"] == {"blur_radius": 9, "sigma": 2.0, "image": ["1", 0]}
    assert out["3"]["inputs"]["image"] == ["10:5", 0]


def test_subgraph_input_linked_outside_takes_that_link():
    out = conv(subgraph_graph([9], linked=True))
    assert out["10:5"]["inputs"]["blur_radius"] == ["2", 0]


# -- errors -------------------------------------------------------------------------------------


def test_missing_node_types_are_one_error_listing_them():
    g = Graph()
    g.node(1, "FancyLoader", [], outputs=["IMAGE"])
    g.node(2, "FancySaver", [])
    g.node(3, "FancyMuted", [], mode=2, outputs=["IMAGE"])
    g.node(4, "Note", ["x"])
    g.link(1, 0, 2, "image", "IMAGE")
    with pytest.raises(WorkflowError) as info:
        convert(g.ui(), OBJECT_INFO, providers={"FancyLoader": "comfyui-fancy"})
    assert "2 node type(s)" in info.value.message
    assert (
        "FancyLoader (from comfyui-fancy)" in info.value.message
        and "FancySaver" in info.value.message
    )
    assert info.value.details == {"missing_node_types": ["FancyLoader", "FancySaver"]}
    assert missing_node_types(g.ui(), OBJECT_INFO) == ["FancyLoader", "FancySaver"]


def test_legacy_group_nodes_are_refused_with_what_to_do():
    g = Graph()
    g.extra["groupNodes"] = {"x": {}}
    with pytest.raises(WorkflowError, match="subgraph"):
        conv(g)


def test_broken_links_are_a_workflow_error():
    g = Graph()
    g.node(2, "ImageInvert", outputs=["IMAGE"])
    g.nodes[0]["inputs"] = [{"name": "image", "type": "IMAGE", "link": 77}]
    with pytest.raises(WorkflowError, match="link 77"):
        conv(g)


# -- the examples and loading -------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_ui_workflow_converts_to_its_api_workflow(name):
    ui_path = example(name).with_name("workflow.json")
    assert convert(json.loads(ui_path.read_text()), OBJECT_INFO) == json.loads(
        example(name).read_text()
    )


@contextlib.contextmanager
def fake_comfyui(system: dict[str, Any]) -> Iterator[str]:
    """A local HTTP server answering ``/system_stats`` with ``{"system": system}``."""
    body = json.dumps({"system": system, "devices": []}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            ok = self.path == "/system_stats"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if ok else b"{}")

        def log_message(self, *a: Any) -> None:
            pass

    with http_server(Handler) as url:
        yield url


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        # ComfyUI 0.28.2: the installed package is reported (it wins over the pin)
        (
            {
                "comfyui_version": "0.28.2",
                "required_frontend_version": "1.45.20",
                "argv": ["main.py"],
                "comfy_package_versions": [
                    {
                        "name": "comfyui-workflow-templates",
                        "installed": "0.9.1",
                        "required": "0.9.1",
                    },
                    {
                        "name": "comfyui-frontend-package",
                        "installed": "1.45.21",
                        "required": "1.45.20",
                    },
                ],
            },
            "1.45.21",
        ),
        # ComfyUI 0.3.75 reports only what it pins
        (
            {
                "comfyui_version": "0.3.75",
                "required_frontend_version": "1.32.9",
                "argv": ["main.py", "--cpu"],
            },
            "1.32.9",
        ),
        # started with another frontend: that one, whatever is installed
        (
            {
                "required_frontend_version": "1.45.20",
                "argv": ["main.py", "--front-end-root", "/w/.cache/frontends/1.58.1"],
                "comfy_package_versions": [
                    {"name": "comfyui-frontend-package", "installed": "1.45.21"}
                ],
            },
            "1.58.1",
        ),
        (
            {
                "required_frontend_version": "1.32.9",
                "argv": ["main.py", "--front-end-version=Comfy-Org/ComfyUI_frontend@v1.40.2"],
            },
            "1.40.2",
        ),
        # a frontend whose version cannot be told (a local build, "latest"): the newest
        (
            {
                "required_frontend_version": "1.45.20",
                "argv": ["main.py", "--front-end-root", "/home/me/frontend/dist/"],
            },
            None,
        ),
        (
            {
                "required_frontend_version": "1.45.20",
                "argv": ["main.py", "--front-end-version", "Comfy-Org/ComfyUI_frontend@latest"],
            },
            None,
        ),
        ({"comfyui_version": "0.1.0"}, None),
    ],
)
def test_frontend_version_a_running_comfyui_serves(
    system: dict[str, Any], expected: str | None
) -> None:
    from comfypack.comfyui.objectinfo import frontend_version_for

    with fake_comfyui(system) as url:
        assert frontend_version_for(url) == expected


def test_frontend_version_of_an_unreachable_comfyui_is_unknown() -> None:
    from comfypack.comfyui.objectinfo import frontend_version_for

    with fake_comfyui({}) as url:
        pass  # closed again: nothing listens there now
    assert frontend_version_for(url, timeout=5) is None


def _interpreter(tmp_path: Path, name: str, script: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_frontend_version_of_a_tree_is_the_package_its_interpreter_has(tmp_path: Path) -> None:
    """A ComfyUI tree serves the comfyui-frontend-package of the Python that runs it; where that
    cannot be asked, the version its requirements.txt pins; else unknown (None: the newest)."""
    import importlib.metadata

    from comfypack.comfyui.objectinfo import frontend_version_for

    tree = tmp_path / "ComfyUI"
    tree.mkdir()
    newer = _interpreter(
        tmp_path, "python-current", 'case "$2" in *comfyui-frontend-package*) echo 1.45.21;; esac'
    )
    assert frontend_version_for(tree, python=newer) == "1.45.21"
    (tree / "requirements.txt").write_text(
        "comfyui-frontend-package==1.32.9\ncomfyui-workflow-templates==0.7.25\n"
    )
    broken = _interpreter(tmp_path, "python-broken", "exit 1")
    assert frontend_version_for(tree, python=broken) == "1.32.9"
    without = _interpreter(tmp_path, "python-bare", "exit 0")  # the package is not installed there
    assert frontend_version_for(tree, python=without) == "1.32.9"
    assert frontend_version_for(tree, python=str(tmp_path / "no-such-python")) == "1.32.9"
    (tree / "requirements.txt").write_text("comfyui-frontend-package>=1.30\n")  # no exact pin
    assert frontend_version_for(tree, python=broken) is None
    # this interpreter: read in-process
    try:
        mine: str | None = importlib.metadata.version("comfyui-frontend-package")
    except importlib.metadata.PackageNotFoundError:
        mine = None
    assert frontend_version_for(tree) == mine
