"""comfypack.workflow.interface: loading API-format workflows and extracting the typed Interface."""

from __future__ import annotations

import json

import pytest

from comfypack.errors import WorkflowError
from comfypack.workflow.interface import (
    FILE_KINDS,
    INPUT_NODES,
    OUTPUT_NODES,
    RESERVED_NAMES,
    InputSpec,
    Interface,
    OutputSpec,
    load_workflow,
    parse_interface,
)

from .._helpers import EXAMPLE_NAMES, example, inp, node, out, save_image


def interface_error(workflow) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        parse_interface(workflow)
    err = info.value
    assert err.status == 400 and err.exit_code == 2
    assert isinstance(err.details, list) and err.details, "details must list the problems"
    return err


def problems_for(err: WorkflowError, field) -> list[str]:
    return [d["message"] for d in err.details if d["field"] == field]


# ----------------------------------------------------------------------------------------------
# load_workflow


def test_load_from_file(tmp_path):
    wf = {"1": inp("Int", "n", default=1), "2": out("Number", "n", value=["1", 0])}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    loaded = load_workflow(path)
    assert loaded == wf
    assert load_workflow(str(path)) == wf  # a str path too


def test_load_fills_missing_inputs_and_copies_a_mapping():
    source = {"1": {"class_type": "SaveImage"}}
    loaded = load_workflow(source)
    assert loaded == {"1": {"class_type": "SaveImage", "inputs": {}}}
    assert source == {"1": {"class_type": "SaveImage"}}, "the caller's mapping must not be changed"
    loaded["1"]["inputs"]["x"] = 1
    assert "inputs" not in source["1"]


def test_load_missing_file(tmp_path):
    with pytest.raises(WorkflowError, match="no such file") as info:
        load_workflow(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in info.value.message


def test_load_not_json(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text("{not json")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        load_workflow(path)


def test_load_not_utf8(tmp_path):
    path = tmp_path / "wf.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WorkflowError, match="cannot read"):
        load_workflow(path)


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None])
def test_load_non_object(tmp_path, payload):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(WorkflowError, match="JSON object of nodes"):
        load_workflow(path)


def test_load_ui_format_is_detected_with_a_hint(tmp_path):
    ui = {
        "last_node_id": 2,
        "last_link_id": 1,
        "nodes": [{"id": 1, "type": "SaveImage"}],
        "links": [],
        "version": 0.4,
    }
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(ui))
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert "UI-format" in info.value.message
    assert "Export (API)" in info.value.message


def test_load_prompt_request_body_with_client_id():
    wf = {"1": inp("Int", "n", default=1), "2": out("Number", "n", value=["1", 0])}
    body = {"prompt": wf, "client_id": "abc", "extra_data": {}}
    assert load_workflow(body) == wf


def test_load_prompt_request_body_without_client_id():
    """client_id is optional in ComfyUI's POST /prompt; a captured body without it still loads."""
    wf = {"1": inp("Int", "n", default=1), "2": out("Number", "n", value=["1", 0])}
    assert load_workflow({"prompt": wf}) == wf
    assert load_workflow({"prompt": wf, "prompt_id": "p1", "extra_data": {}}) == wf


def test_a_node_whose_id_is_prompt_is_still_a_node():
    wf = {"prompt": inp("String", "text", default="x")}
    assert load_workflow(wf) == wf


def test_load_node_without_class_type():
    with pytest.raises(WorkflowError, match=r"node '7' has no class_type"):
        load_workflow({"7": {"inputs": {}}})
    with pytest.raises(WorkflowError, match=r"node '7' has no class_type"):
        load_workflow({"7": "not a node"})


def test_load_node_inputs_not_an_object():
    with pytest.raises(WorkflowError, match=r"node '1': 'inputs' must be an object"):
        load_workflow({"1": {"class_type": "X", "inputs": [1, 2]}})


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_loads_and_parses(name):
    interface = parse_interface(load_workflow(example(name)))
    assert interface.outputs, f"{name} must declare outputs"
    assert not interface.fallback_outputs


# ----------------------------------------------------------------------------------------------
# parse_interface: every input kind


