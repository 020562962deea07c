"""comfypack.serve.openapi: the document tells the truth about the HTTP surface (schemas, media types,
statuses, async routes, security), and its examples validate against its own schemas."""

from __future__ import annotations

import json

import jsonschema
import pytest

from comfypack.serve.openapi import TASK_STATUSES, openapi_document
from comfypack.serve.openapi_media import sample_media
from comfypack.workflow.interface import load_workflow, parse_interface

from .._helpers import EXAMPLE_NAMES, EXAMPLES, example


def _doc(name: str, **kw):
    interface = parse_interface(load_workflow(example(name)))
    request = json.loads((EXAMPLES / name / "request.json").read_text())
    return interface, openapi_document(interface, title=name, version="abc", example=request, **kw)


def _resolve(doc, schema):
    """``schema`` with ``#/components/schemas/…`` references resolvable by jsonschema."""
    return {**schema, "components": doc["components"]}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_validate_against_the_json_body_schema(name):
    _, doc = _doc(name)
    body = doc["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
    schema = _resolve(doc, body["schema"])
    jsonschema.validate(body["example"], schema)
    # and it is the same model the submit route documents
    assert (
        doc["paths"]["/generate/submit"]["post"]["requestBody"]
        == doc["paths"]["/generate"]["post"]["requestBody"]
    )


def test_an_example_without_files_gets_a_sample_for_each_required_file_input():
    interface = parse_interface(load_workflow(example("image_adjust")))
    doc = openapi_document(interface, example={"width": 32})
    ex = doc["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert ex["width"] == 32 and ex["image"].startswith("data:image/png;base64,")
    jsonschema.validate(ex, _resolve(doc, {"$ref": "#/components/schemas/GenerateInput"}))


@pytest.mark.parametrize(
    "kind, prefix",
    [
        ("image", "data:image/png"),
        ("audio", "data:audio/wav"),
        ("video", "data:video/mp4"),
        ("file", "data:text/plain"),
    ],
)
def test_sample_media_are_real_files(kind, prefix):
    import base64

    uri = sample_media(kind)
    assert uri.startswith(prefix + ";base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    magic = {"image": b"\x89PNG", "audio": b"RIFF", "video": b"ftyp", "file": b"example"}[kind]
    assert magic in data[:12]


def test_files_are_binary_in_the_form_and_text_in_json():
    _, doc = _doc("image_adjust")
    schemas = doc["components"]["schemas"]
    assert schemas["GenerateForm"]["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "title": "image",
        "minLength": 1,
        "description": schemas["GenerateForm"]["properties"]["image"]["description"],
    }
    assert schemas["GenerateInput"]["properties"]["image"]["type"] == "string"
    assert "format" not in schemas["GenerateInput"]["properties"]["image"]
    form = doc["paths"]["/generate"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["encoding"]["image"]["contentType"].startswith("image/png, ")
    # no JSON Schema keyword OpenAPI 3.0 lacks
    assert "contentMediaType" not in json.dumps(doc)


@pytest.mark.parametrize(
    "name, media", [("image_adjust", "image/png"), ("audio_volume", "audio/flac")]
)
def test_a_single_file_output_is_documented_with_its_own_media_type(name, media):
    _, doc = _doc(name)
    content = doc["paths"]["/generate"]["post"]["responses"]["200"]["content"]
    assert content[media]["schema"] == {"type": "string", "format": "binary"}
    assert "application/json" in content  # a batch answers JSON


def test_several_outputs_answer_json_only():
    _, doc = _doc("text_tools")
    content = doc["paths"]["/generate"]["post"]["responses"]["200"]["content"]
    assert list(content) == ["application/json"]
    assert set(doc["components"]["schemas"]["GenerateOutput"]["properties"]) >= {"text", "length"}


def test_every_status_the_endpoint_answers_is_documented_with_the_error_shape():
    _, doc = _doc("text_tools")
    responses = doc["paths"]["/generate"]["post"]["responses"]
    assert set(responses) == {"200", "400", "413", "415", "422", "500", "502", "503", "504"}
    for code, resp in responses.items():
        if code != "200":
            assert resp["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
    assert "Retry-After" in responses["503"]["headers"]
    err = doc["components"]["schemas"]["Error"]
    jsonschema.validate(
        {"error": {"type": "validation_error", "message": "m", "details": [{"field": "x"}]}}, err
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"error": "text", "detail": []}, err)


def test_async_routes_and_their_real_status_values():
    _, doc = _doc("text_tools")
    for path in ("submit", "status", "get", "progress", "cancel", "retry"):
        assert f"/generate/{path}" in doc["paths"], path
    assert (
        doc["components"]["schemas"]["TaskStatus"]["properties"]["status"]["enum"] == TASK_STATUSES
    )
    assert "failed" in TASK_STATUSES and "failure" not in TASK_STATUSES
    assert "422" in doc["paths"]["/generate/submit"]["post"]["responses"]  # validated at submit


def test_security_scheme_only_with_a_key():
    _, doc = _doc("text_tools")
    assert "security" not in doc and "securitySchemes" not in doc["components"]
    assert "401" not in doc["paths"]["/generate"]["post"]["responses"]
    _, keyed = _doc("text_tools", api_key=True)
    assert keyed["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert keyed["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "401" in keyed["paths"]["/generate"]["post"]["responses"]
    assert keyed["paths"]["/readyz"]["get"]["security"] == []  # probes need no key


def test_title_and_version_come_from_the_caller():
    _, doc = _doc("text_tools", description="Run it.")
    assert doc["info"] == {"title": "text_tools", "version": "abc", "description": "Run it."}
