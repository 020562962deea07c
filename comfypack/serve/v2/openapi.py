"""The Comfy API v2 routes in the service's OpenAPI document (``/docs.json``).

:func:`v2_paths` gives the paths (under ``/api/v2``) and :data:`V2_SCHEMAS` the schemas they
``$ref``; ``comfypack.serve.openapi.openapi_document`` adds both. The shapes follow the v2 contract
(the ``comfy-sdk`` models): a job, an output, an asset and the error envelope.
"""

from __future__ import annotations

from typing import Any

__all__ = ["V2_SCHEMAS", "v2_paths"]

_ERR = {"$ref": "#/components/schemas/V2Error"}
_JOB = {"$ref": "#/components/schemas/V2Job"}
_ASSET = {"$ref": "#/components/schemas/V2Asset"}
_STATUSES = ["queued", "running", "succeeded", "canceling", "canceled", "failed", "expired"]
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": "string", "format": "date-time", "nullable": True}

V2_SCHEMAS: dict[str, Any] = {
    "V2Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "machine-readable: `invalid_workflow`, `missing_asset`, "
                        "`queue_full`, `not_found`, …",
                    },
                    "type": {
                        "type": "string",
                        "description": "the same as `code` (comfypack's error shape)",
                    },
                    "message": {
                        "type": "string",
                        "description": "what went wrong, naming the node or field",
                    },
                    "details": {
                        "type": "object",
                        "nullable": True,
                        "additionalProperties": True,
                        "description": "`node_id`, `field`, `fields[]` (node, widget, API field)",
                    },
                },
            }
        },
    },
    "V2Asset": {
        "type": "object",
        "required": ["id", "hash", "size_bytes", "content_type", "created_at", "url"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "hash": {"type": "string", "description": "`blake3:<64 hex>`", "nullable": True},
            "size_bytes": {"type": "integer"},
            "content_type": {"type": "string"},
            "file_path": {"type": "string", "nullable": True},
            "created_new": {"type": "boolean"},
            "created_at": _TIME,
            "url": {"type": "string", "format": "uri"},
            "url_expires_at": _TIME,
            "expires_at": _NTIME,
            "job_id": {"type": "string", "nullable": True},
        },
    },
    "V2Output": {
        "type": "object",
        "required": ["node_id", "name", "type", "content_type", "size_bytes", "id", "url"],
        "properties": {
            "node_id": {"type": "string"},
            "name": {"type": "string"},
            "type": {
                "type": "string",
                "enum": ["image", "video", "audio", "text", "file", "latent"],
            },
            "content_type": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "id": {"type": "string", "format": "uuid"},
            "hash": {"type": "string", "nullable": True},
            "url": {"type": "string", "format": "uri"},
            "url_expires_at": _TIME,
            "job_id": {"type": "string", "nullable": True},
        },
    },
    "V2Job": {
        "type": "object",
        "required": ["id", "status", "created_at", "expires_at", "outputs", "urls"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": _STATUSES},
            "created_at": _TIME,
            "started_at": _NTIME,
            "completed_at": _NTIME,
            "expires_at": _TIME,
            "queue_position": {"type": "integer", "nullable": True},
            "progress": {
                "type": "object",
                "nullable": True,
                "additionalProperties": True,
                "description": "`value` (0-1), `nodes_done`, `nodes_total`, `current_node`, "
                "`current_node_class`, `step`, `steps`, `message`",
            },
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Output"}},
            "error": {
                "type": "object",
                "nullable": True,
                "additionalProperties": True,
                "description": "`code`, `message`, `node_id`, `class_type`",
            },
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "seeds": {"type": "object", "additionalProperties": {"type": "integer"}},
            "urls": {
                "type": "object",
                "properties": {
                    "self": {"type": "string"},
                    "events": {"type": "string"},
                    "cancel": {"type": "string"},
                },
            },
        },
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(codes: dict[str, str], auth: bool) -> dict[str, Any]:
    out = {code: _json(_ERR, text) for code, text in codes.items()}
    if auth:
        out["401"] = _json(_ERR, "The API key is missing or wrong.")
    return out


def _op(
    op_id: str, summary: str, ok: dict[str, Any], errors: dict[str, str], auth: bool, **extra: Any
) -> dict[str, Any]:
    return {
        "tags": ["comfy-api-v2"],
        "operationId": op_id,
        "summary": summary,
        **extra,
        "responses": {**ok, **_errors(errors, auth)},
    }


def v2_paths(*, auth: bool) -> dict[str, Any]:
    """The ``/api/v2`` paths (``auth``: the service has an API key)."""
    job_id = [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    asset_id = [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    missing = {"404": "No such job (ids are UUIDs)."}
    no_asset = {"404": "No such asset (ids are UUIDs)."}
    hash_body = {
        "type": "object",
        "required": ["hash"],
        "properties": {
            "hash": {"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"},
            "file_path": {"type": "string"},
        },
    }
    path_body = {
        "type": "object",
        "required": ["path"],
        "properties": {
            "path": {
                "type": "string",
                "description": "a file in the service's import folder (COMFYPACK_V2_IMPORT_DIR)",
            },
            "file_path": {"type": "string"},
            "content_type": {"type": "string"},
        },
    }
    upload = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "file_path": {"type": "string"},
                    "content_type": {"type": "string"},
                    "expected_hash": {"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"},
                },
            }
        }
    }
    submit_body = {
        "type": "object",
        "required": ["workflow"],
        "properties": {
            "workflow": {
                "type": "object",
                "additionalProperties": True,
                "description": "an API-format graph; by default the served workflow with new values on "
                "comfypack's input nodes (files as core/ASSET references)",
            },
            "extra_data": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"api_key_comfy_org": {"type": "string"}},
            },
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    created = {
        "200": _json(_ASSET, "These bytes were stored already: that asset."),
        "201": _json(_ASSET, "Stored."),
    }
    return {
        "/api/v2/health": {
            "get": _op(
                "v2Health",
                "Comfy API v2: alive and ready?",
                {
                    "200": _json(
                        {"type": "object", "additionalProperties": True},
                        "`status`, `ready`, `reason`, `policy`.",
                    )
                },
                {},
                auth,
            )
        },
        "/api/v2/jobs": {
            "post": _op(
                "v2SubmitJob",
                "Run a graph as a job",
                {"201": _json(_JOB, "Queued.")},
                {
                    "400": "Not a JSON object, or a bad `extra_data` / `Idempotency-Key`.",
                    "413": "The body is too large.",
                    "422": "The graph is not allowed or not valid (`invalid_workflow` naming the node, "
                    "`missing_asset`, `idempotency_key_reuse`, `metadata_invalid`).",
                    "429": "The queue is full (`Retry-After`).",
                    "503": "No worker is up.",
                },
                auth,
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": submit_body}},
                },
            ),
            "get": _op(
                "v2ListJobs",
                "Jobs, newest first",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "jobs": {"type": "array", "items": _JOB},
                                "next_cursor": {"type": "string"},
                            },
                        },
                        "A page of jobs.",
                    )
                },
                {"400": "A bad `limit`, `status`, `cursor` or metadata filter."},
                auth,
                description="`cursor=<next_cursor>` gives the next page (a cursor this service did not issue "
                "is 400 `invalid_cursor`); `status` takes a comma-separated list; "
                "`metadata[<key>]=<value>` (at most 3) keeps jobs with those labels.",
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": _STATUSES},
                    },
                ],
            ),
        },
        "/api/v2/jobs/{id}": {
            "get": _op(
                "v2GetJob",
                "A job (authoritative state)",
                {"200": _json(_JOB, "The job.")},
                missing,
                auth,
                parameters=job_id,
            )
        },
        "/api/v2/jobs/{id}/workflow": {
            "get": _op(
                "v2GetJobWorkflow",
                "The graph a job ran",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "workflow": {"type": "object"},
                                "format": {"type": "string", "enum": ["api"]},
                            },
                        },
                        "The graph.",
                    )
                },
                missing,
                auth,
                parameters=job_id,
            )
        },
        "/api/v2/jobs/{id}/cancel": {
            "post": _op(
                "v2CancelJob",
                "Cancel a job",
                {
                    "200": _json(
                        _JOB, "The job (`canceling` until ComfyUI stops it, then `canceled`)."
                    )
                },
                missing,
                auth,
                parameters=job_id,
            )
        },
        "/api/v2/jobs/{id}/events": {
            "get": _op(
                "v2JobEvents",
                "Live events of a job",
                {
                    "200": {
                        "description": "Server-sent events: `status`, `progress`, `log`, `output`, then the final `status`.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                {**missing, "429": "Too many event streams are open."},
                auth,
                parameters=job_id,
            )
        },
        "/api/v2/assets": {
            "post": _op(
                "v2UploadAsset",
                "Upload a file (blake3-deduplicated)",
                created,
                {
                    "409": "`expected_hash` is not the hash of the bytes.",
                    "413": "The file is over the asset limit.",
                    "422": "Not multipart, or no `file` part.",
                    "507": "The asset store is full of assets in use.",
                },
                auth,
                requestBody={"required": True, "content": upload},
            )
        },
        "/api/v2/assets/from-hash": {
            "post": _op(
                "v2AssetFromHash",
                "An asset from bytes already stored",
                {"200": _json(_ASSET, "The asset.")},
                {
                    "400": "Not a JSON object.",
                    "404": "No stored bytes have this hash.",
                    "422": "Not a blake3 hash.",
                },
                auth,
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": hash_body}},
                },
            )
        },
        "/api/v2/assets/from-path": {
            "post": _op(
                "v2AssetFromPath",
                "An asset from the service's import folder",
                created,
                {
                    "400": "Not a JSON object.",
                    "404": "Not a regular file in the import folder (or from-path is off).",
                    "413": "The file is over the asset limit.",
                    "422": "A bad `path`.",
                },
                auth,
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": path_body}},
                },
            )
        },
        "/api/v2/assets/by-hash/{hash}": {
            "head": {
                "tags": ["comfy-api-v2"],
                "operationId": "v2HasHash",
                "summary": "Are these bytes stored?",
                "parameters": [
                    {"name": "hash", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "Yes."},
                    "404": {"description": "No."},
                    **(
                        {"401": {"description": "The API key is missing or wrong."}} if auth else {}
                    ),
                },
            }
        },
        "/api/v2/assets/{id}": {
            "get": _op(
                "v2GetAsset",
                "An asset",
                {"200": _json(_ASSET, "The asset.")},
                no_asset,
                auth,
                parameters=asset_id,
            ),
            "delete": _op(
                "v2DeleteAsset",
                "Delete an asset",
                {"204": {"description": "Deleted."}},
                no_asset,
                auth,
                parameters=asset_id,
            ),
        },
        "/api/v2/assets/{id}/content": {
            "get": _op(
                "v2AssetContent",
                "An asset's bytes (Range works)",
                {
                    "200": {
                        "description": "The bytes.",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "206": {"description": "The requested range."},
                },
                no_asset,
                auth,
                parameters=asset_id,
            )
        },
    }
