"""comfypack.workflow.schema: JSON Schema, pydantic model and request validation from an Interface."""

from __future__ import annotations

import jsonschema
import pydantic
import pytest

from comfypack.errors import RequestError
from comfypack.workflow.interface import SEED_MAX, load_workflow, parse_interface
from comfypack.workflow.schema import (
    MEDIA_TYPES,
    input_schema,
    interface_document,
    output_schema,
    pydantic_model,
    validate_request,
)

from .._helpers import EXAMPLE_NAMES, example, inp, out


def load(name: str):
    return parse_interface(load_workflow(example(name)))


@pytest.fixture(scope="module")
def kitchen_sink():
    """One input of every kind, with bounds, and one output of several kinds."""
    return parse_interface(
        {
            "1": inp(
                "String", "prompt", description="What to draw.", default="a cat", max_length=10
            ),
            "2": inp("Int", "steps", default=20, min=1, max=100),
            "3": inp("Float", "cfg", default=7.5, min=0.0, max=30.0),
            "4": inp("Boolean", "hires", default=False),
            "5": inp("Choice", "sampler", options="euler\ndpm", default="dpm"),
            "6": inp("Seed", "seed", default=0),
            "7": inp("Image", "image", description="The picture.", image="x.png"),
            "8": inp("Int", "free", default=3),  # no bounds
            "20": out("Image", "result", images=["7", 0]),
            "21": out("Text", "caption", value=["1", 0]),
        }
    )


def field_errors(excinfo) -> dict:
    err = excinfo.value
    return {d["field"]: d["message"] for d in err.details}


# ----------------------------------------------------------------------------------------------
# input_schema of the examples


def test_text_tools_schema_exactly():
    assert input_schema(load("text_tools")) == {
        "type": "object",
        "title": "GenerateInput",
        "properties": {
            "text": {
                "type": "string",
                "default": "Hello",
                "description": "The text to transform.",
                "title": "text",
            },
            "suffix": {
                "type": "string",
                "default": " ComfyUI",
                "maxLength": 64,
                "description": "Appended to the text.",
                "title": "suffix",
            },
            "case": {
                "type": "string",
                "enum": ["UPPERCASE", "lowercase", "Capitalize", "Title Case"],
                "default": "UPPERCASE",
                "description": "Letter case of the result.",
                "title": "case",
            },
            "needle": {
                "type": "string",
                "default": "comfy",
                "description": "Substring to look for in the result.",
                "title": "needle",
            },
            "case_sensitive": {
                "type": "boolean",
                "default": False,
                "description": "Whether the search for `needle` is case sensitive.",
                "title": "case_sensitive",
            },
        },
        "required": [],
        "additionalProperties": False,
    }


def test_image_adjust_schema():
    schema = input_schema(load("image_adjust"))
    props = schema["properties"]
    assert list(props) == ["image", "upscale_method", "width", "height", "blur_radius", "sigma"]
    assert schema["required"] == ["image"]
    assert schema["additionalProperties"] is False
    assert props["image"]["type"] == "string" and props["image"]["format"] == "binary"
    assert props["image"]["contentMediaType"] == "image/*"
    assert props["image"]["description"].startswith("The picture to adjust. (image)")
    assert "default" not in props["image"]
    assert props["upscale_method"]["enum"] == [
        "nearest-exact",
        "bilinear",
        "area",
        "bicubic",
        "lanczos",
    ]
    assert props["upscale_method"]["default"] == "bilinear"
    assert props["width"] == {
        "type": "integer",
        "default": 64,
        "minimum": 8,
        "maximum": 2048,
        "multipleOf": 8,
        "description": "Output width in pixels.",
        "title": "width",
    }
    assert props["sigma"]["type"] == "number"
    assert (props["sigma"]["default"], props["sigma"]["minimum"], props["sigma"]["maximum"]) == (
        1.0,
        0.1,
        10.0,
    )


