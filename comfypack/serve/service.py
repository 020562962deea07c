"""Build the BentoML service for one workflow.

``comfypack.serve.bento_service`` calls :func:`make_service` with :class:`ServeConfig` from the
environment; the service class it returns is thin: a :class:`~comfypack.serve.engine.WorkflowEngine`
runs (or attaches to) headless ComfyUI workers and every request, and :class:`GenerateEndpoint`
turns ``POST /<endpoint>`` into engine calls and HTTP answers, typed by the workflow's
:class:`~comfypack.workflow.interface.Interface`.

Validation is ours, not pydantic's: the BentoML input model declares the exact JSON Schema
(so ``/docs.json`` shows types, defaults, bounds, enums and descriptions) but accepts any
body, and :meth:`WorkflowRunner.validate` checks it with ``jsonschema`` so every error is
``{"error": {"type", "message", "details"}}`` naming the field.

Requests go to a :class:`~comfypack.comfyui.pool.WorkerPool` of headless ComfyUIs behind a bounded queue
(full → 503 + ``Retry-After``). ``POST /<endpoint>/submit`` (BentoML's task API) runs a request
as a job with ``status`` / ``get``; comfypack adds ``progress`` and a real ``cancel``
(:class:`~comfypack.serve.jobs.JobTable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any

import bentoml
from pydantic import ConfigDict, model_validator

from ..errors import Cancelled, ComfyPackError, ExecutionFailed, Overloaded, RequestError
from ..workflow.interface import Interface
from ..workflow.schema import input_schema, output_schema, validate_request
from .body import BodyLimitMiddleware, BodyTypeMiddleware, SubmitCheckMiddleware
from .delivery import DeliveryOptionsMiddleware, ResultDelivery
from .engine import ServeConfig, WorkflowEngine, load_served
from .http import (
    AuthMiddleware,
    DocsMiddleware,
    ErrorShapeMiddleware,
    JobsMiddleware,
    OpenAPIMiddleware,
    ReadyMiddleware,
)
from .http import (
    request_id as checked_request_id,
)
from .jobs import JobTable, progress_hook
from .multipart import MultipartMiddleware, form_to_body

__all__ = ["ServeConfig", "make_service", "GenerateEndpoint", "BODY_FIELD"]

logger = logging.getLogger("comfypack.service")

BODY_FIELD = "comfypack_body"


def _default_example(schema: dict[str, Any]) -> dict[str, Any]:
    """An example body from the inputs' defaults (file inputs, which have none, are left out)."""
    return {
        k: p["default"]
        for k, p in schema.get("properties", {}).items()
        if isinstance(p, dict) and p.get("default") is not None
    }


def _schema_model(name: str, schema: dict[str, Any]) -> type[Any]:
    """A BentoML IO model that shows ``schema`` in OpenAPI and hands the raw body through."""

    class _Model(bentoml.IODescriptor):  # type: ignore[misc,name-defined]
        model_config = ConfigDict(extra="allow")
        comfypack_body: Any = None

        @model_validator(mode="before")
        @classmethod
        def _collect(cls, data: Any) -> Any:
            return {BODY_FIELD: data}

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            return json.loads(json.dumps(schema))

    _Model.__name__ = _Model.__qualname__ = name
    return _Model


class _Readiness:
    """What ``GET /readyz`` asks: the engine of this process, once the service exists."""

    def __init__(self) -> None:
        self.engine: WorkflowEngine | None = None

    def check(self) -> tuple[bool, str]:
        if self.engine is None:
            return False, "starting"
        return self.engine.readiness()


def _setup_logging() -> None:
    """comfypack's own log lines (request lines, worker events) next to BentoML's, on stderr.
    Level: ``COMFYPACK_LOG_LEVEL`` (default INFO)."""
    import sys

    root = logging.getLogger("comfypack")
    if any(getattr(h, "_comfypack", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._comfypack = True  # type: ignore[attr-defined]
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(levelname)s] [%(name)s] %(message)s", "%Y-%m-%dT%H:%M:%S%z"
        )
    )
    root.addHandler(handler)
    root.setLevel(os.environ.get("COMFYPACK_LOG_LEVEL", "INFO").upper())
    root.propagate = False


