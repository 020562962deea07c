"""The service's OpenAPI document, written from the :class:`~comfypack.workflow.interface.Interface`.

BentoML's generated document knows the endpoint's Python signature, not what the service really
accepts and answers. This one is built from the same JSON Schema that validates requests
(:func:`comfypack.workflow.schema.input_schema`) and says the truth about the HTTP surface:

- the request body as ``application/json`` (files as base64, ``data:`` URIs or http(s) URLs) *and*
  ``multipart/form-data`` (files as binary), so Swagger's form uploads a file;
- an example that validates (every required field present; file fields a tiny sample);
- every status the service answers, with the real error shape as a component, and the right media
  type per answer (a single file output: its own type; several outputs: JSON);
- the async routes (submit, status, get, progress, cancel, retry) with the status values BentoML
  really returns, and ``/readyz``, ``/livez``, ``/metrics``;
- a security scheme when an API key is configured; title, version and description from the
  workflow.
"""

from __future__ import annotations

import base64
import copy
import io
from typing import Any

from ..workflow.interface import FILE_KINDS, Interface, OutputSpec
from ..workflow.schema import MEDIA_TYPES, input_schema, output_schema

__all__ = ["openapi_document", "TASK_STATUSES", "sample_media"]

#: what ``GET <route>/status`` answers in ``status`` (BentoML's task states)
TASK_STATUSES = ["pending", "in_progress", "completed", "failed", "canceled"]

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
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

# status → when the service answers it (for the endpoint and its submit)
_ERRORS = {
    "400": "The body is not valid JSON / multipart, or ComfyUI rejected the prompt (its `node_errors` "
    "are under `details`).",
    "413": "The body, a file or an image (pixels) is over its limit.",
    "415": "The body is neither `application/json` nor `multipart/form-data`.",
    "422": "An input is wrong: the field is named in `message` and in `details[].field`.",
    "500": "A node failed while running (node id, type and message in `details`).",
    "502": "ComfyUI answered something comfypack could not use.",
    "503": "No worker can take the request now: the queue is full (`Retry-After` says when to "
    "retry), ComfyUI is down or restarting, or a model file the workflow needs is missing.",
    "504": "The run took longer than the service's timeout; its prompt was cancelled.",
}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Error",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {
                        "type": "string",
                        "description": "a stable machine-readable kind, e.g. "
                        "`validation_error`, `overloaded`",
                    },
                    "message": {"type": "string", "description": "what went wrong and what to do"},
                    "details": {
                        "description": "per-field problems (`[{field, message}]`), ComfyUI's "
                        "`node_errors`, or other structured detail",
                        "nullable": True,
                    },
                },
            }
        },
    }


def _errors(codes: list[str], *, auth: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        out[code] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
        if code == "503":
            out[code]["headers"] = {
                "Retry-After": {
                    "schema": {"type": "integer"},
                    "description": "seconds to wait (a full queue)",
                }
            }
    if auth:
        out["401"] = {
            "description": "The API key is missing or wrong.",
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
    return out


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


def _task_id_param() -> dict[str, Any]:
    return {
        "name": "task_id",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": "the id `submit` returned",
    }


def _delivery_params(webhooks: bool, outputs: tuple[str, ...]) -> list[dict[str, Any]]:
    """The request headers that choose where results go (:mod:`comfypack.serve.delivery`)."""
    params: list[dict[str, Any]] = []
    if webhooks:
        params.append(
            {
                "name": "X-ComfyPack-Callback-Url",
                "in": "header",
                "required": False,
                "schema": {
                    "type": "string",
                    "format": "uri",
                    "pattern": "^https?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?([/?#][!-~]*)?$",
                    "maxLength": 2048,
                },
                "description": "POST a signed event here when the job ends (completed, failed or "
                "cancelled): headers `X-ComfyPack-Webhook-Id`, `-Timestamp`, "
                '`-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. '
                "Public addresses only, unless the operator allow-lists the host.",
            }
        )
    if "url" in outputs:
        if len(outputs) > 1:
            params.append(
                {
                    "name": "X-ComfyPack-Outputs",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "enum": list(outputs)},
                    "description": f"File outputs inline (`data:` URIs) or as signed URLs to the "
                    f"stored files (default `{outputs[0]}`).",
                }
            )
        params.append(
            {
                "name": "X-ComfyPack-Output-Prefix",
                "in": "header",
                "required": False,
                "schema": {
                    "type": "string",
                    "maxLength": 520,
                    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}/?$",
                },
                "description": "A key prefix of this request's own under the service's.",
            }
        )
    return params