def test_every_input_kind():
    wf = {
        "1": inp(
            "String", "prompt", description="  What to draw.  ", default="a cat", max_length=50
        ),
        "2": inp("Int", "steps", default=20, min=1, max=100, step=1),
        "3": inp("Float", "cfg", default=7, min=0.5, max=30.0, step=0.5),
        "4": inp("Boolean", "hires", default=True),
        "5": inp("Choice", "sampler", options="euler\n euler_a \n\ndpm", default="euler_a"),
        "6": inp("Seed", "seed", default=42),
        "7": inp("Image", "image", image="example.png"),
        "8": inp("File", "doc", file="example.txt"),
        "9": inp("Audio", "voice", audio="example.wav"),
        "10": inp("Video", "clip", video="example.mp4"),
        "11": out("Text", "text", value=["1", 0]),
    }
    interface = parse_interface(wf)
    by = {s.name: s for s in interface.inputs}
    assert [s.name for s in interface.inputs] == [
        "prompt",
        "steps",
        "cfg",
        "hires",
        "sampler",
        "seed",
        "image",
        "doc",
        "voice",
        "clip",
    ]

    assert by["prompt"] == InputSpec(
        name="prompt",
        kind="string",
        node_id="1",
        widget="default",
        description="What to draw.",
        default="a cat",
        max_length=50,
    )
    assert by["steps"] == InputSpec(
        name="steps",
        kind="int",
        node_id="2",
        widget="default",
        default=20,
        minimum=1,
        maximum=100,
        step=1,
    )
    cfg = by["cfg"]
    assert (cfg.kind, cfg.default, cfg.minimum, cfg.maximum, cfg.step) == (
        "float",
        7.0,
        0.5,
        30.0,
        0.5,
    )
    assert isinstance(cfg.default, float), "an integer literal in a Float node is a float"
    assert (by["hires"].kind, by["hires"].default) == ("boolean", True)
    sampler = by["sampler"]
    assert (sampler.kind, sampler.options, sampler.default) == (
        "choice",
        ("euler", "euler_a", "dpm"),
        "euler_a",
    )
    seed = by["seed"]
    assert (seed.kind, seed.default, seed.minimum, seed.maximum) == ("seed", None, 0, 2**64 - 1)
    assert interface.seed_inputs == (seed,)
    for name, kind, widget, node_id in [
        ("image", "image", "image", "7"),
        ("doc", "file", "file", "8"),
        ("voice", "audio", "audio", "9"),
        ("clip", "video", "video", "10"),
    ]:
        spec = by[name]
        assert (spec.kind, spec.widget, spec.node_id, spec.required, spec.is_file) == (
            kind,
            widget,
            node_id,
            True,
            True,
        )
    assert not any(
        by[n].required or by[n].is_file
        for n in ("prompt", "steps", "cfg", "hires", "sampler", "seed")
    )
    assert interface.input("steps") is by["steps"]
    with pytest.raises(KeyError):
        interface.input("nope")


def test_input_nodes_table_covers_the_node_contract():
    assert set(INPUT_NODES) == {
        f"ComfyPackInput{k}"
        for k in (
            "String",
            "Int",
            "Float",
            "Boolean",
            "Choice",
            "Seed",
            "Image",
            "File",
            "Audio",
            "Video",
        )
    }
    assert set(OUTPUT_NODES) == {
        f"ComfyPackOutput{k}" for k in ("Image", "Text", "Number", "JSON", "File", "Audio", "Video")
    }
    assert FILE_KINDS == {"image", "file", "audio", "video"}
    assert "seeds" in RESERVED_NAMES


def test_string_details():
    wf = {
        "1": inp("String", "a", default="x", max_length=0),
        "2": inp("String", "b", default="line1\nline2"),
        "3": inp("String", "c"),
    }  # no default widget at all
    by = {s.name: s for s in parse_interface(wf).inputs}
    assert by["a"].max_length is None, "max_length 0 means unlimited"
    assert (by["a"].multiline, by["b"].multiline) == (False, True)
    assert by["c"].default == ""


def test_choice_options_as_list_and_default_first():
    wf = {"1": inp("Choice", "mode", options=["fast", " slow "], default="")}
    spec = parse_interface(wf).inputs[0]
    assert spec.options == ("fast", "slow")
    assert spec.default == "fast", "an empty default means the first option"


def test_float_bounds_may_be_ints():
    spec = parse_interface({"1": inp("Float", "x", default=0.25, min=0, max=1)}).inputs[0]
    assert (spec.minimum, spec.maximum) == (0.0, 1.0)
    assert isinstance(spec.minimum, float) and isinstance(spec.maximum, float)


