"""The media of the service's OpenAPI document (:mod:`comfypack.serve.openapi`): the request body as
JSON and as a multipart form, the 200's media type by output kind, and tiny sample files that make
the examples validate."""

from __future__ import annotations

import base64
import copy
import io
from typing import Any

from ..workflow.interface import FILE_KINDS, Interface, OutputSpec
from ..workflow.schema import MEDIA_TYPES, input_schema

__all__ = ["sample_media"]

_OUTPUT_MEDIA = {
    ("image", "png"): "image/png",
    ("image", "webp"): "image/webp",
    ("image", "jpeg"): "image/jpeg",
    ("audio", "flac"): "audio/flac",
    ("audio", "mp3"): "audio/mpeg",
    ("audio", "opus"): "audio/ogg",
}

# what a multipart upload of each kind may be (the formats the service sniffs and ComfyUI loads)
_UPLOAD_TYPES = {
    "image": "image/png, image/jpeg, image/webp, image/gif, image/bmp, image/tiff",
    "audio": "audio/wav, audio/flac, audio/mpeg, audio/ogg",
    "video": "video/mp4, video/webm, video/x-msvideo",
}


def _clean(prop: dict[str, Any], *, form: bool = False) -> dict[str, Any]:
    """A JSON Schema property as OpenAPI 3.0 takes it (``nullable`` instead of a ``null`` type; a
    form field is never null)."""
    prop = dict(prop)
    prop.pop("contentMediaType", None)
    types = prop.get("type")
    if isinstance(types, list):
        rest = [t for t in types if t != "null"]
        prop["type"] = rest[0] if len(rest) == 1 else rest
        if "null" in types and not form:
            prop["nullable"] = True
    return prop


def _bodies(interface: Interface, example: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = input_schema(interface)
    files = {s.name: s for s in interface.inputs if s.kind in FILE_KINDS}
    as_json = copy.deepcopy(schema)
    as_form = copy.deepcopy(schema)
    encoding: dict[str, Any] = {}
    for name, spec in files.items():
        described = as_json["properties"][name].get("description", "")
        as_json["properties"][name] = {
            "type": "string",
            "title": name,
            "minLength": 1,
            "description": described + " In JSON: base64, a `data:` URI or an http(s) URL.",
        }
        as_form["properties"][name] = {
            "type": "string",
            "format": "binary",
            "title": name,
            "minLength": 1,
            "description": described,
        }
        encoding[name] = {"contentType": _UPLOAD_TYPES.get(spec.kind, MEDIA_TYPES[spec.kind])}
    for props, form in ((as_json["properties"], False), (as_form["properties"], True)):
        for name in list(props):
            props[name] = _clean(props[name], form=form)
    as_json["title"], as_form["title"] = "GenerateInput", "GenerateForm"
    form_example = {k: v for k, v in example.items() if k not in files}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/GenerateInput"},
                "example": example,
            },
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/GenerateForm"},
                "encoding": encoding,
                **({"example": form_example} if not files else {}),
            },
        },
    }, {"GenerateInput": as_json, "GenerateForm": as_form}


def _single_file(interface: Interface) -> OutputSpec | None:
    if len(interface.outputs) == 1 and interface.outputs[0].kind in FILE_KINDS:
        return interface.outputs[0]
    return None


def _result_response(
    interface: Interface, outputs: tuple[str, ...] = ("inline",)
) -> dict[str, Any]:
    """The 200 of the endpoint (and of ``get``); ``outputs``: the answer forms the service offers."""
    json_content = {"application/json": {"schema": {"$ref": "#/components/schemas/GenerateOutput"}}}
    headers = {
        "X-Request-ID": {
            "schema": {"type": "string"},
            "description": "the request id (echoed or made)",
        },
        "X-ComfyPack-Prompt-Id": {
            "schema": {"type": "string"},
            "description": "ComfyUI's prompt id",
        },
        "X-ComfyPack-Seeds": {
            "schema": {"type": "string"},
            "description": "JSON object: the seed used per Seed input",
        },
    }
    single = _single_file(interface)
    stored = (
        " With object storage (`X-ComfyPack-Outputs: url`), files are signed URLs to download "
        "them from, and a single file output comes back as this JSON too."
        if "url" in outputs
        else ""
    )
    if single is None or outputs == ("url",):
        return {
            "description": "Every named output (files as base64 `data:` URIs)." + stored,
            "headers": headers,
            "content": json_content,
        }
    media = _OUTPUT_MEDIA.get(
        (single.kind, single.format or ""),
        f"{single.kind}/*" if single.kind != "file" else "application/octet-stream",
    )
    return {
        "description": f"The {single.kind} output `{single.name}` itself (JSON with a list of "
        "`data:` URIs when the node produced a batch)." + stored,
        "headers": headers,
        "content": {media: {"schema": {"type": "string", "format": "binary"}}, **json_content},
    }


def sample_media(kind: str) -> str:
    """A tiny valid file of ``kind`` as a ``data:`` URI (for examples and warm-up)."""
    if kind == "image":
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (128, 128, 128)).save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    if kind == "audio":
        import wave

        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x00" * 800)
        return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
    if kind == "video":
        import av
        import numpy as np

        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=4)
            stream.width = stream.height = 16
            stream.pix_fmt = "yuv420p"
            for _ in range(4):
                frame = av.VideoFrame.from_ndarray(
                    np.full((16, 16, 3), 128, np.uint8), format="rgb24"
                )
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return "data:video/mp4;base64," + base64.b64encode(buf.getvalue()).decode()
    return "data:text/plain;base64," + base64.b64encode(b"example").decode()


def _example(interface: Interface, example: dict[str, Any] | None) -> dict[str, Any]:
    """``example`` (or the inputs' defaults) with every required file input filled."""
    body = dict(example) if isinstance(example, dict) else {}
    if not body:
        body = {
            s.name: s.default
            for s in interface.inputs
            if s.default is not None and s.kind not in FILE_KINDS
        }
    for spec in interface.inputs:
        if spec.kind in FILE_KINDS and spec.required and not body.get(spec.name):
            try:
                body[spec.name] = sample_media(spec.kind)
            except Exception:  # a sample needs PIL / av; without them the example stays partial
                continue
    return body
