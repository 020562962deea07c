"""The paths of the service's OpenAPI document (:mod:`comfypack.serve.openapi`): every error answer
with the real error shape, the headers that choose where results go, and the async routes
(submit, status, get, progress, cancel, retry) with the status values BentoML really returns."""

from __future__ import annotations

from typing import Any

from ..workflow.interface import Interface
from .openapi_media import _result_response

__all__: list[str] = []

_ERROR_REF = {"$ref": "#/components/schemas/Error"}

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