def test_int_without_bounds():
    spec = parse_interface({"1": inp("Int", "n", default=-5)}).inputs[0]
    assert (spec.default, spec.minimum, spec.maximum, spec.step) == (-5, None, None, None)


# ----------------------------------------------------------------------------------------------
# outputs


def test_every_output_kind():
    wf = {
        "1": inp("Int", "n", default=1),
        "20": out("Image", "picture", images=["1", 0], format="webp", filename_prefix="comfypack"),
        "21": out("Text", "caption", value=["1", 0]),
        "22": out("Number", "count", value=["1", 0]),
        "23": out("JSON", "meta", value=["1", 0]),
        "24": out("File", "attachment", path=["1", 0], filename_prefix="comfypack"),
        "25": out("Audio", "sound", audio=["1", 0], format="flac"),
        "26": out("Video", "movie", video=["1", 0], format="mp4"),
    }
    wf["20"]["_meta"] = {"title": "The picture"}
    interface = parse_interface(wf)
    got = [(o.name, o.kind, o.node_id, o.format, o.is_file) for o in interface.outputs]
    assert got == [
        ("picture", "image", "20", "webp", True),
        ("caption", "text", "21", None, False),
        ("count", "number", "22", None, False),
        ("meta", "json", "23", None, False),
        ("attachment", "file", "24", None, True),
        ("sound", "audio", "25", "flac", True),
        ("movie", "video", "26", "mp4", True),
    ]
    assert "The picture" in interface.outputs[0].description
    assert interface.fallback_outputs is False


def test_order_follows_numeric_node_ids():
    wf = {
        "10": inp("Int", "ten", default=0),
        "2": inp("Int", "two", default=0),
        "1": inp("Int", "one", default=0),
        "12:3": inp("Int", "sub", default=0),  # subgraph ids sort after plain ones
        "30": out("Text", "b", value=["1", 0]),
        "4": out("Text", "a", value=["1", 0]),
    }
    interface = parse_interface(wf)
    assert [s.name for s in interface.inputs] == ["one", "two", "ten", "sub"]
    assert [o.name for o in interface.outputs] == ["a", "b"]


def test_fallback_to_save_and_preview_image():
    wf = {
        "1": inp("Int", "n", default=1),
        "5": save_image(),
        "9": node("PreviewImage", images=["1", 0]),
        "3": node("ImageInvert", image=["1", 0]),
    }
    interface = parse_interface(wf)
    assert interface.fallback_outputs is True
    assert [(o.name, o.kind, o.node_id, o.format) for o in interface.outputs] == [
        ("saveimage_5", "image", "5", "png"),
        ("previewimage_9", "image", "9", "png"),
    ]


def test_fallback_names_are_identifiers_for_subgraph_node_ids():
    """A SaveImage inside an expanded subgraph has an id like "12:3"; its fallback output must
    still get a valid API name instead of failing the whole workflow."""
    wf = {"12:3": save_image(), "4-b": node("PreviewImage", images=["1", 0])}
    interface = parse_interface(wf)
    names = [o.name for o in interface.outputs]
    assert names == ["saveimage_12_3", "previewimage_4_b"]
    assert all(n.isidentifier() for n in names)


def test_no_fallback_when_comfypack_outputs_exist():
    wf = {
        "1": inp("Int", "n", default=1),
        "2": out("Number", "n", value=["1", 0]),
        "3": save_image(),
    }
    interface = parse_interface(wf)
    assert [o.name for o in interface.outputs] == ["n"]
    assert interface.fallback_outputs is False


def test_workflow_with_no_inputs_serves():
    wf = {"1": node("EmptyImage", width=8, height=8, batch_size=1, color=0), "2": save_image()}
    interface = parse_interface(wf)
    assert interface.inputs == ()
    assert interface.seed_inputs == ()
    assert len(interface.outputs) == 1


def test_workflow_with_neither_inputs_nor_outputs():
    assert parse_interface({"1": node("EmptyImage")}) == Interface()


def test_same_name_for_an_input_and_an_output_is_fine():
    wf = {"1": inp("Image", "image", image="x.png"), "2": out("Image", "image", images=["1", 0])}
    interface = parse_interface(wf)
    assert interface.inputs[0].name == interface.outputs[0].name == "image"


def test_output_spec_is_file():
    assert OutputSpec("a", "audio", "1").is_file and not OutputSpec("a", "json", "1").is_file


