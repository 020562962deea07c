"""Completion callbacks: a signed JSON event POSTed to the caller's URL when a job ends.

A request (``POST /<endpoint>/submit``, or the synchronous ``POST /<endpoint>``) names its
callback in the ``X-ComfyPack-Callback-Url`` header. When the job has completed, failed or been
cancelled, the service POSTs an :func:`event` to that URL:

``Content-Type: application/json``, and

- ``X-ComfyPack-Webhook-Id``: the event's id (the same on every retry: receivers de-duplicate on it);
- ``X-ComfyPack-Webhook-Timestamp``: Unix seconds when this attempt was signed;
- ``X-ComfyPack-Webhook-Signature``: ``v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` under the
  service's secret (``COMFYPACK_WEBHOOK_SECRET``). :func:`verify_signature` is the receiver's
  check: it refuses a timestamp further than ``tolerance`` seconds from now (a replayed event).

Delivery is at least once: any answer but 2xx (a redirect is not followed), a refused or broken
connection, or a timeout is retried with exponential backoff (``backoff`` s doubling up to
``max_backoff``) until ``attempts`` tries or ``retry_for`` seconds have passed. The outcome is
kept in a :class:`Delivery` record that the job's progress shows (``webhook``).

A callback URL obeys the same address policy as URL inputs (:mod:`comfypack.files.urlfetch`): public
addresses only, unless ``COMFYPACK_URL_ALLOW`` lists the host; checked when the request comes in
(422 before anything runs) and again, with the connection pinned to the checked addresses, at
every attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ComfyPackError, FieldError, InputFetchError, RequestError
from ..files.urlfetch import Resolve, UrlPolicy, check_url, pinned_connector

__all__ = [
    "CALLBACK_HEADER",
    "ID_HEADER",
    "TIMESTAMP_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSettings",
    "Delivery",
    "event",
    "sign",
    "signed_headers",
    "verify_signature",
    "check_callback",
    "deliver",
]

logger = logging.getLogger(__name__)

CALLBACK_HEADER = "X-ComfyPack-Callback-Url"
ID_HEADER = "X-ComfyPack-Webhook-Id"
TIMESTAMP_HEADER = "X-ComfyPack-Webhook-Timestamp"
SIGNATURE_HEADER = "X-ComfyPack-Webhook-Signature"
_FIELD = "callback_url"  # what a refusal names (the header)


@dataclass(frozen=True)
class WebhookSettings:
    """How callbacks are signed and retried.

    ``secret``: the HMAC key (no secret: callbacks are refused, since an unsigned event proves
    nothing to its receiver); ``policy``: where callbacks may go; ``timeout``: seconds per attempt;
    ``attempts`` / ``retry_for``: the bounds on retries; ``backoff`` / ``max_backoff``: the first
    and the longest wait between attempts (seconds).
    """

    secret: str | None = field(default=None, repr=False)
    policy: UrlPolicy = field(default_factory=UrlPolicy)
    timeout: float = 10.0
    attempts: int = 8
    retry_for: float = 600.0
    backoff: float = 1.0
    max_backoff: float = 60.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, policy: UrlPolicy | None = None
    ) -> WebhookSettings:
        """``COMFYPACK_WEBHOOK_SECRET``, ``COMFYPACK_WEBHOOK_TIMEOUT`` (s per attempt, 10),
        ``COMFYPACK_WEBHOOK_ATTEMPTS`` (8), ``COMFYPACK_WEBHOOK_RETRY_FOR`` (s, 600),
        ``COMFYPACK_WEBHOOK_BACKOFF`` (first wait, s, 1), ``COMFYPACK_WEBHOOK_MAX_BACKOFF`` (s, 60);
        the address policy of URL inputs (``COMFYPACK_URL_ALLOW``)."""
        env = os.environ if env is None else env

        def num(name: str, default: float) -> float:
            text = env.get(name)
            try:
                value = float(text) if text else default
            except ValueError:
                raise ComfyPackError(f"{name}={text!r} is not a number") from None
            if value < 0:
                raise ComfyPackError(f"{name} must not be negative")
            return value

        return cls(
            secret=env.get("COMFYPACK_WEBHOOK_SECRET") or None,
            policy=policy or UrlPolicy.from_env(env),
            timeout=num("COMFYPACK_WEBHOOK_TIMEOUT", 10.0),
            attempts=max(1, int(num("COMFYPACK_WEBHOOK_ATTEMPTS", 8))),
            retry_for=num("COMFYPACK_WEBHOOK_RETRY_FOR", 600.0),
            backoff=num("COMFYPACK_WEBHOOK_BACKOFF", 1.0),
            max_backoff=num("COMFYPACK_WEBHOOK_MAX_BACKOFF", 60.0),
        )


@dataclass
class Delivery:
    """Where one event is going and how that went (what the job's progress shows)."""

    url: str
    event_id: str
    status: str = "pending"  # pending → delivering → delivered | failed
    attempts: int = 0
    last_status: int | None = None  # the receiver's last HTTP status
    last_error: str | None = None
    delivered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": _shown(self.url),
            "event_id": self.event_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at,
        }


