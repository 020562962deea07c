"""Build the BentoML service for one workflow.

``service/service.py`` calls :func:`make_service` with settings from the environment; the
service class it returns runs (or attaches to) a headless ComfyUI and exposes
``POST /<endpoint>`` typed by the workflow's :class:`~comfypack.workflow.Interface`.

Validation is ours, not pydantic's: the BentoML input model declares the exact JSON Schema
(so ``/docs.json`` shows types, defaults, bounds, enums and descriptions) but accepts any
body, and :meth:`WorkflowRunner.prepare` checks it with ``jsonschema`` so every error is
``{"error": {"type", "message", "details"}}`` naming the field.

Requests go to a :class:`~comfypack.pool.WorkerPool` of headless ComfyUIs behind a bounded queue
(full → 503 + ``Retry-After``). ``POST /<endpoint>/submit`` (BentoML's task API) runs a request
as a job with ``status`` / ``get``; comfypack adds ``progress`` and a real ``cancel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
from pydantic import ConfigDict, model_validator

from .errors import ComfyPackError, ComfyUIUnavailable, ExecutionFailed
from .http import (
    AuthMiddleware,
    BodyLimitMiddleware,
    BodyTypeMiddleware,
    DocsMiddleware,
    ErrorShapeMiddleware,
    JobsMiddleware,
    MultipartMiddleware,
    OpenAPIMiddleware,
    ReadyMiddleware,
    SubmitCheckMiddleware,
    form_to_body,
)
from .http import (
    request_id as checked_request_id,
)
from .media import InputLimits
from .runner import WorkflowRunner
from .schema import input_schema, output_schema, validate_request
from .workflow import load_workflow, parse_interface

__all__ = ["ServeConfig", "make_service", "BODY_FIELD"]

logger = logging.getLogger("comfypack.service")

BODY_FIELD = "comfypack_body"


@dataclass(frozen=True)
class ServeConfig:
    """Everything the service needs; :meth:`from_env` reads ``COMFYPACK_*`` variables."""

    workflow: Path
    comfyui_dir: Path | None = None
    comfyui_url: str | None = None
    python: str | None = None
    endpoint: str = "generate"
    name: str = "comfypack"
    timeout: float = 600.0
    startup_timeout: float = 180.0
    max_upload_bytes: int = 100 * 1024 * 1024
    workers: int | None = None  # default: one per GPU, one on CPU
    max_queue: int = 64
    pipeline: int = 2  # prompts each worker holds at once (the next one waits in ComfyUI's queue)
    api_key: str | None = None
    warmup: bool = False
    # a .cpack.zip to serve (its workflow; restored into `workspace` at start-up, which gives the
    # ComfyUI to run): what a Bento from `comfypack build` serves
    pack: Path | None = None
    workspace: Path | None = None  # default: $COMFYPACK_HOME/workspaces/<pack sha256[:16]>
    gpu: int | None = None  # GPUs the service asks BentoML for (resources.gpu)
    concurrency: int | None = None  # BentoML traffic.concurrency (a scaling hint)
    example: Any = None  # the OpenAPI request example (default: the inputs' defaults)
    limits: InputLimits | None = None  # URL policy and pixel limits of file inputs (see media.py)

    @classmethod
    def from_env(cls, default_workflow: Path | None = None) -> ServeConfig:
        from .config import default_comfyui_dir

        env = os.environ
        pack = env.get("COMFYPACK_PACK") or None
        workflow = pack or env.get("COMFYPACK_WORKFLOW") or (str(default_workflow) if default_workflow else "")
        if not workflow:
            raise ComfyPackError("set COMFYPACK_WORKFLOW to the API-format workflow to serve")
        url = env.get("COMFYPACK_COMFYUI_URL") or None
        return cls(
            workflow=Path(workflow),
            pack=Path(pack) if pack else None,
            workspace=Path(env["COMFYPACK_WORKSPACE"]) if env.get("COMFYPACK_WORKSPACE") else None,
            gpu=int(env["COMFYPACK_GPU"]) if env.get("COMFYPACK_GPU") else None,
            concurrency=int(env["COMFYPACK_CONCURRENCY"]) if env.get("COMFYPACK_CONCURRENCY") else None,
            example=_read_example(env.get("COMFYPACK_EXAMPLE")),
            comfyui_dir=None if url or pack else Path(env.get("COMFYPACK_COMFYUI_DIR") or default_comfyui_dir()),
            comfyui_url=url,
            python=env.get("COMFYPACK_PYTHON") or None,
            endpoint=env.get("COMFYPACK_ENDPOINT", "generate").strip("/") or "generate",
            name=env.get("COMFYPACK_SERVICE_NAME", "comfypack"),
            timeout=float(env.get("COMFYPACK_TIMEOUT", 600)),
            startup_timeout=float(env.get("COMFYPACK_STARTUP_TIMEOUT", 180)),
            max_upload_bytes=int(env.get("COMFYPACK_MAX_UPLOAD_BYTES", 100 * 1024 * 1024)),
            workers=int(env["COMFYPACK_WORKERS"]) if env.get("COMFYPACK_WORKERS") else None,
            max_queue=int(env.get("COMFYPACK_MAX_QUEUE", 64)),
            pipeline=int(env.get("COMFYPACK_PIPELINE", 2)),
            api_key=env.get("COMFYPACK_API_KEY") or None,
            warmup=env.get("COMFYPACK_WARMUP", "0").lower() in ("1", "true", "yes"),
            limits=InputLimits.from_env(env, max_bytes=int(env.get("COMFYPACK_MAX_UPLOAD_BYTES",
                                                                   100 * 1024 * 1024))),
        )


def _read_example(path: str | None) -> Any:
    """``COMFYPACK_EXAMPLE``: a JSON file with an example request body (for ``/docs.json``)."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ComfyPackError(f"COMFYPACK_EXAMPLE={path}: not a readable JSON file ({e})") from e


