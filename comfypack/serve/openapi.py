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

Its parts: :mod:`comfypack.serve.openapi_media` (the request bodies, the answers' media types,
sample files for the examples) and :mod:`comfypack.serve.openapi_paths` (the error answers, the
delivery headers, the async routes).
"""

from __future__ import annotations

from typing import Any

from ..workflow.interface import Interface
from ..workflow.schema import output_schema
from .openapi_media import _bodies, _example, _result_response
from .openapi_paths import _delivery_params, _errors, _task_routes

__all__ = ["openapi_document", "TASK_STATUSES"]

#: what ``GET <route>/status`` answers in ``status`` (BentoML's task states)
TASK_STATUSES = ["pending", "in_progress", "completed", "failed", "canceled"]


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