def _shown(url: str) -> str:
    """The URL without credentials or query (a callback's query may carry a token)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))[:200]


def event(
    *,
    status: str,
    job_id: str | None,
    request_id: str | None,
    outputs: Any = None,
    error: Mapping[str, Any] | None = None,
    timings: Mapping[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The event body: ``{"id", "type": "job.<status>", "job_id", "request_id", "status",
    "outputs" | "error", "timings"}`` (``status``: completed, failed or cancelled)."""
    if status not in ("completed", "failed", "cancelled"):
        raise ValueError(f"not a final job status: {status!r}")
    body: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "type": f"job.{status}",
        "job_id": job_id,
        "request_id": request_id,
        "status": status,
        "timings": dict(timings or {}),
    }
    if status == "completed":
        body["outputs"] = outputs
    else:
        body["error"] = dict(error) if error is not None else None
    return body


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(
    secret: str, event_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "comfypack-webhook",
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """The receiver's check: the signature is ours for this exact body and timestamp, and the
    timestamp is within ``tolerance`` seconds of ``now`` (older ones are replays)."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, s.strip()) for s in signature.split(","))


async def check_callback(
    url: str | None, settings: WebhookSettings, *, resolve: Resolve | None = None
) -> str | None:
    """The callback URL of a request, checked (``None``: no callback). Refusals are 422
    :class:`RequestError`\\ s naming ``callback_url``."""
    if url is None:
        return None
    from yarl import URL

    url = url.strip()
    if settings.secret is None:
        raise RequestError.for_field(
            _FIELD,
            "this service signs no callbacks (the operator sets COMFYPACK_WEBHOOK_SECRET to "
            "enable them)",
            status=422,
        )
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise RequestError.for_field(_FIELD, "is not a valid URL") from None
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.raw_host
        or len(url) > 2048
        or not all(33 <= ord(c) < 127 for c in url)
    ):  # printable ASCII: a header value
        raise RequestError.for_field(
            _FIELD, "must be an absolute http(s) URL (at most 2048 characters)"
        )
    try:
        await check_url(parsed, _FIELD, settings.policy, resolve=resolve)
    except InputFetchError as e:
        raise RequestError(
            e.message.replace("URL inputs", "callback URLs"),
            status=422,
            details=[FieldError(_FIELD, e.message)],
        ) from None
    return url


def _wait(settings: WebhookSettings, attempt: int) -> float:
    return float(min(settings.max_backoff, settings.backoff * (2 ** (attempt - 1))))


async def deliver(
    body: Mapping[str, Any],
    record: Delivery,
    settings: WebhookSettings,
    *,
    resolve: Resolve | None = None,
    ssl: Any = True,
    on_attempt: Callable[[Delivery], None] | None = None,
) -> Delivery:
    """POST ``body`` to ``record.url`` until a 2xx answer, within the retry bounds; updates and
    returns ``record`` (``on_attempt(record)`` after each failed attempt). Never raises for the
    receiver's failures (they are the record's)."""
    import aiohttp
    from yarl import URL

    assert settings.secret is not None, "check_callback refuses callbacks without a secret"
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    url = URL(record.url)
    started = time.monotonic()
    record.status = "delivering"
    while True:
        record.attempts += 1
        try:
            addresses = await check_url(url, _FIELD, settings.policy, resolve=resolve)
            headers = signed_headers(settings.secret, record.event_id, payload)
            async with aiohttp.ClientSession(
                connector=pinned_connector(url, addresses, ssl=ssl),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
            ) as session:
                async with session.post(
                    url, data=payload, headers=headers, allow_redirects=False
                ) as resp:
                    record.last_status = resp.status
                    await resp.read()
            if 200 <= record.last_status < 300:
                record.status, record.last_error, record.delivered_at = (
                    "delivered",
                    None,
                    time.time(),
                )
                logger.info(
                    "webhook %s delivered to %s (attempt %d)",
                    record.event_id,
                    _shown(record.url),
                    record.attempts,
                )
                return record
            record.last_error = f"the receiver answered HTTP {record.last_status}"
        except InputFetchError as e:  # the host now resolves somewhere refused: no retry helps
            record.last_status, record.last_error, record.status = None, e.message, "failed"
            logger.warning("webhook %s refused: %s", record.event_id, e.message)
            return record
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            record.last_status = None
            record.last_error = f"{type(e).__name__}: the connection failed or timed out"
            logger.debug("webhook %s attempt %d: %r", record.event_id, record.attempts, e)
        wait = _wait(settings, record.attempts)
        if (
            record.attempts >= settings.attempts
            or time.monotonic() - started + wait > settings.retry_for
        ):
            record.status = "failed"
            logger.warning(
                "webhook %s to %s not delivered after %d attempt(s): %s",
                record.event_id,
                _shown(record.url),
                record.attempts,
                record.last_error,
            )
            return record
        logger.info(
            "webhook %s attempt %d failed (%s); retrying in %.1f s",
            record.event_id,
            record.attempts,
            record.last_error,
            wait,
        )
        if on_attempt is not None:
            on_attempt(record)
        await asyncio.sleep(wait)