def test_image_mask_text_schema():
    props = input_schema(load("image_mask_text"))["properties"]
    seed = props["seed"]
    assert seed["type"] == ["integer", "null"] and "default" not in seed  # null: a random seed
    assert (seed["minimum"], seed["maximum"]) == (0, SEED_MAX)
    assert "random seed" in seed["description"] and "`seeds`" in seed["description"]
    assert props["caption"]["maxLength"] == 200
    assert (
        props["attachment"]["contentMediaType"] == MEDIA_TYPES["file"] == "application/octet-stream"
    )


def test_audio_and_video_media_types():
    assert (
        input_schema(load("audio_volume"))["properties"]["audio"]["contentMediaType"] == "audio/*"
    )
    assert (
        input_schema(load("video_invert"))["properties"]["video"]["contentMediaType"] == "video/*"
    )
    assert input_schema(load("audio_volume"))["properties"]["gain_db"]["minimum"] == -40


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_schema_is_valid_json_schema(name):
    interface = load(name)
    for schema in (input_schema(interface), output_schema(interface)):
        jsonschema.validators.validator_for(schema).check_schema(schema)
    # the defaults themselves validate (media fields aside)
    schema = input_schema(interface)
    defaults = {k: p["default"] for k, p in schema["properties"].items() if "default" in p}
    no_required = {**schema, "required": []}
    jsonschema.validate(defaults, no_required)


def test_no_inputs_schema():
    schema = input_schema(parse_interface({"1": out("Text", "t", value=["9", 0])}))
    assert schema["properties"] == {} and schema["required"] == []
    jsonschema.Draft202012Validator.check_schema(schema)


# ----------------------------------------------------------------------------------------------
# pydantic_model agrees with input_schema


@pytest.mark.parametrize("name", EXAMPLE_NAMES + ["kitchen_sink"])
def test_pydantic_model_agrees(name, kitchen_sink):
    interface = kitchen_sink if name == "kitchen_sink" else load(name)
    schema = input_schema(interface)
    model = pydantic_model(interface)
    ps = model.model_json_schema()
    assert list(ps["properties"]) == list(schema["properties"])
    assert sorted(ps.get("required", [])) == sorted(schema["required"])
    assert ps["additionalProperties"] is False
    for spec in interface.inputs:
        mine, theirs = schema["properties"][spec.name], ps["properties"][spec.name]
        if spec.kind == "seed":
            (bounded,) = [a for a in theirs["anyOf"] if a.get("type") == "integer"]
            assert (bounded["minimum"], bounded["maximum"]) == (mine["minimum"], mine["maximum"])
            assert theirs["default"] is None
            continue
        if spec.is_file:
            assert "default" not in theirs
            continue
        assert theirs["default"] == mine["default"], spec.name
        assert theirs.get("minimum") == mine.get("minimum"), spec.name
        assert theirs.get("maximum") == mine.get("maximum"), spec.name
        assert theirs.get("maxLength") == mine.get("maxLength"), spec.name
        assert theirs.get("enum") == mine.get("enum"), spec.name
        assert theirs["type"] == mine["type"], spec.name
        assert mine.get("description", "").startswith(theirs.get("description") or "")


def test_pydantic_model_validates(kitchen_sink):
    model = pydantic_model(kitchen_sink)
    ok = model(image="aGVsbG8=")
    assert (ok.prompt, ok.steps, ok.cfg, ok.hires, ok.sampler, ok.seed) == (
        "a cat",
        20,
        7.5,
        False,
        "dpm",
        None,
    )
    assert model(image=b"raw", seed=5, cfg=1).cfg == 1.0
    bad = [
        {"steps": 0},
        {"steps": 101},
        {"cfg": 31.0},
        {"sampler": "ddim"},
        {"prompt": "x" * 11},
        {"nope": 1},
        {"seed": -1},
        {},
    ]
    for extra in bad:
        body = {"image": "aGVsbG8=", **extra} if extra else {}
        with pytest.raises(pydantic.ValidationError):
            model(**body)


def test_pydantic_model_name():
    assert pydantic_model(load("text_tools")).__name__ == "GenerateInput"
    assert pydantic_model(load("text_tools"), name="TextTools").__name__ == "TextTools"


# ----------------------------------------------------------------------------------------------
# validate_request