def _task_routes(
    route: str,
    interface: Interface,
    body: dict[str, Any],
    auth: bool,
    params: list[dict[str, Any]] | None = None,
    outputs: tuple[str, ...] = ("inline",),
) -> dict[str, Any]:
    task_status = {"$ref": "#/components/schemas/TaskStatus"}
    not_found = {
        "description": "No such job (ids are kept per service, until it restarts).",
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    missing = {
        "description": "`task_id` is missing.",
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    not_finished = {
        "description": "The job has not finished yet (see status), or was cancelled.",
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    sub_errors = _errors(["400", "413", "415", "422"], auth=auth)
    return {
        f"{route}/submit": {
            "post": {
                "tags": ["jobs"],
                "operationId": "submit",
                "summary": "Run the workflow as a job",
                "description": "Takes exactly what the endpoint takes (validated now: a bad input is "
                "refused here, not when the job runs); answers a task id at once.",
                **({"parameters": params} if params else {}),
                "requestBody": body,
                "responses": {
                    "200": {
                        "description": "Submitted.",
                        "content": {"application/json": {"schema": task_status}},
                    },
                    **sub_errors,
                },
            }
        },
        f"{route}/status": {
            "get": {
                "tags": ["jobs"],
                "operationId": "status",
                "summary": "A job's state",
                "parameters": [_task_id_param()],
                "responses": {
                    "200": {
                        "description": "The state.",
                        "content": {"application/json": {"schema": task_status}},
                    },
                    "400": missing,
                    "404": not_found,
                    **_errors([], auth=auth),
                },
            }
        },
        f"{route}/get": {
            "get": {
                "tags": ["jobs"],
                "operationId": "result",
                "summary": "A finished job's answer",
                "description": "The answer the endpoint would have given (a failed job: its error).",
                "parameters": [_task_id_param()],
                "responses": {
                    "200": _result_response(interface, outputs),
                    "400": missing,
                    "404": not_found,
                    "409": not_finished,
                    **_errors(["413", "422", "500", "502", "503", "504"], auth=auth),
                },
            }
        },
        f"{route}/progress": {
            "get": {
                "tags": ["jobs"],
                "operationId": "progress",
                "summary": "A running job's progress",
                "parameters": [_task_id_param()],
                "responses": {
                    "200": {
                        "description": "From ComfyUI's websocket.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Progress"}
                            }
                        },
                    },
                    "400": missing,
                    "404": not_found,
                    **_errors([], auth=auth),
                },
            }
        },
        f"{route}/cancel": {
            method: {
                "tags": ["jobs"],
                "operationId": f"cancel_{method}",
                "summary": "Cancel a job",
                "description": "Dequeued, or interrupted in ComfyUI.",
                "parameters": [_task_id_param()],
                "responses": {
                    "200": {
                        "description": "Being cancelled.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["task_id", "status"],
                                    "properties": {
                                        "task_id": {"type": "string"},
                                        "status": {"type": "string", "enum": ["cancelling"]},
                                    },
                                }
                            }
                        },
                    },
                    "400": missing,
                    "404": not_found,
                    "409": {
                        "description": "The job has finished already.",
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    },
                    **_errors([], auth=auth),
                },
            }
            for method in ("put", "post")
        },
        f"{route}/retry": {
            "post": {
                "tags": ["jobs"],
                "operationId": "retry",
                "summary": "Run a finished job again",
                "parameters": [_task_id_param()],
                "responses": {
                    "200": {
                        "description": "Submitted again.",
                        "content": {"application/json": {"schema": task_status}},
                    },
                    "400": missing,
                    "404": not_found,
                    "409": not_finished,
                    **_errors([], auth=auth),
                },
            }
        },
    }


