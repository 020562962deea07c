"""ASGI pieces of the service's HTTP edge (pure ASGI middlewares, cheap on the hot path): the
helpers they share, and the small ones.

- :class:`AuthMiddleware`: ``COMFYPACK_API_KEY`` → 401 without ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>`` on every route but ``/livez`` and ``/readyz``.
- :class:`JobsMiddleware`: ``GET <route>/progress`` and ``PUT|POST <route>/cancel`` for async jobs.
- :class:`DocsMiddleware`: ``/docs`` → BentoML's Swagger UI.
- :class:`ErrorShapeMiddleware`: BentoML's own error answers under the route get comfypack's shape.
- :class:`OpenAPIMiddleware`: ``/docs.json`` is comfypack's document (:mod:`comfypack.serve.openapi`).
- :class:`ReadyMiddleware`: ``/readyz`` with the reason.

The request body's middlewares (size limit, media type, submit check) are in
:mod:`comfypack.serve.body`; the multipart form's in :mod:`comfypack.serve.multipart`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import ComfyPackError, RequestError

__all__ = [
    "AuthMiddleware",
    "DocsMiddleware",
    "ErrorShapeMiddleware",
    "JobsMiddleware",
    "OpenAPIMiddleware",
    "ReadyMiddleware",
    "request_id",
    "send_error",
]

PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


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