def test_defaults_are_filled_and_seeds_are_none(kitchen_sink):
    values = validate_request(kitchen_sink, {"image": "aGVsbG8="})
    assert values == {
        "prompt": "a cat",
        "steps": 20,
        "cfg": 7.5,
        "hires": False,
        "sampler": "dpm",
        "seed": None,
        "image": "aGVsbG8=",
        "free": 3,
    }


def test_given_values_are_kept_and_coerced(kitchen_sink):
    body = {
        "prompt": "dog",
        "steps": 5,
        "cfg": 3,
        "hires": True,
        "sampler": "euler",
        "seed": 2**60,
        "image": b"\x89PNG",
        "free": -7,
    }
    values = validate_request(kitchen_sink, body)
    assert values["cfg"] == 3.0 and isinstance(values["cfg"], float)
    assert values["steps"] == 5 and isinstance(values["steps"], int)
    assert values["seed"] == 2**60
    assert values["image"] == b"\x89PNG"
    assert values["hires"] is True
    assert body["cfg"] == 3, "the caller's body is not modified"


def test_integral_float_for_an_int_becomes_int(kitchen_sink):
    values = validate_request(kitchen_sink, {"image": "x", "steps": 12.0})
    assert values["steps"] == 12 and type(values["steps"]) is int


def test_no_inputs_accepts_empty_body():
    interface = parse_interface({"1": out("Text", "t", value=["9", 0])})
    assert validate_request(interface, {}) == {}
    with pytest.raises(RequestError) as info:
        validate_request(interface, {"x": 1})
    assert "takes no inputs" in field_errors(info)["x"]


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"steps": "5"}, "steps", "must be of type integer, got string '5'"),
        ({"steps": 2.5}, "steps", "must be of type integer"),
        ({"prompt": 5}, "prompt", "must be of type string, got integer 5"),
        ({"hires": "yes"}, "hires", "must be of type boolean"),
        ({"steps": 0}, "steps", "minimum"),
        ({"steps": 101}, "steps", "maximum"),
        ({"cfg": -0.5}, "cfg", "minimum"),
        ({"seed": -1}, "seed", "minimum"),
        ({"seed": SEED_MAX + 1}, "seed", "maximum"),
        ({"sampler": "ddim"}, "sampler", "must be one of ['euler', 'dpm'], got 'ddim'"),
        ({"prompt": "x" * 11}, "prompt", "too long"),
        ({"cfg": True}, "cfg", "boolean"),
        ({"steps": False}, "steps", "boolean"),
        (
            {"image": 5},
            "image",
            "must be a file upload, an http(s) URL or base64 text, got integer",
        ),
        ({"image": None}, "image", "got null"),
        ({"image": ["a"]}, "image", "got array"),
    ],
)
def test_validation_errors_name_the_field(kitchen_sink, body, field, needle):
    full = {"image": "aGVsbG8=", **body}
    with pytest.raises(RequestError) as info:
        validate_request(kitchen_sink, full)
    err = info.value
    assert err.status == 422
    assert err.type == "validation_error"
    errors = field_errors(info)
    assert set(errors) == {field}, err.details
    assert needle in errors[field]
    assert field in err.message


def test_unknown_field(kitchen_sink):
    with pytest.raises(RequestError) as info:
        validate_request(kitchen_sink, {"image": "x", "stepz": 5, "other": 1})
    errors = field_errors(info)
    assert set(errors) == {"stepz", "other"}
    assert "unknown field" in errors["stepz"] and "steps" in errors["stepz"]
    assert info.value.status == 422


def test_missing_required_media(kitchen_sink):
    with pytest.raises(RequestError) as info:
        validate_request(kitchen_sink, {"steps": 5})
    assert field_errors(info) == {"image": "is required"}
    assert info.value.status == 422


def test_every_problem_is_reported(kitchen_sink):
    with pytest.raises(RequestError) as info:
        validate_request(kitchen_sink, {"steps": 0, "sampler": "x", "bogus": 1})
    assert set(field_errors(info)) == {"image", "steps", "sampler", "bogus"}


@pytest.mark.parametrize("body", [[1, 2], "text", 5, None, True])
def test_body_not_an_object(kitchen_sink, body):
    with pytest.raises(RequestError) as info:
        validate_request(kitchen_sink, body)
    assert info.value.status == 400
    assert info.value.details == [{"field": None, "message": "expected a JSON object"}]
    assert "must be a JSON object" in info.value.message


