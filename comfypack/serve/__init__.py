"""Serve a workflow: a BentoML service over a pool of headless ComfyUI workers.

The engine runs every request and the job table follows the async ones; the typed endpoint and
its ASGI edge answer HTTP; the OpenAPI document tells the truth about that surface; results go
out by webhooks and object storage; workspaces restore a served pack (in a Bento too); and the
Comfy API v2 is served beside the typed endpoint (:mod:`comfypack.serve.v2`).

- ``engine``: :class:`ServeConfig` and :class:`WorkflowEngine`, one workflow on the worker pool
  (no HTTP);
- ``jobs``: :class:`JobTable`, the async jobs' state, cancellation and finish listeners;
- ``service``: :func:`make_service`, the BentoML service and its :class:`GenerateEndpoint`;
- ``bento_service``: the object ``bentoml serve comfypack.serve.bento_service:ComfyPack`` loads;
- ``http``: the ASGI edge's shared helpers and small middlewares (auth, docs, jobs, readiness,
  error shape, ``/docs.json``);
- ``body``: the request body's middlewares (size limit, media type, submit check);
- ``multipart``: ``multipart/form-data`` for the endpoint (:func:`~.multipart.form_to_body`);
- ``openapi``: :func:`openapi_document`, the service's OpenAPI document;
- ``openapi_media``: its request bodies, answer media types and sample files;
- ``openapi_paths``: its error answers, delivery headers and async routes;
- ``webhooks``: signed completion callbacks and their delivery;
- ``storage``: file outputs uploaded to an S3-compatible bucket, answered as signed URLs;
- ``delivery``: where a request's results go besides its answer (storage, webhook);
- ``workspace``: a served pack's workspace, restored (models fetched and verified) or prepared;
- ``bento_runtime``: what runs inside a built Bento (image build, the Bento's settings);
- ``v2``: the Comfy API v2 (``/api/v2``) for the official ``comfy-sdk``.

The names below are imported on first use (``service`` imports BentoML), so importing one light
module of the stage does not import the others.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .bento_runtime import SETTINGS_FILE, apply_bento_settings
    from .delivery import DeliveryOptions, ResultDelivery
    from .engine import ServeConfig, WorkflowEngine, load_served, warmup_body
    from .jobs import FINAL_STATUSES, JobTable, progress_hook
    from .openapi import TASK_STATUSES, openapi_document
    from .openapi_media import sample_media
    from .service import BODY_FIELD, GenerateEndpoint, make_service
    from .storage import OutputStore, StorageSettings
    from .webhooks import WebhookSettings, verify_signature
    from .workspace import WEIGHTS_DIR, prepare_workspace, restore_workspace, seed_inputs

__all__ = [
    "BODY_FIELD",
    "DeliveryOptions",
    "FINAL_STATUSES",
    "GenerateEndpoint",
    "JobTable",
    "OutputStore",
    "ResultDelivery",
    "SETTINGS_FILE",
    "ServeConfig",
    "StorageSettings",
    "TASK_STATUSES",
    "WEIGHTS_DIR",
    "WebhookSettings",
    "WorkflowEngine",
    "apply_bento_settings",
    "load_served",
    "make_service",
    "openapi_document",
    "prepare_workspace",
    "progress_hook",
    "restore_workspace",
    "sample_media",
    "seed_inputs",
    "verify_signature",
    "warmup_body",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "SETTINGS_FILE": ".bento_runtime",
        "apply_bento_settings": ".bento_runtime",
        "DeliveryOptions": ".delivery",
        "ResultDelivery": ".delivery",
        "ServeConfig": ".engine",
        "WorkflowEngine": ".engine",
        "load_served": ".engine",
        "warmup_body": ".engine",
        "FINAL_STATUSES": ".jobs",
        "JobTable": ".jobs",
        "progress_hook": ".jobs",
        "TASK_STATUSES": ".openapi",
        "openapi_document": ".openapi",
        "sample_media": ".openapi_media",
        "BODY_FIELD": ".service",
        "GenerateEndpoint": ".service",
        "make_service": ".service",
        "OutputStore": ".storage",
        "StorageSettings": ".storage",
        "WebhookSettings": ".webhooks",
        "verify_signature": ".webhooks",
        "WEIGHTS_DIR": ".workspace",
        "prepare_workspace": ".workspace",
        "restore_workspace": ".workspace",
        "seed_inputs": ".workspace",
    },
)