# ----------------------------------------------------------------------------------------------
# clear errors (details name the field)


def test_duplicate_input_names():
    wf = {"1": inp("Int", "width", default=1), "2": inp("Float", "width", default=1.0)}
    err = interface_error(wf)
    msgs = problems_for(err, "width")
    assert len(msgs) == 1 and "already used by node 1" in msgs[0] and "node 2" in msgs[0]


def test_duplicate_output_names():
    wf = {"1": out("Text", "a", value=["9", 0]), "2": out("Number", "a", value=["9", 0])}
    err = interface_error(wf)
    assert any("unique name" in m for m in problems_for(err, "a"))


@pytest.mark.parametrize("bad", ["my name", "with-dash", "3d", "_private", "class", "lambda", "é"])
def test_invalid_input_names(bad):
    err = interface_error({"1": inp("Int", bad, default=1)})
    msgs = problems_for(err, bad)
    assert msgs and "is not valid" in msgs[0] and "Python identifier" in msgs[0]


def test_invalid_output_name():
    err = interface_error({"1": out("Text", "2nd", value=["9", 0])})
    assert problems_for(err, "2nd")


def test_name_is_stripped():
    assert parse_interface({"1": inp("Int", "  width ", default=1)}).inputs[0].name == "width"


@pytest.mark.parametrize(
    "maker", [lambda: inp("Seed", "seeds", default=0), lambda: out("JSON", "seeds", value=["1", 0])]
)
def test_reserved_name_seeds(maker):
    err = interface_error({"1": maker()})
    msgs = problems_for(err, "seeds")
    assert msgs and "reserved" in msgs[0]


def test_min_greater_than_max():
    err = interface_error({"1": inp("Int", "n", default=5, min=10, max=1)})
    msgs = problems_for(err, "n")
    assert msgs == ["node 1 (ComfyPackInputInt): min (10) is greater than max (1)"]


@pytest.mark.parametrize(
    ("kind", "widgets", "expect"),
    [
        ("Int", {"default": -1, "min": 0, "max": 10}, "below min 0"),
        ("Int", {"default": 11, "min": 0, "max": 10}, "above max 10"),
        ("Float", {"default": 0.05, "min": 0.1, "max": 1.0}, "below min 0.1"),
        ("Float", {"default": 1.5, "min": 0.0, "max": 1.0}, "above max 1.0"),
        ("Int", {"default": 50, "max": 10}, "above max 10"),
        ("Float", {"default": -3.0, "min": 0.0}, "below min 0.0"),
    ],
)
def test_default_outside_range(kind, widgets, expect):
    err = interface_error({"1": inp(kind, "x", **widgets)})
    msgs = problems_for(err, "x")
    assert len(msgs) == 1 and expect in msgs[0]


def test_seed_default_out_of_range():
    err = interface_error({"1": inp("Seed", "seed", default=-1)})
    assert any("outside" in m for m in problems_for(err, "seed"))


def test_negative_step_and_negative_max_length():
    err = interface_error(
        {
            "1": inp("Float", "f", default=0.5, step=-0.1),
            "2": inp("String", "s", default="", max_length=-1),
        }
    )
    assert any("step" in m for m in problems_for(err, "f"))
    assert any("max_length must be >= 0" in m for m in problems_for(err, "s"))


@pytest.mark.parametrize("options", ["", "\n  \n", []])
def test_empty_choice(options):
    err = interface_error({"1": inp("Choice", "mode", options=options, default="")})
    msgs = problems_for(err, "mode")
    assert msgs and "no options" in msgs[0]


def test_duplicate_choice_option():
    err = interface_error({"1": inp("Choice", "mode", options="a\nb\na", default="a")})
    msgs = problems_for(err, "mode")
    assert msgs and "'a' more than once" in msgs[0]


def test_choice_default_not_in_options():
    err = interface_error({"1": inp("Choice", "mode", options="a\nb", default="c")})
    msgs = problems_for(err, "mode")
    assert msgs and "default 'c' is not one of the options" in msgs[0]


def test_string_default_longer_than_max_length():
    err = interface_error({"1": inp("String", "title", default="abcdef", max_length=3)})
    msgs = problems_for(err, "title")
    assert msgs and "6 characters, longer than max_length 3" in msgs[0]


def test_output_without_name_widget():
    wf = {"1": node("ComfyPackOutputText", "Caption out", value=["9", 0])}
    err = interface_error(wf)
    assert err.details == [
        {"field": None, "message": "node 1 (Caption out): missing widget 'name'"}
    ]


