"""ASGI pieces of the service's HTTP edge (pure ASGI middlewares, cheap on the hot path).

- :class:`AuthMiddleware`: ``COMFYPACK_API_KEY`` → 401 without ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>`` on every route but ``/livez`` and ``/readyz``.
- :class:`BodyLimitMiddleware`: request bodies over the limit → 413 (by ``Content-Length`` and
  while streaming).
- :class:`BodyTypeMiddleware`: the endpoint takes ``application/json`` or ``multipart/form-data``
  only (415 otherwise); a JSON body is parsed here, once, with bounded nesting.
- :class:`MultipartMiddleware`: parses ``multipart/form-data`` for the endpoint itself.
- :class:`JobsMiddleware`: ``GET <route>/progress`` and ``PUT|POST <route>/cancel`` for async jobs.
- :class:`DocsMiddleware`: ``/docs`` → BentoML's Swagger UI.
- :class:`ErrorShapeMiddleware`: BentoML's own error answers under the route get comfypack's shape.
- :class:`SubmitCheckMiddleware`: ``<route>/submit`` is validated before BentoML stores the job.
- :class:`OpenAPIMiddleware`: ``/docs.json`` is comfypack's document (:mod:`comfypack.serve.openapi`).
- :class:`ReadyMiddleware`: ``/readyz`` with the reason.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import ComfyPackError, FieldError, RequestError
from ..workflow.interface import FILE_KINDS, Interface

__all__ = [
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "BodyTypeMiddleware",
    "DocsMiddleware",
    "ErrorShapeMiddleware",
    "JobsMiddleware",
    "MultipartMiddleware",
    "OpenAPIMiddleware",
    "ReadyMiddleware",
    "SubmitCheckMiddleware",
    "form_to_body",
    "request_id",
    "send_error",
]

PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: how deeply a JSON body may nest (a request body is an object of fields: a few levels suffice)
MAX_JSON_DEPTH = 32


def request_id(given: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is 1–128 of ``A-Z a-z 0-9 . _ : -`` (safe to log
    and echo), else a fresh one."""
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


async def send_error(
    err: ComfyPackError, scope: Any, receive: Any, send: Any, headers: dict[str, str] | None = None
) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse(err.to_dict(), status_code=err.status, headers=headers)(scope, receive, send)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that hands the app ``body`` (read or rewritten by a middleware) once,
    then whatever the client sends next (a disconnect)."""
    sent = False

    async def replayed() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def method_not_allowed(allowed: tuple[str, ...], scope: Any, receive: Any, send: Any) -> None:
    """405 with the ``Allow`` header, in comfypack's error shape."""
    err = RequestError(
        f"{scope.get('method')} is not allowed here; use {' or '.join(allowed)}", status=405
    )
    err.type = "method_not_allowed"
    await send_error(err, scope, receive, send, headers={"Allow": ", ".join(allowed)})


