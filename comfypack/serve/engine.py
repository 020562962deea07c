"""One served workflow on a pool of headless ComfyUI workers, with no HTTP in it.

:class:`WorkflowEngine` is what every route of a service runs through — the typed endpoint
(``serving.py``) and any other API served beside it:

- :meth:`~WorkflowEngine.start` brings the workers up in the background (first restoring a pack
  into its workspace where the service serves one), checks that every model file the workflow
  names is present, and warms up if asked;
- :meth:`~WorkflowEngine.readiness` says whether requests can be served now, and if not, why;
- :meth:`~WorkflowEngine.execute` runs one request: validate the body against the Interface,
  take a place in the bounded queue (full → :class:`~comfypack.errors.Overloaded`), fetch and
  decode file inputs inside that place, take a worker, run the prompt, collect the outputs —
  all within the configured timeout, cancelled with the caller.

:class:`ServeConfig` holds every setting; :meth:`ServeConfig.from_env` reads the ``COMFYPACK_*``
variables (the service's edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..comfyui.runner import PreparedRequest, RunOutput, WorkflowRunner
from ..errors import ComfyPackError, ComfyUIUnavailable
from ..workflow.interface import Interface, load_workflow, parse_interface, workflow_name
from ..workflow.media import InputLimits
from .storage import StorageSettings
from .webhooks import WebhookSettings

__all__ = ["ServeConfig", "WorkflowEngine", "load_served", "warmup_body"]

logger = logging.getLogger("comfypack.service")

DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """Everything a service needs; :meth:`from_env` reads ``COMFYPACK_*`` variables."""

    workflow: Path
    comfyui_dir: Path | None = None
    comfyui_url: str | None = None
    python: str | None = None
    endpoint: str = "generate"
    name: str = "comfypack"
    timeout: float = 600.0
    startup_timeout: float = 180.0
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
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
    webhooks: WebhookSettings | None = None  # callbacks: secret, retries (see webhooks.py)
    storage: StorageSettings | None = None  # file outputs to a bucket (see storage.py)

    @classmethod
    def from_env(cls, default_workflow: Path | None = None) -> ServeConfig:
        """The settings in the environment. ``default_workflow`` is served when neither
        ``COMFYPACK_PACK`` nor ``COMFYPACK_WORKFLOW`` is set — if that file exists."""
        from ..config import default_comfyui_dir

        env = os.environ
        pack = env.get("COMFYPACK_PACK") or None
        fallback = (
            str(default_workflow)
            if default_workflow is not None and default_workflow.is_file()
            else ""
        )
        workflow = pack or env.get("COMFYPACK_WORKFLOW") or fallback
        if not workflow:
            raise ComfyPackError(
                "set COMFYPACK_WORKFLOW to the API-format workflow to serve "
                "(or COMFYPACK_PACK to a .cpack.zip)"
            )
        url = env.get("COMFYPACK_COMFYUI_URL") or None
        max_upload = int(env.get("COMFYPACK_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD))
        limits = InputLimits.from_env(env, max_bytes=max_upload)
        return cls(
            workflow=Path(workflow),
            pack=Path(pack) if pack else None,
            workspace=Path(env["COMFYPACK_WORKSPACE"]) if env.get("COMFYPACK_WORKSPACE") else None,
            gpu=int(env["COMFYPACK_GPU"]) if env.get("COMFYPACK_GPU") else None,
            concurrency=int(env["COMFYPACK_CONCURRENCY"])
            if env.get("COMFYPACK_CONCURRENCY")
            else None,
            example=_read_example(env.get("COMFYPACK_EXAMPLE")),
            comfyui_dir=None
            if url or pack
            else Path(env.get("COMFYPACK_COMFYUI_DIR") or default_comfyui_dir()),
            comfyui_url=url,
            python=env.get("COMFYPACK_PYTHON") or None,
            endpoint=env.get("COMFYPACK_ENDPOINT", "generate").strip("/") or "generate",
            name=env.get("COMFYPACK_SERVICE_NAME", "comfypack"),
            timeout=float(env.get("COMFYPACK_TIMEOUT", 600)),
            startup_timeout=float(env.get("COMFYPACK_STARTUP_TIMEOUT", 180)),
            max_upload_bytes=max_upload,
            workers=int(env["COMFYPACK_WORKERS"]) if env.get("COMFYPACK_WORKERS") else None,
            max_queue=int(env.get("COMFYPACK_MAX_QUEUE", 64)),
            pipeline=int(env.get("COMFYPACK_PIPELINE", 2)),
            api_key=env.get("COMFYPACK_API_KEY") or None,
            warmup=env.get("COMFYPACK_WARMUP", "0").lower() in ("1", "true", "yes"),
            limits=limits,
            webhooks=WebhookSettings.from_env(
                env, policy=limits.url
            ),  # callbacks: URL inputs' policy
            storage=StorageSettings.from_env(env),
        )

    @property
    def label(self) -> str:
        """The workflow's name for logs, metrics and the document title."""
        return workflow_name(self.workflow)

    def request_limits(self) -> InputLimits:
        """The file-input limits, with no URL fetch allowed to outlast a request's timeout."""
        limits = self.limits or InputLimits(max_bytes=self.max_upload_bytes)
        return replace(
            limits, url=replace(limits.url, timeout=min(limits.url.timeout, self.timeout))
        )