def _describe(label: str, route: str, interface: Interface) -> str:
    return (
        f"Run the workflow `{label}`. Inputs: "
        + (", ".join(f"`{s.name}` ({s.kind})" for s in interface.inputs) or "none")
        + ". Outputs: "
        + (", ".join(f"`{o.name}` ({o.kind})" for o in interface.outputs) or "none")
        + ". Send JSON, or multipart/form-data to upload files. One file output comes back as the "
        "file itself; otherwise a JSON object with every named output (files as data: URIs). "
        f"`POST {route}/submit` runs it as a job: `GET {route}/status|progress|get?task_id=`, "
        f"`PUT {route}/cancel?task_id=`."
    )


class GenerateEndpoint:
    """``POST /<endpoint>`` and its jobs: request ids, the job's state, a caller that goes away,
    errors as JSON with their status, metrics and one log line per request. The work itself is
    :meth:`WorkflowEngine.execute`."""

    def __init__(
        self,
        engine: WorkflowEngine,
        jobs: JobTable,
        metrics: _Metrics,
        *,
        route: str,
        delivery: ResultDelivery | None = None,
    ) -> None:
        self.engine = engine
        self.delivery = delivery or ResultDelivery()  # object storage, webhooks (both optional)
        self.jobs = jobs
        self.metrics = metrics
        self.route = route
        self.total_nodes = len(engine.workflow)

    async def handle(self, request: Any, body: Any) -> Any:
        """Answer one request (``request``: the Starlette request; ``body``: the parsed JSON)."""
        from starlette.responses import JSONResponse, Response

        started = time.perf_counter()
        request_id = checked_request_id(request.headers.get("x-request-id"))
        form = request.scope.get("comfypack.form")
        if form is not None:
            body = form_to_body(self.engine.interface, form)
        body = request.scope.get("comfypack.json", body)  # parsed by BodyTypeMiddleware
        task_id = getattr(request.state, "task_id", None)
        try:
            options = self.delivery.options(request.headers)  # checked by DeliveryOptionsMiddleware
        except RequestError as e:
            return self._error(e, request_id)
        # a job: a submitted task, or a synchronous call with a callback (its outcome is then
        # followed under the request id)
        job = (
            self.jobs.start(task_id or request_id, self.total_nodes)
            if task_id or options.callback
            else None
        )
        if job is not None:
            self.delivery.expect(job, options, request_id=request_id, is_task=bool(task_id))
        on_running = on_progress = None
        if job is not None:
            on_running, on_progress = (
                (lambda: job.__setitem__("status", "running")),
                progress_hook(job),
            )
        run = asyncio.ensure_future(
            self.engine.execute(body, on_running=on_running, on_progress=on_progress)
        )
        outcome = "ok"
        try:
            if task_id:
                self.jobs.running[task_id] = run
                result = await run
            else:
                result = await _unless_disconnected(run, request.receive)
            await self.delivery.store_outputs(result, options, task_id or request_id)
        except asyncio.CancelledError:
            outcome = "cancelled"
            # a job's stored answer: 409 (its state forbids a result); a synchronous caller that
            # went away: 499, for the log
            err = Cancelled(disconnected=not task_id)
            if job is not None:
                self.jobs.finish(job, "cancelled", error=err)
            return self._error(err, request_id)
        except ComfyPackError as e:
            outcome = e.type
            if isinstance(e, ExecutionFailed):
                node_type = (e.details or {}).get("node_type") or "unknown"
                self.metrics.node_failures.labels(
                    workflow=self.metrics.workflow, node_type=str(node_type)
                ).inc()
            if job is not None:
                self.jobs.finish(job, "failed", error=e)
            headers = {"Retry-After": str(e.retry_after)} if isinstance(e, Overloaded) else None
            return self._error(e, request_id, headers)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.latency.labels(workflow=self.metrics.workflow, outcome=outcome).observe(
                elapsed
            )
            if task_id:
                self.jobs.running.pop(task_id, None)
            logger.info(
                "request_id=%s route=%s task_id=%s outcome=%s duration_ms=%.1f",
                request_id,
                self.route,
                task_id or "-",
                outcome,
                elapsed * 1000,
            )
        if job is not None:
            self.jobs.finish(job, "completed", result=result)
        headers = {
            "X-ComfyPack-Prompt-Id": result.prompt_id,
            "X-Request-ID": request_id,
            "X-ComfyPack-Duration-Ms": f"{(time.perf_counter() - started) * 1000:.1f}",
        }
        if result.seeds:
            headers["X-ComfyPack-Seeds"] = json.dumps(result.seeds)
        single = result.single_file()
        if single is not None:
            headers["Content-Disposition"] = f'inline; filename="{single.filename}"'
            return Response(single.data, media_type=single.media_type, headers=headers)
        return JSONResponse(result.to_json(), headers=headers)

    def _error(
        self, err: ComfyPackError, request_id: str, headers: dict[str, str] | None = None
    ) -> Any:
        from starlette.responses import JSONResponse

        if err.status >= 500:
            logger.error("request_id=%s %s failed: %s", request_id, self.route, err.message)
        return JSONResponse(
            err.to_dict(),
            status_code=err.status,
            headers={**(headers or {}), "X-Request-ID": request_id},
        )