class AuthMiddleware:
    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given and hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        err = ComfyPackError(
            "missing or wrong API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
        err.status, err.type = 401, "unauthorized"
        await send_error(err, scope, receive, send, headers={"WWW-Authenticate": "Bearer"})


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``. HTTP/1.1 framing holds a body to its Content-Length, so
    a declared length is checked up front; a chunked body is read (counted) and replayed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> RequestError:
        return RequestError(
            f"the request body is larger than the {self.max_bytes}-byte limit",
            status=413,
            details=[FieldError(None, "request too large")],
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = self.max_bytes + 1
            if declared > self.max_bytes:
                await send_error(
                    self._too_large(), scope, receive, send, headers={"Connection": "close"}
                )
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await send_error(
                    self._too_large(), scope, receive, send, headers={"Connection": "close"}
                )
                return
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_TRUE = {"true"}
_FALSE = {"false"}  # a form says true or false, as the OpenAPI form schema documents


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
                number = json.loads(value)
            except ValueError:
                number = None
            # only a number is a number ("null", "[]", "true" stay text, for validation to name)
            ok = isinstance(number, int) if kind != "float" else isinstance(number, (int, float))
            body[key] = number if ok and not isinstance(number, bool) else value
        else:
            body[key] = value
    return body


def _json_depth_ok(raw: bytes | bytearray, limit: int) -> bool:
    """Whether ``raw`` nests ``[``/``{`` at most ``limit`` deep (strings skipped), in one pass
    without building anything."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json_body(raw: bytes | bytearray, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A request's JSON body, or :class:`RequestError` 400. Nesting is checked before parsing;
    ``NaN`` / ``Infinity`` parse as floats, for validation to refuse in the field's name."""
    if len(raw) < 64 and not raw.strip():
        return {}
    if (
        max_depth
        and raw.count(b"[") + raw.count(b"{") > max_depth
        and not _json_depth_ok(raw, max_depth)
    ):
        raise _invalid_body(
            f"the JSON body nests deeper than {max_depth} levels", "too deeply nested"
        )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        text = str(e)[:200]
        raise _invalid_body(f"the body is not valid JSON ({text})", text) from None


def _invalid_body(message: str, detail: str) -> RequestError:
    err = RequestError(message, status=400, details=[FieldError(None, detail)])
    err.type = "invalid_body"
    return err


class BodyTypeMiddleware:
    """``POST <route>`` and ``<route>/submit`` take ``application/json`` or
    ``multipart/form-data`` only (415 otherwise: no ``text/plain`` or form-urlencoded bodies, the
    ones a cross-site page can send without asking). A JSON body for ``<route>`` is parsed here
    (bounded nesting, one copy) and handed to the endpoint in ``scope``."""

    def __init__(self, app: Any, route: str) -> None:
        self.app = app
        self.route = route
        self.paths = {route, f"{route}/submit"}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in self.paths
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype == b"multipart/form-data":
            await self.app(scope, receive, send)
            return
        if ctype != b"application/json":
            shown = ctype.decode("latin-1")[:100] or "none"
            err = RequestError(
                f"send the body as application/json or multipart/form-data (Content-Type "
                f"was {shown})",
                status=415,
                details=[FieldError(None, "unsupported media type")],
            )
            err.type = "unsupported_media_type"
            await send_error(err, scope, receive, send)
            return
        if scope.get("path") != self.route:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            scope["comfypack.json"] = parse_json_body(body)
        except RequestError as e:
            await send_error(e, scope, receive, send)
            return
        del body
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope["headers"].append((b"content-length", b"2"))
        await self.app(scope, _replay(b"{}", receive), send)


class MultipartMiddleware:
    """Parse ``multipart/form-data`` on the endpoint ourselves (BentoML's parser would JSON-decode
    uploaded bytes); the form goes to the endpoint in ``scope``, BentoML sees an empty JSON body."""

    def __init__(self, app: Any, route: str, interface: Interface | None = None) -> None:
        self.app = app
        self.route = route
        self.interface = interface

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # <route>/submit takes the same form; it is handed on as the equivalent JSON body (files as
        # data: URIs), which BentoML stores with the job — so a job's input survives as it is, and
        # `retry` runs it again
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in (self.route, f"{self.route}/submit")
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        from ..workflow.media import Upload

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
            err = RequestError(
                f"cannot parse the multipart form: {e}",
                status=400,
                details=[FieldError(None, str(e))],
            )
            await JSONResponse(err.to_dict(), status_code=400)(scope, receive, send)
            return
        replay = b"{}"
        if scope.get("path") != self.route and self.interface is not None:
            replay = json.dumps(_form_as_json(form_to_body(self.interface, items))).encode()
        else:
            scope["comfypack.form"] = items
        del items
        scope["headers"] = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")
        ]
        scope["headers"] += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(replay)).encode()),
        ]
        await self.app(scope, _replay(replay, receive), send)


def _form_as_json(body: dict[str, Any]) -> dict[str, Any]:
    """A form body (:func:`form_to_body`) as JSON: uploads as ``data:`` URIs."""
    import base64
    import mimetypes

    from ..workflow.media import Upload

    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, Upload):
            media = mimetypes.guess_type(value.filename or "")[0] or "application/octet-stream"
            value = (
                f"data:{media};base64,{base64.b64encode(value.data).decode('ascii')}"
                if value.data
                else ""
            )
        out[key] = value
    return out


class SubmitCheckMiddleware:
    """``POST <route>/submit`` is validated like the endpoint *before* BentoML stores the job, so a
    bad input is the submitter's 422 (not a job that fails later). The body goes on unchanged."""

    def __init__(self, app: Any, route: str, validate: Callable[[Any], Any]) -> None:
        self.app = app
        self.path = f"{route}/submit"
        self.validate = validate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or scope.get("path") != self.path
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        del chunks
        try:
            self.validate(parse_json_body(raw))
        except RequestError as e:
            await send_error(e, scope, receive, send)
            return
        await self.app(scope, _replay(raw, receive), send)


class OpenAPIMiddleware:
    """``GET /docs.json``: comfypack's OpenAPI document (:mod:`comfypack.serve.openapi`), built on the
    first request and kept, instead of BentoML's generated one."""

    def __init__(self, app: Any, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document
        self._body: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("path") != "/docs.json"
            or scope.get("method") != "GET"
        ):
            await self.app(scope, receive, send)
            return
        from starlette.responses import Response

        if self._body is None:
            import asyncio

            self._body = json.dumps(await asyncio.to_thread(self.document)).encode()
        await Response(self._body, media_type="application/json")(scope, receive, send)