def _read_example(path: str | None) -> Any:
    """``COMFYPACK_EXAMPLE``: a JSON file with an example request body (for ``/docs.json``)."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ComfyPackError(f"COMFYPACK_EXAMPLE={path}: not a readable JSON file ({e})") from e


def load_served(config: ServeConfig) -> tuple[dict[str, Any], Interface]:
    """The workflow ``config`` serves (a pack's, or the file's) and its Interface."""
    if config.pack is not None:
        from ..pack.archive import read_pack

        workflow = read_pack(config.pack).workflow
    else:
        workflow = load_workflow(config.workflow)
    return workflow, parse_interface(workflow)


def warmup_body(interface: Interface) -> dict[str, Any] | None:
    """A request that exercises the workflow with defaults and tiny synthetic media; None when a
    required input is audio/video (no cheap synthetic sample)."""
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
            return None
    return body


class WorkflowEngine:
    """Runs ``workflow`` for every route of one service (see the module docstring).

    ``pool_factory(comfyui_dir, urls)`` makes the :class:`~comfypack.comfyui.pool.WorkerPool` (tests pass
    their own); ``on_restart`` / ``on_pool_change`` are the pool's hooks (metrics)."""

    def __init__(
        self,
        config: ServeConfig,
        workflow: dict[str, Any],
        interface: Interface,
        *,
        pool_factory: Callable[[Path | None, list[str] | None], Any] | None = None,
        on_restart: Callable[[Any], None] | None = None,
        on_pool_change: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.workflow = workflow
        self.interface = interface
        self.runner = WorkflowRunner(
            workflow,
            interface,
            max_upload_bytes=config.max_upload_bytes,
            limits=config.request_limits(),
        )
        self._pool_factory = pool_factory or self._default_pool
        self._on_restart = on_restart
        self._on_pool_change = on_pool_change
        self._startup: asyncio.Task[None] | None = None
        self._startup_error: BaseException | None = None
        self._stage = "starting ComfyUI"
        self._warming = config.warmup  # not ready until the warm-up ran
        self._models: tuple[dict[str, Any], Path] | None = None  # (workflow, ComfyUI dir) to check
        self._missing: ComfyPackError | None = None
        self._models_checked = False
        self.pool: Any = None
        urls = [u.strip() for u in (config.comfyui_url or "").split(",") if u.strip()]
        try:
            # a pack without a ComfyUI URL: the pool comes once the pack is restored (start-up)
            if not (config.pack and not urls):
                self.pool = self._pool_factory(config.comfyui_dir, urls or None)
        except ComfyPackError as e:  # e.g. not a ComfyUI tree: not ready, say why (no crash loop)
            self._startup_error = e
            logger.error("cannot start: %s", e.message)

    def _default_pool(self, comfyui_dir: Path | None, urls: list[str] | None) -> Any:
        from ..comfyui.pool import WorkerPool

        c = self.config
        return WorkerPool(
            comfyui_dir=comfyui_dir,
            urls=urls,
            n=c.workers,
            python=c.python,
            max_queue=c.max_queue,
            pipeline=c.pipeline,
            startup_timeout=c.startup_timeout,
            on_restart=self._on_restart,
            on_change=self._on_pool_change,
        )

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring the workers up in the background (``readiness`` follows it)."""
        if self._startup_error is None and self._startup is None:
            self._startup = asyncio.create_task(self._bring_up())

    async def stop(self) -> None:
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            with contextlib.suppress(BaseException):
                await self._startup
        if self.pool is not None:
            await self.pool.close()

    async def _bring_up(self) -> None:
        config = self.config
        started = time.monotonic()
        try:
            workspace = None
            if self.pool is None and config.pack is not None:  # restore it, then run its ComfyUI
                from ..config import allow_local_sources, model_endpoints
                from .workspace import restore_workspace

                self._stage = "restoring the pack (ComfyUI, custom nodes, models)"
                pack, ep = config.pack, model_endpoints()
                workspace = await asyncio.to_thread(
                    lambda: restore_workspace(
                        pack,
                        config.workspace,
                        hf_endpoint=ep["hf_endpoint"],
                        civitai_url=ep["civitai_url"],
                        allow_local_sources=allow_local_sources(),
                    )
                )
                self.pool = self._pool_factory(workspace.comfyui_dir, None)
            assert self.pool is not None
            comfyui_dir = workspace.comfyui_dir if workspace is not None else config.comfyui_dir
            if comfyui_dir is not None and not self.pool.attached:
                self._models = (self.workflow, comfyui_dir)
                self._check_models()
            self._stage = "starting ComfyUI"
            await self.pool.start()
            if workspace is not None:
                from .workspace import seed_inputs

                seed_inputs(
                    workspace,
                    [
                        w.process.input_dir
                        for w in self.pool.workers
                        if w.process is not None and w.process.workdir is not None
                    ],
                )
        except BaseException as e:
            self._startup_error = e
            logger.error("ComfyUI failed to start: %s", getattr(e, "message", e))
            raise
        if self.pool.ready:
            logger.info(
                "%d ComfyUI worker(s) up after %.1f s; serving POST /%s",
                len(self.pool.workers),
                time.monotonic() - started,
                config.endpoint,
            )
        try:
            if config.warmup and self._missing is None:
                self._stage = "warming up"
                await self._warmup()
        finally:
            self._warming = False

    async def _warmup(self) -> None:
        body = warmup_body(self.interface)
        if body is None:
            logger.info("warm-up skipped: the workflow needs audio/video input")
            return
        for _ in self.pool.workers:
            started = time.perf_counter()
            try:
                request = await self.runner.prepare(body)
                async with self.pool.acquire() as worker:
                    await self.runner.run(worker.client, request, timeout=self.config.timeout)
                logger.info("warm-up run took %.0f ms", (time.perf_counter() - started) * 1000)
            except ComfyPackError as e:
                logger.warning("warm-up run failed (serving anyway): %s", e.message)

    # -- readiness -------------------------------------------------------------------------------

    def _check_models(self) -> ComfyPackError | None:
        """The workflow's missing model files (re-checked until they are all there)."""
        if self._models is not None and (self._missing is not None or not self._models_checked):
            from ..lock.models import missing_models

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
            return (
                False,
                f"start-up failed: {getattr(self._startup_error, 'message', self._startup_error)}",
            )
        if self.pool is None or (
            self._startup is not None and not self._startup.done() and not self.pool.ready
        ):
            return False, self._stage
        missing = self._check_models()
        if missing is not None:
            return False, missing.message
        reason = self.pool.not_ready_reason()
        if reason is not None:
            return False, reason
        if self._warming:
            return False, "warming up: the first run of the workflow on each worker"
        return (
            True,
            f"{sum(w.up for w in self.pool.workers)} of {len(self.pool.workers)} worker(s) up",
        )

    async def wait_started(self) -> None:
        """Wait (up to the start-up timeout) for start-up; raise why no request can run now."""
        if self._startup is not None and not self._startup.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._startup), self.config.startup_timeout)
        missing = self._check_models()
        if missing is not None:
            raise missing  # 503 naming the files: not the caller's fault
        if self.pool is None or not self.pool.ready:
            raise ComfyUIUnavailable(f"no ComfyUI worker is up: {self.readiness()[1]}")

    # -- running ---------------------------------------------------------------------------------

    async def execute(
        self,
        body: Any,
        *,
        on_running: Callable[[], None] | None = None,
        on_progress: Callable[[Any], None] | None = None,
    ) -> RunOutput:
        """Run the workflow with ``body`` (the typed endpoint's JSON) and return its outputs.

        Raises :class:`~comfypack.errors.RequestError` (422, naming the field) before anything is
        queued; ``on_running()`` is called when a worker takes the request, ``on_progress(event)``
        with ComfyUI's progress events."""
        values = self.runner.validate(body)  # a JSON null is refused, not taken for {}

        async def run(client: Any, request: PreparedRequest, timeout: float) -> RunOutput:
            return await self.runner.run(client, request, on_progress=on_progress, timeout=timeout)

        result: RunOutput = await self.submit(
            lambda: self.runner.decode(values), run, on_running=on_running
        )
        return result

    async def submit(
        self,
        prepare: Callable[[], Awaitable[Any]],
        run: Callable[[Any, Any, float], Awaitable[Any]],
        *,
        on_running: Callable[[], None] | None = None,
    ) -> Any:
        """The queue discipline every route shares: wait for start-up, take a place in the queue
        (full → :class:`~comfypack.errors.Overloaded` at once), ``prepare()`` inside that place
        (URL inputs are fetched there, within the timeout, and cancelled with the request), take
        a worker, then ``run(client, prepared, seconds_left)`` — all within ``config.timeout``."""
        deadline = time.monotonic() + self.config.timeout
        await self.wait_started()
        async with self.pool.admission() as place:
            prepared = await prepare()
            left = max(0.001, deadline - time.monotonic())
            async with self.pool.acquire(timeout=left, admitted=place) as worker:
                if on_running is not None:
                    on_running()
                return await run(worker.client, prepared, max(0.001, deadline - time.monotonic()))