def _components(interface: Interface, bodies: dict[str, Any]) -> dict[str, Any]:
    return {
        **bodies,
        "GenerateOutput": output_schema(interface),
        "Error": _error_schema(),
        "TaskStatus": {
            "type": "object",
            "title": "TaskStatus",
            "required": ["task_id", "status"],
            "properties": {
                "task_id": {"type": "string"},
                "status": {"type": "string", "enum": TASK_STATUSES},
                "created_at": {"type": "string", "nullable": True},
                "executed_at": {"type": "string", "nullable": True},
                "completed_at": {"type": "string", "nullable": True},
            },
        },
        "Progress": {
            "type": "object",
            "title": "Progress",
            "required": ["task_id", "status", "nodes_done", "nodes_total", "progress"],
            "properties": {
                "task_id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["queued", "running", "completed", "failed", "cancelled"],
                },
                "node": {"type": "string", "nullable": True, "description": "the node running now"},
                "nodes_done": {"type": "integer"},
                "nodes_total": {"type": "integer"},
                "step": {"type": "integer", "nullable": True},
                "steps": {"type": "integer", "nullable": True},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "webhook": {
                    "type": "object",
                    "nullable": True,
                    "description": "the delivery of this job's callback, when it has one",
                    "properties": {
                        "url": {"type": "string"},
                        "event_id": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["pending", "delivering", "delivered", "failed"],
                        },
                        "attempts": {"type": "integer"},
                        "last_status": {"type": "integer", "nullable": True},
                        "last_error": {"type": "string", "nullable": True},
                        "delivered_at": {"type": "number", "nullable": True},
                    },
                },
            },
        },
        "Readiness": {
            "type": "object",
            "title": "Readiness",
            "required": ["ready", "reason"],
            "properties": {"ready": {"type": "boolean"}, "reason": {"type": "string"}},
        },
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


def openapi_document(
    interface: Interface,
    *,
    route: str = "/generate",
    title: str = "comfypack",
    version: str = "0",
    description: str = "",
    example: dict[str, Any] | None = None,
    api_key: bool = False,
    webhooks: bool = False,
    outputs: tuple[str, ...] = ("inline",),
    v2: bool = False,
) -> dict[str, Any]:
    """The whole OpenAPI 3.0 document of a service serving ``interface`` at ``route``
    (``webhooks``: callbacks are signed; ``outputs``: the answer forms for files; ``v2``: the
    Comfy API v2 routes at ``/api/v2``)."""
    body, bodies = _bodies(interface, _example(interface, example))
    params = _delivery_params(webhooks, outputs)
    generate: dict[str, Any] = {
        "tags": ["workflow"],
        "operationId": "generate",
        "summary": "Run the workflow",
        "description": description,
        **({"parameters": params} if params else {}),
        "requestBody": body,
        "responses": {
            "200": _result_response(interface, outputs),
            **_errors(["400", "413", "415", "422", "500", "502", "503", "504"], auth=api_key),
        },
    }
    plain: dict[str, Any] = {"security": []} if api_key else {}
    paths: dict[str, Any] = {
        route: {"post": generate},
        **_task_routes(route, interface, body, api_key, params, outputs),
        "/readyz": {
            "get": {
                "tags": ["service"],
                "operationId": "readyz",
                "summary": "Ready to serve?",
                **plain,
                "responses": {
                    code: {
                        "description": text,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Readiness"}
                            }
                        },
                    }
                    for code, text in (
                        ("200", "A worker answers, the warm-up ran, the models are there."),
                        ("503", "Not ready; `reason` says why."),
                    )
                },
            }
        },
        "/livez": {
            "get": {
                "tags": ["service"],
                "operationId": "livez",
                "summary": "Alive?",
                **plain,
                "responses": {"200": {"description": "The process answers."}},
            }
        },
        "/metrics": {
            "get": {
                "tags": ["service"],
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors([], auth=api_key),
                },
            }
        },
    }
    components: dict[str, Any] = {"schemas": _components(interface, bodies)}
    if v2:
        from .v2.openapi import V2_SCHEMAS, v2_paths

        paths.update(v2_paths(auth=api_key))
        components["schemas"].update(V2_SCHEMAS)
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": components,
        "tags": [
            {"name": "workflow", "description": "the typed endpoint"},
            {"name": "jobs", "description": "the same work, as jobs"},
            {"name": "service", "description": "health and metrics"},
            *(
                [{"name": "comfy-api-v2", "description": "the Comfy API v2 (comfy-sdk)"}]
                if v2
                else []
            ),
        ],
    }
    if api_key:
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <key>`",
            },
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    return doc