def make_service(config: ServeConfig) -> type[Any]:
    """Return a ``@bentoml.service`` class serving ``config.workflow`` (or ``config.pack``)."""
    _setup_logging()
    workflow, interface = load_served(config)
    request_schema = input_schema(interface)
    request_schema["example"] = (
        config.example if config.example is not None else _default_example(request_schema)
    )
    InputModel = _schema_model("GenerateInput", request_schema)
    OutputModel = _schema_model("GenerateOutput", output_schema(interface))
    route = "/" + config.endpoint
    label = config.label
    doc = _describe(label, route, interface)
    jobs = JobTable()
    delivery = ResultDelivery(config.webhooks, config.storage)
    jobs.on_finish(delivery.on_finish)
    readiness = _Readiness()
    metrics = _Metrics(label)

    traffic: dict[str, Any] = {"timeout": config.timeout + 30}
    if config.concurrency:
        traffic["concurrency"] = config.concurrency
    extra: dict[str, Any] = {"resources": {"gpu": config.gpu}} if config.gpu else {}

    @bentoml.service(name=config.name, traffic=traffic, workers=1, **extra)
    class ComfyPackService:
        def __init__(self) -> None:
            self.engine = WorkflowEngine(
                config,
                workflow,
                interface,
                on_pool_change=metrics.observe_pool,
                on_restart=lambda w: metrics.restarts.labels(workflow=label).inc(),
            )
            self.jobs = jobs
            self.endpoint = GenerateEndpoint(
                self.engine, jobs, metrics, route=route, delivery=delivery
            )
            readiness.engine = self.engine

        @bentoml.on_startup
        async def _start(self) -> None:
            await self.engine.start()
            await delivery.start()

        @bentoml.on_shutdown
        async def _stop(self) -> None:
            await delivery.close()
            await self.engine.stop()

        async def __is_ready__(self) -> bool:
            return self.engine.readiness()[0]

        async def generate(self, ctx: bentoml.Context, comfypack_body: Any = None) -> Any:
            response = await self.endpoint.handle(ctx.request, comfypack_body)
            ctx.response.status_code = response.status_code  # BentoML applies the context's status
            return response

        generate.__doc__ = doc
        generate = bentoml.task(route=route, input_spec=InputModel, output_spec=OutputModel)(
            generate
        )

    def document() -> dict[str, Any]:
        from .._version import __version__
        from ..lock.create import workflow_sha256
        from .openapi import openapi_document

        digest = workflow_sha256(workflow)
        inputs = "".join(
            f"\n- `{s.name}` ({s.kind}){': ' + s.description if s.description else ''}"
            for s in interface.inputs
        )
        described = f"{doc}\n\nWorkflow sha256 `{digest}`; served by comfypack {__version__}." + (
            f"\n\nInputs:{inputs}" if inputs else ""
        )
        return openapi_document(
            interface,
            route=route,
            title=label,
            version=digest[:12],
            description=described,
            example=request_schema.get("example"),
            api_key=bool(config.api_key),
            webhooks=bool(config.webhooks and config.webhooks.secret),
            outputs=config.storage.modes if config.storage else ("inline",),
            v2=True,
        )

    _add_middlewares(
        ComfyPackService,
        config,
        route=route,
        interface=interface,
        jobs=jobs,
        readiness=readiness,
        document=document,
        delivery=delivery,
    )
    _mount_v2(ComfyPackService, config, readiness)
    return ComfyPackService


