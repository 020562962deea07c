"""Build the BentoML service for one workflow.

``service/service.py`` calls :func:`make_service` with settings from the environment; the
service class it returns runs (or attaches to) a headless ComfyUI and exposes
``POST /<endpoint>`` typed by the workflow's :class:`~comfypack.workflow.Interface`.

Validation is ours, not pydantic's: the BentoML input model declares the exact JSON Schema
(so ``/docs.json`` shows types, defaults, bounds, enums and descriptions) but accepts any
body, and :meth:`WorkflowRunner.prepare` checks it with ``jsonschema`` so every error is
``{"error": {"type", "message", "details"}}`` naming the field.
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

from .errors import ComfyPackError, ComfyUIUnavailable
from .runner import WorkflowRunner
from .schema import input_schema, output_schema
from .workflow import Interface, load_workflow, parse_interface

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

    @classmethod
    def from_env(cls, default_workflow: Path | None = None) -> ServeConfig:
        from .config import default_comfyui_dir

        env = os.environ
        workflow = env.get("COMFYPACK_WORKFLOW") or (str(default_workflow) if default_workflow else "")
        if not workflow:
            raise ComfyPackError("set COMFYPACK_WORKFLOW to the API-format workflow to serve")
        url = env.get("COMFYPACK_COMFYUI_URL") or None
        return cls(
            workflow=Path(workflow),
            comfyui_dir=None if url else Path(env.get("COMFYPACK_COMFYUI_DIR") or default_comfyui_dir()),
            comfyui_url=url,
            python=env.get("COMFYPACK_PYTHON") or None,
            endpoint=env.get("COMFYPACK_ENDPOINT", "generate").strip("/") or "generate",
            name=env.get("COMFYPACK_SERVICE_NAME", "comfypack"),
            timeout=float(env.get("COMFYPACK_TIMEOUT", 600)),
            startup_timeout=float(env.get("COMFYPACK_STARTUP_TIMEOUT", 180)),
            max_upload_bytes=int(env.get("COMFYPACK_MAX_UPLOAD_BYTES", 100 * 1024 * 1024)),
        )


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


def _coerce_multipart(interface: Interface, body: Any) -> Any:
    """Multipart form values arrive JSON-decoded when they parse; string inputs want text."""
    if not isinstance(body, dict):
        return body
    for spec in interface.inputs:
        value = body.get(spec.name)
        if spec.kind in ("string", "choice") and value is not None and not isinstance(value, str):
            body[spec.name] = json.dumps(value)
    return body


class ErrorShapeMiddleware:
    """Give BentoML's own 4xx answers (e.g. a body that is not JSON) comfypack's error shape."""

    def __init__(self, app: Any, route: str) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != self.route:
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}

        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                held["start"] = message
                held["body"] = b""
                return
            if "start" in held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = _reshape_error(held["body"], held["start"]["status"])
                start = dict(held["start"])
                start["headers"] = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                start["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, wrapped)


def _reshape_error(raw: bytes, status: int) -> bytes:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"error": raw.decode("utf-8", "replace")}
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and "type" in err:
        return raw  # already ours
    details = data.get("detail") if isinstance(data, dict) else None
    message = str(err or "bad request")
    if isinstance(details, list) and details and isinstance(details[0], dict) and details[0].get("msg"):
        message = "; ".join(str(d.get("msg")) for d in details)
        details = [{"field": None, "message": str(d.get("msg"))} for d in details]
    kind = "invalid_body" if status == 400 else "bad_request"
    return json.dumps({"error": {"type": kind, "message": message, "details": details}}).encode()


def make_service(config: ServeConfig) -> type[Any]:
    """Return a ``@bentoml.service`` class serving ``config.workflow``."""
    from starlette.responses import JSONResponse, Response

    workflow = load_workflow(config.workflow)
    interface = parse_interface(workflow)
    InputModel = _schema_model("GenerateInput", input_schema(interface))
    OutputModel = _schema_model("GenerateOutput", output_schema(interface))
    route = "/" + config.endpoint
    doc = (f"Run the workflow `{config.workflow.name}`. Inputs: "
           + (", ".join(f"`{s.name}` ({s.kind})" for s in interface.inputs) or "none")
           + ". Outputs: " + (", ".join(f"`{o.name}` ({o.kind})" for o in interface.outputs) or "none")
           + ". Send JSON, or multipart/form-data to upload files. One file output comes back as the "
             "file itself; otherwise a JSON object with every named output (files as data: URIs).")

    def error_response(err: ComfyPackError, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(err.to_dict(), status_code=err.status, headers=headers)

    @bentoml.service(name=config.name, traffic={"timeout": config.timeout + 30}, workers=1)
    class ComfyPackService:
        def __init__(self) -> None:
            self.config = config
            self.interface = interface
            self.runner = WorkflowRunner(workflow, interface, max_upload_bytes=config.max_upload_bytes)
            self.process: Any = None
            self.client: Any = None
            self._ready = False
            self._startup: asyncio.Task[None] | None = None
            self._startup_error: BaseException | None = None
            if config.comfyui_url is None:
                from .comfyui.process import ComfyUIProcess

                self.process = ComfyUIProcess(config.comfyui_dir, python=config.python,
                                              startup_timeout=config.startup_timeout)
                self.process.start()

        @bentoml.on_startup
        async def _start(self) -> None:
            self._startup = asyncio.create_task(self._connect())

        async def _connect(self) -> None:
            from .comfyui.client import ComfyUIClient

            started = time.monotonic()
            try:
                if self.process is not None:
                    await asyncio.to_thread(self.process.wait_ready)
                    url = self.process.url
                    client = ComfyUIClient(url, output_dir=self.process.output_dir,
                                           input_dir=self.process.input_dir)
                else:
                    client = ComfyUIClient(config.comfyui_url)
                await client.connect()
                self.client = client
                self._ready = True
                logger.info("ComfyUI ready after %.1f s; serving POST %s", time.monotonic() - started, route)
            except BaseException as e:
                self._startup_error = e
                logger.error("ComfyUI failed to start: %s", e)
                raise

        async def _client(self) -> Any:
            if self._startup is not None and not self._startup.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._startup), config.startup_timeout)
            if self.client is None:
                raise ComfyUIUnavailable(
                    f"ComfyUI is not available: {self._startup_error or 'still starting'}")
            if self.process is not None and not self.process.is_running():
                raise ComfyUIUnavailable(
                    f"ComfyUI exited (code {self.process.returncode}); see the service log")
            return self.client

        async def __is_ready__(self) -> bool:
            if not self._ready or self.client is None:
                return False
            if self.process is not None and not self.process.is_running():
                return False
            return bool(self.client.connected)

        async def generate(self, ctx: bentoml.Context, comfypack_body: Any = None) -> Response:
            started = time.perf_counter()
            try:
                body = comfypack_body
                if ctx.request.headers.get("content-type", "").startswith("multipart/form-data"):
                    body = _coerce_multipart(self.interface, body)
                request = await self.runner.prepare(body if body is not None else {})
                client = await self._client()
                result = await self.runner.run(client, request, timeout=config.timeout)
            except ComfyPackError as e:
                if e.status >= 500:
                    logger.error("%s failed: %s", route, e.message)
                return error_response(e)
            headers = {"X-ComfyPack-Prompt-Id": result.prompt_id,
                       "X-ComfyPack-Duration-Ms": f"{(time.perf_counter() - started) * 1000:.1f}"}
            if result.seeds:
                headers["X-ComfyPack-Seeds"] = json.dumps(result.seeds)
            single = result.single_file()
            if single is not None:
                headers["Content-Disposition"] = f'inline; filename="{single.filename}"'
                return Response(single.data, media_type=single.media_type, headers=headers)
            return JSONResponse(result.to_json(), headers=headers)

        generate.__doc__ = doc
        generate = bentoml.api(route=route, input_spec=InputModel, output_spec=OutputModel)(generate)

        @bentoml.on_shutdown
        async def _stop(self) -> None:
            if self.client is not None:
                await self.client.close()
            if self.process is not None:
                await asyncio.to_thread(self.process.stop)

    ComfyPackService.add_asgi_middleware(ErrorShapeMiddleware, route=route)
    return ComfyPackService

