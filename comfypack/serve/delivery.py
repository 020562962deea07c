"""Where a request's results go besides its answer: object storage and a completion webhook.

The service's glue for :mod:`comfypack.serve.storage` and :mod:`comfypack.serve.webhooks`:

- :class:`DeliveryOptionsMiddleware` checks a request's delivery headers when it comes in
  (``POST /<endpoint>`` and ``/<endpoint>/submit``): a refused callback URL or an answer form the
  service does not offer is a 422 before anything is queued;
- :meth:`ResultDelivery.options` reads them again where the request runs (cheap: no I/O);
- :meth:`ResultDelivery.store` uploads a run's files when the request asked for URLs;
- :meth:`ResultDelivery.on_finish` is a :class:`~comfypack.serve.jobs.JobTable` listener: when a job with
  a callback ends (completed, failed, cancelled), it starts the signed delivery in the background
  and keeps its outcome in the job's state (``webhook``, shown by ``GET …/progress``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import ComfyPackError, RequestError
from .storage import (
    OUTPUTS_HEADER,
    PREFIX_HEADER,
    OutputStore,
    StorageSettings,
    choose_mode,
    job_prefix,
)
from .webhooks import CALLBACK_HEADER, Delivery, WebhookSettings, check_callback, deliver, event

__all__ = ["DeliveryOptions", "ResultDelivery", "DeliveryOptionsMiddleware"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryOptions:
    """What one request asked for: the answer form, its key prefix, its callback."""

    mode: str = "inline"
    prefix: str = ""
    callback: str | None = None


def _iso(t: float) -> str:
    return (
        datetime.fromtimestamp(t, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class ResultDelivery:
    """Object storage and webhooks for one service (both optional)."""

    def __init__(
        self,
        webhooks: WebhookSettings | None = None,
        storage: StorageSettings | None = None,
        *,
        store: OutputStore | None = None,
    ) -> None:
        self.webhooks = webhooks or WebhookSettings()
        self.storage = storage or StorageSettings()
        self._store = store
        self._pending: dict[str, dict[str, Any]] = {}  # job key → its callback's context
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def store(self) -> OutputStore:
        if self._store is None:
            self._store = OutputStore(self.storage)
        return self._store

    async def start(self) -> None:
        """Check the bucket once at start-up (a log line that says why, not a crash loop)."""
        if self.storage.enabled:
            try:
                await asyncio.to_thread(self.store.check)
                logger.info(
                    "file outputs go to s3://%s/%s (signed URLs valid %d s)",
                    self.storage.bucket,
                    self.storage.prefix,
                    self.storage.expires,
                )
            except ComfyPackError as e:
                logger.error("object storage: %s", e.message)

    async def close(self, grace: float = 5.0) -> None:
        """Give deliveries in flight ``grace`` seconds, then cancel them (at shutdown)."""
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in left:
                task.cancel()

    # -- a request's options ----------------------------------------------------------------------

    def options(self, headers: Mapping[str, str]) -> DeliveryOptions:
        """The delivery headers of a request (already checked by the middleware)."""
        return DeliveryOptions(
            mode=choose_mode(headers.get(OUTPUTS_HEADER), self.storage),
            prefix=job_prefix(headers.get(PREFIX_HEADER)),
            callback=None
            if headers.get(CALLBACK_HEADER) is None
            else str(headers.get(CALLBACK_HEADER)).strip(),
        )

    async def check(self, headers: Mapping[str, str]) -> DeliveryOptions:
        """:meth:`options`, with the callback URL checked against the address policy."""
        options = self.options(headers)
        await check_callback(options.callback, self.webhooks)
        return options

    # -- object storage ---------------------------------------------------------------------------

    async def store_outputs(self, result: Any, options: DeliveryOptions, key: str) -> None:
        """Upload ``result``'s files when ``options`` asks for URLs (``result.stored`` gets them)."""
        if options.mode == "url":
            result.stored = await self.store.store(result, key, options.prefix)

    # -- webhooks ---------------------------------------------------------------------------------

    def expect(
        self, job: dict[str, Any], options: DeliveryOptions, *, request_id: str, is_task: bool
    ) -> None:
        """Remember that ``job`` has a callback (called before it runs)."""
        if options.callback is None:
            return
        event_id = str(uuid.uuid4())
        self._pending[job["task_id"]] = {
            "url": options.callback,
            "request_id": request_id,
            "job_id": job["task_id"] if is_task else None,
            "received": time.time(),
            "event_id": event_id,
        }
        job["webhook"] = Delivery(options.callback, event_id).to_json()

    def on_finish(self, job: dict[str, Any], result: Any, error: BaseException | None) -> None:
        """JobTable listener: send the job's event to its callback, in the background."""
        ctx = self._pending.pop(job["task_id"], None)
        if ctx is None:
            return
        finished = time.time()
        err = None
        if error is not None:
            err = (
                error.to_dict()["error"]
                if isinstance(error, ComfyPackError)
                else {"type": "internal", "message": "the job failed", "details": None}
            )
        body = event(
            status=job["status"],
            job_id=ctx["job_id"],
            request_id=ctx["request_id"],
            outputs=result.to_json()
            if result is not None and job["status"] == "completed"
            else None,
            error=err,
            event_id=ctx["event_id"],
            timings={
                "received_at": _iso(ctx["received"]),
                "finished_at": _iso(finished),
                "duration_ms": round((finished - ctx["received"]) * 1000, 1),
            },
        )
        record = Delivery(ctx["url"], ctx["event_id"])

        async def send() -> None:
            def show(r: Delivery) -> None:
                job["webhook"] = r.to_json()

            await deliver(body, record, self.webhooks, on_attempt=show)
            show(record)

        task = asyncio.get_running_loop().create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class DeliveryOptionsMiddleware:
    """Refuse (422) a bad ``X-ComfyPack-Callback-Url`` / ``-Outputs`` / ``-Output-Prefix`` on the
    endpoint and its ``/submit`` before the body is read or anything is queued."""

    def __init__(self, app: Any, route: str, delivery: ResultDelivery) -> None:
        self.app = app
        self.paths = {route, f"{route}/submit"}
        self.delivery = delivery

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") == "http"
            and scope.get("method") == "POST"
            and scope.get("path") in self.paths
        ):
            from starlette.datastructures import Headers

            from .http import send_error

            try:
                await self.delivery.check(Headers(scope=scope))
            except RequestError as e:
                await send_error(e, scope, receive, send)
                return
        await self.app(scope, receive, send)