@pytest.mark.parametrize("name", ["", "   "])
def test_output_with_empty_name(name):
    err = interface_error({"4": out("Image", name, images=["1", 0])})
    msgs = problems_for(err, None)
    assert msgs and "has no name" in msgs[0] and "node 4" in msgs[0]


def test_input_with_empty_name():
    err = interface_error({"4": inp("Int", "", default=1)})
    msgs = problems_for(err, None)
    assert msgs and "the input has no name" in msgs[0]


@pytest.mark.parametrize(
    ("kind", "widget", "extra"),
    [
        ("Int", "default", {"min": 0, "max": 10}),
        ("Int", "max", {"default": 1}),
        ("Float", "min", {"default": 0.5}),
        ("String", "default", {}),
        ("Boolean", "default", {}),
        ("Choice", "options", {"default": "a"}),
        ("Seed", "default", {}),
        ("Int", "description", {"default": 1}),
    ],
)
def test_linked_widget_where_a_literal_is_required(kind, widget, extra):
    widgets = {**extra, widget: ["3", 0]}
    err = interface_error({"1": inp(kind, "field1", **widgets), "3": node("PrimitiveInt", value=1)})
    msgs = problems_for(err, "field1")
    assert msgs, err.details
    assert f"widget {widget!r} is connected to another node" in msgs[0]
    assert "literal" in msgs[0]


def test_linked_name_widget():
    err = interface_error({"1": node("ComfyPackInputInt", name=["3", 0], default=1)})
    assert err.details[0]["field"] is None
    assert "'name' is connected" in err.details[0]["message"]


@pytest.mark.parametrize(
    ("kind", "widgets", "widget"),
    [
        ("Int", {"default": "5"}, "default"),
        ("Int", {"default": 1.5}, "default"),
        ("Int", {"default": True}, "default"),
        ("Int", {"default": 1, "min": "0"}, "min"),
        ("Float", {"default": "0.5"}, "default"),
        ("Float", {"default": False}, "default"),
        ("Float", {"default": float("nan")}, "default"),
        ("String", {"default": 3}, "default"),
        ("String", {"default": "x", "max_length": "10"}, "max_length"),
        ("Boolean", {"default": "true"}, "default"),
        ("Boolean", {"default": 1}, "default"),
        ("Choice", {"options": 3, "default": "a"}, "options"),
        ("Choice", {"options": "a", "default": 1}, "default"),
        ("Seed", {"default": "1"}, "default"),
        ("Image", {"description": 5}, "description"),
    ],
)
def test_wrong_widget_types(kind, widgets, widget):
    err = interface_error({"1": inp(kind, "f", **widgets)})
    msgs = problems_for(err, "f")
    assert msgs, err.details
    assert any(f"widget {widget!r} must be" in m for m in msgs), msgs


def test_missing_required_default():
    err = interface_error({"1": node("ComfyPackInputInt", name="n")})
    assert problems_for(err, "n") == ["node 1 (ComfyPackInputInt): missing widget 'default'"]


def test_wrong_output_widget_types():
    err = interface_error(
        {"1": out("Image", "pic", format=5), "2": node("ComfyPackOutputText", name=7)}
    )
    assert any("'format' must be str" in m for m in problems_for(err, "pic"))
    assert any("'name' must be str" in m for m in problems_for(err, None))


def test_every_problem_is_reported_at_once():
    wf = {
        "1": inp("Int", "a", default=50, min=0, max=10),
        "2": inp("Choice", "b", options="", default=""),
        "3": inp("Int", "class", default=0),
    }
    err = interface_error(wf)
    assert {d["field"] for d in err.details} == {"a", "b", "class"}
    for node_id in ("1", "2", "3"):
        assert f"node {node_id} (" in err.message


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("flows/text_tools/workflow_api.json", "text_tools"),
        ("flows/text_tools/workflow.json", "text_tools"),
        ("my flow.json", "my flow"),
        ("/p/my_flow.cpack.zip", "my_flow"),
        ("/p/old.zip", "old"),
        ("workflow_api.json", "workflow_api"),  # no folder to name it
        (".json", "workflow"),
    ],
)
def test_workflow_name_is_one_rule(path, name):
    from comfypack.workflow.interface import workflow_name

    assert workflow_name(path) == name