def _mount_v2(service: Any, config: ServeConfig, readiness: _Readiness) -> None:
    """The Comfy API v2 at ``/api/v2`` (comfypack.serve.v2): the same engine (workers, queue, timeout),
    behind the same middlewares (API key, body limit)."""
    from .v2 import create_app, settings_for

    app = create_app(settings_for(config), lambda: readiness.engine, ready=readiness.check)
    service.mount_asgi_app(app, path="/api/v2")


def _add_middlewares(
    service: Any,
    config: ServeConfig,
    *,
    route: str,
    interface: Interface,
    jobs: JobTable,
    readiness: _Readiness,
    document: Any,
    delivery: ResultDelivery | None = None,
) -> None:
    """The HTTP layers around the service, outermost first (see comfypack.serve.http, .body and
    .multipart)."""
    add = service.add_asgi_middleware
    add(ReadyMiddleware, check=readiness.check)
    add(DocsMiddleware)
    if config.api_key:
        add(AuthMiddleware, api_key=config.api_key)
    # inside the key check: with a key, the document (the workflow's interface) needs it too
    add(OpenAPIMiddleware, document=document)
    add(BodyLimitMiddleware, max_bytes=config.max_upload_bytes)
    add(ErrorShapeMiddleware, route=route)
    if delivery is not None:  # callback / answer-form headers: 422 before anything is queued
        add(DeliveryOptionsMiddleware, route=route, delivery=delivery)
    add(JobsMiddleware, route=route, progress=jobs.progress, cancel=jobs.cancel)
    add(BodyTypeMiddleware, route=route)
    add(MultipartMiddleware, route=route, interface=interface)
    add(SubmitCheckMiddleware, route=route, validate=lambda body: validate_request(interface, body))


async def _unless_disconnected(run: asyncio.Future[Any], receive: Any) -> Any:
    """Await ``run``; if the HTTP client disconnects first, cancel it (and so its prompt)."""

    async def disconnected() -> None:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return

    watch = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
        if run in done:
            return run.result()
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run
        raise asyncio.CancelledError
    finally:
        watch.cancel()


class _Metrics:
    """Prometheus metrics, exposed by BentoML at ``/metrics``."""

    _made: dict[str, Any] = {}

    def __init__(self, workflow: str) -> None:
        m = bentoml.metrics
        made = _Metrics._made
        if not made:
            made["queue"] = m.Gauge(
                name="comfypack_queue_depth",
                documentation="requests waiting for a worker",
                labelnames=["workflow"],
            )
            made["busy"] = m.Gauge(
                name="comfypack_busy_workers",
                documentation="workers running a prompt",
                labelnames=["workflow"],
            )
            made["latency"] = m.Histogram(
                name="comfypack_request_duration_seconds",
                documentation="end-to-end request latency",
                labelnames=["workflow", "outcome"],
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            )
            made["node_failures"] = m.Counter(
                name="comfypack_node_failures_total",
                documentation="nodes that raised while executing",
                labelnames=["workflow", "node_type"],
            )
            made["restarts"] = m.Counter(
                name="comfypack_worker_restarts_total",
                documentation="ComfyUI workers restarted after a crash",
                labelnames=["workflow"],
            )
        self.queue = made["queue"]
        self.busy = made["busy"]
        self.latency = made["latency"]
        self.node_failures = made["node_failures"]
        self.restarts = made["restarts"]
        self.workflow = workflow

    def observe_pool(self, pool: Any) -> None:
        self.queue.labels(workflow=self.workflow).set(pool.queue_depth)
        self.busy.labels(workflow=self.workflow).set(pool.busy_count)
