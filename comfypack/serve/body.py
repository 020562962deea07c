"""The request body at the service's HTTP edge (pure ASGI middlewares).

- :class:`BodyLimitMiddleware`: request bodies over the limit → 413 (by ``Content-Length`` and
  while streaming).
- :class:`BodyTypeMiddleware`: the endpoint takes ``application/json`` or ``multipart/form-data``
  only (415 otherwise); a JSON body is parsed here, once, with bounded nesting.
- :class:`SubmitCheckMiddleware`: ``<route>/submit`` is validated before BentoML stores the job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import FieldError, RequestError
from .http import _replay, send_error

__all__ = ["BodyLimitMiddleware", "BodyTypeMiddleware", "SubmitCheckMiddleware"]

#: how deeply a JSON body may nest (a request body is an object of fields: a few levels suffice)
MAX_JSON_DEPTH = 32


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