def _default_example(schema: dict[str, Any]) -> dict[str, Any]:
    """An example body from the inputs' defaults (file inputs, which have none, are left out)."""
    return {k: p["default"] for k, p in schema.get("properties", {}).items()
            if isinstance(p, dict) and p.get("default") is not None}


def _schema_model(name: str, schema: dict[str, Any]) -> type[Any]:
    """A BentoML IO model that shows ``schema`` in OpenAPI and hands the raw body through."""
    from _bentoml_sdk import IODescriptor

    class _Model(IODescriptor):  # type: ignore[misc,valid-type]
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
    """What ``GET /readyz`` asks: the service instance of this process, once it exists."""

    def __init__(self) -> None:
        self.service: Any = None

    def check(self) -> tuple[bool, str]:
        if self.service is None:
            return False, "starting"
        ready: tuple[bool, str] = self.service.readiness()
        return ready


class _Jobs:
    """Progress and cancellation of the requests in flight, keyed by BentoML task id."""

    def __init__(self, keep: int = 1000) -> None:
        self.state: dict[str, dict[str, Any]] = {}
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.keep = keep

    def start(self, task_id: str, total_nodes: int) -> dict[str, Any]:
        state = {"task_id": task_id, "status": "queued", "node": None, "nodes_done": 0,
                 "nodes_total": total_nodes, "step": None, "steps": None, "progress": 0.0}
        self.state[task_id] = state
        while len(self.state) > self.keep:
            self.state.pop(next(iter(self.state)))
        return state

    def progress(self, task_id: str) -> dict[str, Any] | None:
        return self.state.get(task_id)

    def cancel(self, task_id: str) -> bool:
        task = self.running.get(task_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True


def _warmup_body(interface: Any) -> dict[str, Any] | None:
    """A request that exercises the workflow with defaults and tiny synthetic media."""
    import base64
    import io

    body: dict[str, Any] = {}
    for spec in interface.inputs:
        if spec.kind == "image":
            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGB", (64, 64), (128, 128, 128)).save(buf, format="PNG")
            body[spec.name] = base64.b64encode(buf.getvalue()).decode()
        elif spec.kind == "file":
            body[spec.name] = base64.b64encode(b"warm-up").decode()
        elif spec.required:
            return None  # audio/video: no cheap synthetic sample; skip warm-up
    return body


def _setup_logging() -> None:
    """comfypack's own log lines (request lines, worker events) next to BentoML's, on stderr.
    Level: ``COMFYPACK_LOG_LEVEL`` (default INFO)."""
    import sys

    root = logging.getLogger("comfypack")
    if any(getattr(h, "_comfypack", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._comfypack = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] [%(name)s] %(message)s",
                                           "%Y-%m-%dT%H:%M:%S%z"))
    root.addHandler(handler)
    root.setLevel(os.environ.get("COMFYPACK_LOG_LEVEL", "INFO").upper())
    root.propagate = False