def test_validator_follows_the_interface_not_a_stale_cache():
    a = parse_interface({"1": inp("Int", "n", default=1, min=0, max=5)})
    b = parse_interface({"1": inp("Int", "n", default=1, min=0, max=50)})
    with pytest.raises(RequestError):
        validate_request(a, {"n": 10})
    assert validate_request(b, {"n": 10}) == {"n": 10}
    with pytest.raises(RequestError):
        validate_request(a, {"n": 10})


# ----------------------------------------------------------------------------------------------
# output_schema / interface_document


def test_output_schema_has_seeds_only_with_seed_inputs():
    with_seed = output_schema(load("image_mask_text"))
    assert with_seed["properties"]["seeds"]["properties"] == {"seed": {"type": "integer"}}
    assert "seeds" not in with_seed["required"]
    for name in ("text_tools", "image_adjust", "audio_volume", "video_invert"):
        assert "seeds" not in output_schema(load(name))["properties"], name


def test_output_schema_properties():
    schema = output_schema(load("text_tools"))
    assert list(schema["properties"]) == ["text", "length", "contains"]
    assert schema["required"] == ["text", "length", "contains"]
    assert schema["title"] == "GenerateOutput"
    v = jsonschema.Draft202012Validator(schema)
    assert v.is_valid({"text": "HELLO", "length": 5, "contains": False})
    assert not v.is_valid({"text": 5, "length": 5, "contains": False})
    assert not v.is_valid({"text": "x", "length": "five", "contains": False})
    assert not v.is_valid({"text": "x", "length": 5})


def test_output_schema_allows_a_batch_of_files():
    """RunOutput.to_json gives a list when an output node produced several files (a batch);
    the documented response schema must accept that."""
    schema = output_schema(load("image_adjust"))
    v = jsonschema.Draft202012Validator(schema)
    assert v.is_valid({"image": "data:image/png;base64,AA=="})
    assert v.is_valid({"image": ["data:image/png;base64,AA==", "data:image/png;base64,AQ=="]})
    assert not v.is_valid({"image": 5})


def test_interface_document():
    interface = load("image_adjust")
    doc = interface_document(interface)
    assert doc["input_schema"] == input_schema(interface)
    assert doc["output_schema"] == output_schema(interface)
    assert doc["inputs"][0] == {
        "name": "image",
        "kind": "image",
        "node_id": "1",
        "required": True,
        "description": "The picture to adjust.",
    }
    assert doc["inputs"][1]["options"] == [
        "nearest-exact",
        "bilinear",
        "area",
        "bicubic",
        "lanczos",
    ]
    assert doc["inputs"][2] == {
        "name": "width",
        "kind": "int",
        "node_id": "3",
        "required": False,
        "default": 64,
        "minimum": 8,
        "maximum": 2048,
        "step": 8,
        "description": "Output width in pixels.",
    }
    assert doc["outputs"] == [{"name": "image", "kind": "image", "node_id": "10", "format": "png"}]


def test_int_step_is_enforced_when_the_range_starts_on_it():
    interface = parse_interface(load_workflow(example("image_adjust")))
    with pytest.raises(RequestError) as info:
        validate_request(interface, {"image": "x", "width": 13})
    assert info.value.fields == ["width"]
    assert validate_request(interface, {"image": "x", "width": 16})["width"] == 16


def test_null_seed_means_random():
    interface = parse_interface(load_workflow(example("image_mask_text")))
    values = validate_request(interface, {"image": "x", "attachment": "x", "seed": None})
    assert values["seed"] is None


def test_an_empty_file_input_is_refused_by_name():
    from comfypack.errors import RequestError
    from comfypack.workflow.media import Upload

    interface = load("image_adjust")
    for empty in ("", "  ", b"", Upload(b"", "x.png")):
        with pytest.raises(RequestError) as info:
            validate_request(interface, {"image": empty})
        assert (
            info.value.details[0]["field"] == "image"
            and "is empty" in info.value.details[0]["message"]
        )