class JobsMiddleware:
    """Progress and cancel for async jobs (``<route>/submit`` comes from BentoML's task API)."""

    def __init__(
        self,
        app: Any,
        route: str,
        progress: Callable[[str], dict[str, Any] | None],
        cancel: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.paths = {f"{route}/progress": "progress", f"{route}/cancel": "cancel"}
        self.progress = progress
        self.cancel = cancel

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        action = self.paths.get(scope.get("path", "")) if scope.get("type") == "http" else None
        if action is None:
            await self.app(scope, receive, send)
            return
        from urllib.parse import parse_qs

        from starlette.responses import JSONResponse

        allowed = ("GET", "HEAD") if action == "progress" else ("PUT", "POST")
        if scope.get("method") not in allowed:
            await method_not_allowed(allowed, scope, receive, send)
            return
        task_id = (parse_qs(scope.get("query_string", b"").decode()).get("task_id") or [""])[0]
        if not task_id:
            await send_error(
                RequestError.for_field("task_id", "is required", status=400), scope, receive, send
            )
            return
        if action == "progress":
            state = self.progress(task_id)
            if state is None:
                err = RequestError.for_field(
                    "task_id", f"no running or recent job {task_id}", status=404
                )
                await send_error(err, scope, receive, send)
                return
            await JSONResponse(state)(scope, receive, send)
            return
        if not self.cancel(task_id):
            err = RequestError.for_field(
                "task_id", f"job {task_id} is not running (finished or unknown)", status=409
            )
            await send_error(err, scope, receive, send)
            return
        await JSONResponse({"task_id": task_id, "status": "cancelling"})(scope, receive, send)


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
        path = scope.get("path") or ""
        if scope.get("type") != "http" or not (
            path == self.route or path.startswith(self.route + "/")
        ):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        endpoint = path == self.route

        async def wrapped(message: Any) -> None:
            if (
                message["type"] == "http.response.start"
                and 400 <= message["status"] < 600
                and (endpoint or _is_json(message))
            ):
                held["start"] = message
                held["body"] = b""
                return
            if "start" in held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = _reshape_error(held["body"], held["start"]["status"], endpoint=endpoint)
                start = dict(held["start"])
                if start["status"] == 400 and b"is not completed yet" in held["body"]:
                    # BentoML's `get`/`retry` of a job still running: a conflict with its state
                    start["status"] = 409
                    body = json.dumps(
                        {
                            "error": {
                                "type": "not_finished",
                                "details": None,
                                "message": "the job has not finished yet; poll status until it is completed",
                            }
                        }
                    ).encode()
                start["headers"] = [
                    (k, v) for k, v in start["headers"] if k.lower() != b"content-length"
                ]
                start["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, wrapped)


def _is_json(start: Any) -> bool:
    headers = dict(start.get("headers") or [])
    return bool(headers.get(b"content-type", b"").startswith(b"application/json"))


def _reshape_error(raw: bytes, status: int, *, endpoint: bool = True) -> bytes:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"error": raw.decode("utf-8", "replace")}
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and "type" in err:
        return raw  # already ours
    details = data.get("detail") if isinstance(data, dict) else None
    message = str(err or "bad request")
    if (
        isinstance(details, list)
        and details
        and isinstance(details[0], dict)
        and details[0].get("msg")
    ):
        message = "; ".join(str(d.get("msg")) for d in details)
        details = [{"field": None, "message": str(d.get("msg"))} for d in details]
    kind = (
        "not_found"
        if status == 404
        else "invalid_body"
        if status == 400 and endpoint
        else "internal_error"
        if status >= 500
        else "bad_request"
    )
    return json.dumps({"error": {"type": kind, "message": message, "details": details}}).encode()


class ReadyMiddleware:
    """``GET /readyz``: 200 ``{"ready": true, "reason"}`` only when ``check()`` says the service
    can serve (a worker answers, the warm-up ran, the workflow's models are present); otherwise
    503 with the reason, so an operator (or a probe's log) sees what is missing."""

    def __init__(self, app: Any, check: Any) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/readyz":
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await method_not_allowed(("GET", "HEAD"), scope, receive, send)
            return
        from starlette.responses import JSONResponse

        try:
            ready, reason = self.check()
        except Exception as e:  # a readiness probe must answer, whatever broke
            logging.getLogger("comfypack.service").exception("readiness check failed")
            ready, reason = False, f"readiness check failed: {type(e).__name__}"
        await JSONResponse(
            {"ready": ready, "reason": reason},
            status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )(scope, receive, send)
