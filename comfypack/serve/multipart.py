"""``multipart/form-data`` at the service's HTTP edge: :class:`MultipartMiddleware` parses the form
for the endpoint itself, and :func:`form_to_body` types its text fields by the Interface."""

from __future__ import annotations

import json
from typing import Any

from ..errors import FieldError, RequestError
from ..workflow.interface import FILE_KINDS, Interface
from .http import _replay

__all__ = ["MultipartMiddleware", "form_to_body"]

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