def make_service(config: ServeConfig) -> type[Any]:
    """Return a ``@bentoml.service`` class serving ``config.workflow``."""
    _setup_logging()
    from starlette.responses import JSONResponse, Response

    from .pool import Overloaded, WorkerPool

    if config.pack is not None:
        from .restore import read_pack

        workflow = read_pack(config.pack).workflow
    else:
        workflow = load_workflow(config.workflow)
    interface = parse_interface(workflow)
    request_schema = input_schema(interface)
    request_schema["example"] = config.example if config.example is not None else _default_example(request_schema)
    InputModel = _schema_model("GenerateInput", request_schema)
    OutputModel = _schema_model("GenerateOutput", output_schema(interface))
    route = "/" + config.endpoint
    label = config.workflow.parent.name if config.workflow.name == "workflow_api.json" else \
        config.workflow.name.removesuffix(".zip").removesuffix(".cpack").removesuffix(".json")
    doc = (f"Run the workflow `{label}`. Inputs: "
           + (", ".join(f"`{s.name}` ({s.kind})" for s in interface.inputs) or "none")
           + ". Outputs: " + (", ".join(f"`{o.name}` ({o.kind})" for o in interface.outputs) or "none")
           + ". Send JSON, or multipart/form-data to upload files. One file output comes back as the "
             "file itself; otherwise a JSON object with every named output (files as data: URIs). "
             f"`POST {route}/submit` runs it as a job: `GET {route}/status|progress|get?task_id=`, "
             f"`PUT {route}/cancel?task_id=`.")
    jobs = _Jobs()
    readiness = _Readiness()
    metrics = _Metrics(label)
    total_nodes = len(workflow)

    traffic: dict[str, Any] = {"timeout": config.timeout + 30}
    if config.concurrency:
        traffic["concurrency"] = config.concurrency
    extra: dict[str, Any] = {"resources": {"gpu": config.gpu}} if config.gpu else {}

    @bentoml.service(name=config.name, traffic=traffic, workers=1, **extra)
    class ComfyPackService:
        def __init__(self) -> None:
            self.interface = interface
            self.runner = WorkflowRunner(workflow, interface, max_upload_bytes=config.max_upload_bytes,
                                         limits=_request_limits(config))
            urls = [u.strip() for u in (config.comfyui_url or "").split(",") if u.strip()]
            self._startup: asyncio.Task[None] | None = None
            self._startup_error: BaseException | None = None
            self._stage = "starting ComfyUI"
            self._warming = config.warmup  # not ready until the warm-up ran
            self._models: tuple[dict[str, Any], Path] | None = None  # (workflow, ComfyUI dir) to check
            self._missing: ComfyPackError | None = None
            self._models_checked = False
            self.pool: WorkerPool | None = None
            try:
                # a pack without a ComfyUI URL: the pool comes once the pack is restored (start-up)
                if not (config.pack and not urls):
                    self.pool = self._new_pool(config.comfyui_dir, urls)
            except ComfyPackError as e:  # e.g. not a ComfyUI tree: not ready, say why (no crash loop)
                self._startup_error = e
                logger.error("cannot start: %s", e.message)
            readiness.service = self

        def _new_pool(self, comfyui_dir: Path | None, urls: list[str] | None = None) -> WorkerPool:
            return WorkerPool(comfyui_dir=comfyui_dir, urls=urls or None, n=config.workers,
                              python=config.python, max_queue=config.max_queue,
                              pipeline=config.pipeline,
                              startup_timeout=config.startup_timeout,
                              on_restart=lambda w: metrics.restarts.labels(workflow=label).inc(),
                              on_change=metrics.observe_pool)

        @bentoml.on_startup
        async def _start(self) -> None:
            if self._startup_error is None:
                self._startup = asyncio.create_task(self._bring_up())

        async def _bring_up(self) -> None:
            started = time.monotonic()
            try:
                workspace = None
                if self.pool is None and config.pack is not None:  # restore it, then run its ComfyUI
                    from .bento_runtime import restore_workspace, seed_inputs

                    self._stage = "restoring the pack (ComfyUI, custom nodes, models)"
                    workspace = await asyncio.to_thread(restore_workspace, config.pack, config.workspace)
                    self.pool = self._new_pool(workspace.comfyui_dir)
                assert self.pool is not None
                comfyui_dir = workspace.comfyui_dir if workspace is not None else config.comfyui_dir
                if comfyui_dir is not None and not self.pool.attached:
                    self._models = (workflow, comfyui_dir)
                    self._check_models()
                self._stage = "starting ComfyUI"
                await self.pool.start()
                if workspace is not None:
                    seed_inputs(workspace, self.pool)
            except BaseException as e:
                self._startup_error = e
                logger.error("ComfyUI failed to start: %s", getattr(e, "message", e))
                raise
            if self.pool.ready:
                logger.info("%d ComfyUI worker(s) up after %.1f s; serving POST %s",
                            len(self.pool.workers), time.monotonic() - started, route)
            try:
                if config.warmup and self._missing is None:
                    self._stage = "warming up"
                    await self._warmup()
            finally:
                self._warming = False

        def _check_models(self) -> ComfyPackError | None:
            """The workflow's missing model files (re-checked until they are all there)."""
            if self._models is not None and (self._missing is not None or not self._models_checked):
                from .lock import missing_models

                self._models_checked = True
                was = self._missing
                self._missing = missing_models(*self._models)
                if self._missing is not None and was is None:
                    logger.error("not ready: %s", self._missing.message)
                elif self._missing is None and was is not None:
                    logger.info("every model the workflow names is present now")
            return self._missing

        def readiness(self) -> tuple[bool, str]:
            """Whether requests can be served now, and if not, why (``/readyz`` says it)."""
            if self._startup_error is not None:
                return False, f"start-up failed: {getattr(self._startup_error, 'message', self._startup_error)}"
            if self.pool is None or (self._startup is not None and not self._startup.done()
                                     and not self.pool.ready):
                return False, self._stage
            missing = self._check_models()
            if missing is not None:
                return False, missing.message
            reason = self.pool.not_ready_reason()
            if reason is not None:
                return False, reason
            if self._warming:
                return False, "warming up: the first run of the workflow on each worker"
            return True, f"{sum(w.up for w in self.pool.workers)} of {len(self.pool.workers)} worker(s) up"

        async def _warmup(self) -> None:
            body = _warmup_body(self.interface)
            if body is None:
                logger.info("warm-up skipped: the workflow needs audio/video input")
                return
            assert self.pool is not None
            for _ in self.pool.workers:
                started = time.perf_counter()
                try:
                    request = await self.runner.prepare(body)
                    async with self.pool.acquire() as worker:
                        assert worker.client is not None
                        await self.runner.run(worker.client, request, timeout=config.timeout)
                    logger.info("warm-up run took %.0f ms", (time.perf_counter() - started) * 1000)
                except ComfyPackError as e:
                    logger.warning("warm-up run failed (serving anyway): %s", e.message)

        async def _wait_started(self) -> None:
            if self._startup is not None and not self._startup.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._startup), config.startup_timeout)
            missing = self._check_models()
            if missing is not None:
                raise missing  # 503 naming the files: not the caller's fault
            if self.pool is None or not self.pool.ready:
                ok, reason = self.readiness()
                raise ComfyUIUnavailable(f"no ComfyUI worker is up: {reason}")

        async def __is_ready__(self) -> bool:
            return self.readiness()[0]

        async def _execute(self, ctx: bentoml.Context, body: Any, job: dict[str, Any] | None) -> Any:
            deadline = time.monotonic() + config.timeout
            values = self.runner.validate(body)  # a JSON null is refused, not taken for {}
            await self._wait_started()
            assert self.pool is not None
            # URL inputs are fetched inside the request's place in the queue (a full queue refuses
            # before fetching), within its timeout, and are cancelled with it
            async with self.pool.admission() as place:
                request = await self.runner.decode(values)
                left = max(0.001, deadline - time.monotonic())
                async with self.pool.acquire(timeout=left, admitted=place) as worker:
                    assert worker.client is not None
                    if job is not None:
                        job["status"] = "running"
                    on_progress = _progress_hook(job) if job is not None else None
                    return await self.runner.run(worker.client, request, on_progress=on_progress,
                                                 timeout=max(0.001, deadline - time.monotonic()))

        async def generate(self, ctx: bentoml.Context, comfypack_body: Any = None) -> Response:
            started = time.perf_counter()
            request_id = checked_request_id(ctx.request.headers.get("x-request-id"))
            form = ctx.request.scope.get("comfypack.form")
            body = comfypack_body if form is None else form_to_body(self.interface, form)
            body = ctx.request.scope.get("comfypack.json", body)  # parsed by BodyTypeMiddleware
            task_id = getattr(ctx.request.state, "task_id", None)
            job = jobs.start(task_id, total_nodes) if task_id else None
            run = asyncio.ensure_future(self._execute(ctx, body, job))
            outcome = "ok"
            try:
                if task_id:
                    jobs.running[task_id] = run
                    result = await run
                else:
                    result = await _unless_disconnected(run, ctx.request.receive)
            except asyncio.CancelledError:
                outcome = "cancelled"
                if job is not None:
                    job["status"] = "cancelled"
                err = ComfyPackError("the request was cancelled; its prompt was removed from ComfyUI")
                # a job's stored answer: 409 (its state forbids a result); a synchronous caller
                # that went away: 499, for the log (nginx's "client closed request")
                err.status, err.type = (409 if job is not None else 499), "cancelled"
                return self._error(ctx, err, request_id)
            except ComfyPackError as e:
                outcome = e.type
                if isinstance(e, ExecutionFailed):
                    node_type = (e.details or {}).get("node_type") or "unknown"
                    metrics.node_failures.labels(workflow=label, node_type=str(node_type)).inc()
                if job is not None:
                    job["status"] = "failed"
                headers = {"Retry-After": str(e.retry_after)} if isinstance(e, Overloaded) else None
                return self._error(ctx, e, request_id, headers)
            finally:
                elapsed = time.perf_counter() - started
                metrics.latency.labels(workflow=label, outcome=outcome).observe(elapsed)
                if task_id:
                    jobs.running.pop(task_id, None)
                logger.info("request_id=%s route=%s task_id=%s outcome=%s duration_ms=%.1f",
                            request_id, route, task_id or "-", outcome, elapsed * 1000)
            if job is not None:
                job.update(status="completed", progress=1.0, nodes_done=total_nodes)
            headers = {"X-ComfyPack-Prompt-Id": result.prompt_id, "X-Request-ID": request_id,
                       "X-ComfyPack-Duration-Ms": f"{(time.perf_counter() - started) * 1000:.1f}"}
            if result.seeds:
                headers["X-ComfyPack-Seeds"] = json.dumps(result.seeds)
            single = result.single_file()
            if single is not None:
                headers["Content-Disposition"] = f'inline; filename="{single.filename}"'
                return Response(single.data, media_type=single.media_type, headers=headers)
            return JSONResponse(result.to_json(), headers=headers)

        def _error(self, ctx: bentoml.Context, err: ComfyPackError, request_id: str,
                   headers: dict[str, str] | None = None) -> Response:
            if err.status >= 500:
                logger.error("request_id=%s %s failed: %s", request_id, route, err.message)
            ctx.response.status_code = err.status  # BentoML applies the context's status
            return JSONResponse(err.to_dict(), status_code=err.status,
                                headers={**(headers or {}), "X-Request-ID": request_id})

        generate.__doc__ = doc
        generate = bentoml.task(route=route, input_spec=InputModel, output_spec=OutputModel)(generate)

        @bentoml.on_shutdown
        async def _stop(self) -> None:
            if self.pool is not None:
                await self.pool.close()

    def document() -> dict[str, Any]:
        from . import __version__
        from .lock import workflow_sha256
        from .openapi import openapi_document

        digest = workflow_sha256(workflow)
        inputs = "".join(f"\n- `{s.name}` ({s.kind}){': ' + s.description if s.description else ''}"
                         for s in interface.inputs)
        described = (f"{doc}\n\nWorkflow sha256 `{digest}`; served by comfypack {__version__}."
                     + (f"\n\nInputs:{inputs}" if inputs else ""))
        return openapi_document(interface, route=route, title=label, version=digest[:12],
                                description=described, example=request_schema.get("example"),
                                api_key=bool(config.api_key))

    # outermost first
    ComfyPackService.add_asgi_middleware(ReadyMiddleware, check=readiness.check)  # type: ignore[attr-defined]
    ComfyPackService.add_asgi_middleware(DocsMiddleware)  # type: ignore[attr-defined]
    if config.api_key:
        ComfyPackService.add_asgi_middleware(AuthMiddleware, api_key=config.api_key)  # type: ignore[attr-defined]
    # inside the key check: with a key, the document (the workflow's interface) needs it too
    ComfyPackService.add_asgi_middleware(OpenAPIMiddleware, document=document)  # type: ignore[attr-defined]
    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        BodyLimitMiddleware, max_bytes=config.max_upload_bytes)
    ComfyPackService.add_asgi_middleware(ErrorShapeMiddleware, route=route)  # type: ignore[attr-defined]
    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        JobsMiddleware, route=route, progress=jobs.progress, cancel=jobs.cancel)
    ComfyPackService.add_asgi_middleware(BodyTypeMiddleware, route=route)  # type: ignore[attr-defined]
    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        MultipartMiddleware, route=route, interface=interface)
    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        SubmitCheckMiddleware, route=route, validate=lambda body: validate_request(interface, body))
    return ComfyPackService


