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

from .errors import ComfyPackError, ComfyUIUnavailable, FieldError, RequestError
from .runner import WorkflowRunner
from .schema import input_schema, output_schema
from .workflow import FILE_KINDS, Interface, load_workflow, parse_interface

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


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def form_to_body(interface: Interface, items: list[tuple[str, Any]]) -> dict[str, Any]:
    """A multipart form as a request body: text fields typed by the Interface, files as Uploads.

    Text that does not parse as the field's type is kept as text, so validation names the field.
    """
    kinds = {s.name: s.kind for s in interface.inputs}
    body: dict[str, Any] = {}
    for key, value in items:
        kind = kinds.get(key)
        if not isinstance(value, str) or kind in (None, "string", "choice") or kind in FILE_KINDS:
            body[key] = value
        elif kind == "boolean" and value.strip().lower() in _TRUE | _FALSE:
            body[key] = value.strip().lower() in _TRUE
        elif kind in ("int", "float", "seed"):
            try:
                body[key] = json.loads(value)
            except ValueError:
                body[key] = value
        else:
            body[key] = value
    return body


class MultipartMiddleware:
    """Parse ``multipart/form-data`` on the endpoint ourselves (BentoML's parser would JSON-decode
    uploaded bytes); the form goes to the endpoint in ``scope``, BentoML sees an empty JSON body."""

    def __init__(self, app: Any, route: str, max_bytes: int) -> None:
        self.app = app
        self.route = route
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != self.route or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        from .media import Upload

        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            length = 0
        if length > self.max_bytes:
            err = RequestError(f"the request is larger than {self.max_bytes} bytes", status=413,
                               details=[FieldError(None, "request too large")])
            await JSONResponse(err.to_dict(), status_code=413)(scope, receive, send)
            return
        try:
            form = await Request(scope, receive).form(max_files=64, max_fields=256)
            items: list[tuple[str, Any]] = []
            for key, value in form.multi_items():
                if isinstance(value, str):
                    items.append((key, value))
                else:
                    items.append((key, Upload(await value.read(), value.filename)))
            await form.close()
        except Exception as e:  # starlette raises several types for malformed forms
            err = RequestError(f"cannot parse the multipart form: {e}", status=400,
                               details=[FieldError(None, str(e))])
            await JSONResponse(err.to_dict(), status_code=400)(scope, receive, send)
            return
        scope["comfypack.form"] = items
        scope["headers"] = [(k, v) for k, v in scope["headers"]
                            if k not in (b"content-type", b"content-length")]
        scope["headers"] += [(b"content-type", b"application/json"), (b"content-length", b"2")]
        sent = False

        async def empty_json() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            return await receive()

        await self.app(scope, empty_json, send)


class DocsMiddleware:
    """``/docs`` → BentoML's Swagger UI (served at ``/``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path") in ("/docs", "/docs/"):
            from starlette.responses import RedirectResponse

            await RedirectResponse("/", status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)


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

                assert config.comfyui_dir is not None
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
                    assert config.comfyui_url is not None
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
                form = ctx.request.scope.get("comfypack.form")
                body = comfypack_body if form is None else form_to_body(self.interface, form)
                request = await self.runner.prepare(body if body is not None else {})
                client = await self._client()
                result = await self.runner.run(client, request, timeout=config.timeout)
            except ComfyPackError as e:
                if e.status >= 500:
                    logger.error("%s failed: %s", route, e.message)
                ctx.response.status_code = e.status  # BentoML applies the context's status
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

    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        DocsMiddleware)
    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        ErrorShapeMiddleware, route=route)
    ComfyPackService.add_asgi_middleware(  # type: ignore[attr-defined]
        MultipartMiddleware, route=route, max_bytes=config.max_upload_bytes)
    return ComfyPackService

