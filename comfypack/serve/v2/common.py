"""What every Comfy API v2 module shares: the error envelope, id checks, times and links.

Errors (one class, the status carried on the instance)::

    V2Error(status, code, message, details)
      400 invalid_request · invalid_cursor · invalid_metadata_filter
      401 unauthorized (the service's AuthMiddleware, in comfypack's shape)
      404 not_found · blob_not_found
      409 hash_mismatch · job_not_finished
      413 payload_too_large
      422 invalid_workflow · workflow_format_ui · missing_asset · idempotency_key_reuse · metadata_invalid
      429 queue_full (+ Retry-After)
      503 unavailable (no ComfyUI worker up yet)
      507 insufficient_storage (the asset store is full of assets in use)

The body is the v2 envelope ``{"error": {"code", "message", "details"}}``; ``type`` repeats
``code`` so comfypack's own error shape (``{"error": {"type", "message", "details"}}``) holds too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["V2Error", "error_body", "check_uuid", "now", "iso", "origin", "MAX_TEXT"]

#: longest free text (a message, a file name) this API echoes or stores
MAX_TEXT = 1000
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class V2Error(Exception):
    """An answer other than success: HTTP ``status``, machine-readable ``code``, a sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message[:MAX_TEXT]
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "type": code, "message": message[:MAX_TEXT], "details": details}
    }


def check_uuid(value: str, what: str) -> str:
    """``value`` as a canonical UUID string, or 404 (an id we never minted names nothing)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise V2Error(
            404, "not_found", f"no {what} {value[:100]!r}: ids are UUIDs", {"field": "id"}
        ) from None
    if str(parsed) != value.lower():
        raise V2Error(
            404, "not_found", f"no {what} {value[:100]!r}: ids are canonical UUIDs", {"field": "id"}
        )
    return str(parsed)


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    return (
        None
        if moment is None
        else moment.astimezone(timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def origin(scope: Mapping[str, Any]) -> str:
    """``scheme://host`` the caller reached us on plus the mount prefix (``/api/v2``): the base of
    every link we hand out. A Host header that is not a plain host[:port] is not echoed."""
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1")
    if not _HOST.match(host):
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    scheme = scope.get("scheme") or "http"
    return f"{scheme}://{host}{scope.get('root_path') or ''}"