def _request_limits(config: ServeConfig) -> InputLimits:
    """The file-input limits, with no URL fetch allowed to outlast the request's timeout."""
    from dataclasses import replace

    limits = config.limits or InputLimits(max_bytes=config.max_upload_bytes)
    return replace(limits, url=replace(limits.url, timeout=min(limits.url.timeout, config.timeout)))


def _progress_hook(job: dict[str, Any]) -> Any:
    seen: set[str] = set()

    def on_progress(event: Any) -> None:
        if event.node is not None and event.value is None and event.node not in seen:
            seen.add(event.node)
            job["nodes_done"] = len(seen) - 1
            job["node"] = event.node
            job["step"] = job["steps"] = None
        elif event.value is not None:
            job["step"], job["steps"] = event.value, event.max
        total = max(1, job["nodes_total"])
        frac = job["nodes_done"] / total
        if job["step"] is not None and job["steps"]:
            frac += (job["step"] / job["steps"]) / total
        job["progress"] = round(min(frac, 0.99), 4)

    return on_progress


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
            made["queue"] = m.Gauge(name="comfypack_queue_depth", documentation="requests waiting for a worker",
                                    labelnames=["workflow"])
            made["busy"] = m.Gauge(name="comfypack_busy_workers", documentation="workers running a prompt",
                                   labelnames=["workflow"])
            made["latency"] = m.Histogram(
                name="comfypack_request_duration_seconds", documentation="end-to-end request latency",
                labelnames=["workflow", "outcome"],
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
            made["node_failures"] = m.Counter(name="comfypack_node_failures_total",
                                              documentation="nodes that raised while executing",
                                              labelnames=["workflow", "node_type"])
            made["restarts"] = m.Counter(name="comfypack_worker_restarts_total",
                                         documentation="ComfyUI workers restarted after a crash",
                                         labelnames=["workflow"])
        self.queue = made["queue"]
        self.busy = made["busy"]
        self.latency = made["latency"]
        self.node_failures = made["node_failures"]
        self.restarts = made["restarts"]
        self.workflow = workflow

    def observe_pool(self, pool: Any) -> None:
        self.queue.labels(workflow=self.workflow).set(pool.queue_depth)
        self.busy.labels(workflow=self.workflow).set(pool.busy_count)
