"""The Comfy API v2 routes, as a Starlette app the service mounts at ``/api/v2``.

::

    GET    /health                       {"status": "healthy", "ready", "reason", "policy"}
    POST   /jobs                         {"workflow", "extra_data"?, "metadata"?} → 201 job
    GET    /jobs                         ?limit=1..100&cursor=&status=&metadata[k]=v → {"jobs", "next_cursor"?}
    GET    /jobs/{id}                    the job (poll: authoritative)
    GET    /jobs/{id}/workflow           {"workflow", "format": "api"}
    POST   /jobs/{id}/cancel             the job (``canceling`` until ComfyUI stops)
    GET    /jobs/{id}/events             text/event-stream: status, progress, output, log
    POST   /assets                       multipart: file, file_path, content_type?, expected_hash?
    POST   /assets/from-hash             {"hash": "blake3:…"}
    POST   /assets/from-path             {"path"} under the service's import folder only
    HEAD   /assets/by-hash/{hash}        200 | 404
    GET    /assets/{id}                  the asset
    GET    /assets/{id}/content          its bytes (Range works)
    DELETE /assets/{id}                  204

Authentication is the service's own (``AuthMiddleware``: ``Authorization: Bearer <key>``). The
settings are :mod:`comfypack.serve.v2.settings`'s; what a request brings is checked by
:mod:`comfypack.serve.v2.checks`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .assets import AssetRecord, AssetStore, check_hash
from .checks import _BAD_CHARS, _META_KEY, _checked, _json_body, _metadata
from .common import V2Error, check_uuid, error_body, origin
from .jobs import TERMINAL, Engine, JobManager
from .settings import V2Settings

__all__ = ["create_app"]

logger = logging.getLogger("comfypack.serve.v2")

_STATUSES = ("queued", "running", "succeeded", "canceling", "canceled", "failed", "expired")
_HEARTBEAT = 15.0


def create_app(
    settings: V2Settings,
    engine: Callable[[], Engine | None],
    ready: Callable[[], tuple[bool, str]] = lambda: (True, ""),
) -> Starlette:
    """The v2 app; ``engine()`` is the service instance's pool (``None`` until it exists)."""
    lazy: dict[str, Any] = {}

    def state() -> tuple[AssetStore, JobManager]:
        """The store and the jobs, made on first use (no file I/O when the service is imported)."""
        if not lazy:
            store = AssetStore(
                settings.state_dir / "v2" / "assets",
                max_bytes=settings.max_store_bytes,
                max_asset_bytes=settings.max_asset_bytes,
                ttl=settings.asset_ttl,
                import_dir=settings.import_dir,
            )
            lazy.update(store=store, jobs=JobManager(store, retention=settings.asset_ttl))
        return lazy["store"], lazy["jobs"]

    idempotency: dict[str, str] = {}
    streams = [0]

    def the_engine() -> Engine:
        found = engine()
        if found is None:
            raise V2Error(
                503,
                "unavailable",
                "the service is starting; retry shortly",
                headers={"Retry-After": "5"},
            )
        return found

    async def health(request: Request) -> Response:
        ok, reason = ready()
        return JSONResponse(
            {
                "status": "healthy",
                "ready": ok,
                "reason": reason,
                "policy": "any_graph" if settings.any_graph else "served_workflow",
            }
        )

    async def submit(request: Request) -> Response:
        store, jobs = state()
        body = await _json_body(request, settings.max_json_bytes)
        for reserved in ("webhook_url", "inputs"):
            if body.get(reserved) is not None:
                raise V2Error(
                    422, "invalid_workflow", f"{reserved!r} is not accepted", {"field": reserved}
                )
        extra = body.get("extra_data")
        if extra is not None and (
            not isinstance(extra, dict)
            or set(extra) - {"api_key_comfy_org"}
            or not all(isinstance(v, str) for v in extra.values())
        ):
            raise V2Error(
                400,
                "invalid_request",
                "'extra_data' takes only the string 'api_key_comfy_org'",
                {"field": "extra_data"},
            )
        metadata = _metadata(body.get("metadata"))
        key = request.headers.get("idempotency-key")
        if key is not None and (
            not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable()
        ):
            raise V2Error(
                400,
                "invalid_request",
                "Idempotency-Key must be 1-255 printable ASCII characters",
                {"field": "Idempotency-Key"},
            )
        if key is not None and key in idempotency:
            raise V2Error(
                422,
                "idempotency_key_reuse",
                "this Idempotency-Key was used already (keys are "
                "single-use); get or list the job it made",
                {"job_id": idempotency[key]},
            )
        eng = the_engine()
        sub = await _checked(eng, body.get("workflow"), store, jobs if settings.any_graph else None)
        sub.metadata = metadata
        job = await jobs.submit(eng, sub)
        if key is not None:
            idempotency[key] = job.id
            while len(idempotency) > 10_000:
                idempotency.pop(next(iter(idempotency)))
        base = origin(request.scope)
        return JSONResponse(
            job.to_json(base, jobs.queue_position(job)),
            status_code=201,
            headers={"Location": f"{base}/jobs/{job.id}"},
        )

    async def list_jobs(request: Request) -> Response:
        store, jobs = state()
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise V2Error(
                400,
                "invalid_request",
                "'limit' must be an integer from 1 to 100",
                {"field": "limit"},
            )
        wanted = {s.strip() for s in q.get("status", "").split(",") if s.strip()}
        if wanted - set(_STATUSES):
            raise V2Error(
                400,
                "invalid_request",
                f"'status' takes {', '.join(_STATUSES)}",
                {"field": "status"},
            )
        filters = {
            k[9:-1]: v for k, v in q.multi_items() if k.startswith("metadata[") and k.endswith("]")
        }
        if len(filters) > 3 or any(
            not _META_KEY.match(k) or _BAD_CHARS.search(v) for k, v in filters.items()
        ):
            raise V2Error(
                400,
                "invalid_metadata_filter",
                "at most 3 metadata[key]=value filters, keys of "
                "A-Z a-z 0-9 _ - . (1-40), values without control characters",
                {"field": "metadata"},
            )
        ordered = list(reversed(jobs.jobs.values()))
        cursor = q.get("cursor")
        if cursor is not None:
            ids = [j.id for j in ordered]
            if cursor not in ids:
                raise V2Error(
                    400,
                    "invalid_cursor",
                    "this cursor is not one this service issued",
                    {"field": "cursor"},
                )
            ordered = ordered[ids.index(cursor) + 1 :]
        matching = [
            j
            for j in ordered
            if (not wanted or j.status in wanted)
            and all((j.metadata or {}).get(k) == v for k, v in filters.items())
        ]
        page = matching[:limit]
        base = origin(request.scope)
        out: dict[str, Any] = {"jobs": [j.to_json(base, jobs.queue_position(j)) for j in page]}
        if len(matching) > limit:
            out["next_cursor"] = page[-1].id
        return JSONResponse(out)

    async def get_job(request: Request) -> Response:
        store, jobs = state()
        job = jobs.get(check_uuid(request.path_params["id"], "job"))
        return JSONResponse(job.to_json(origin(request.scope), jobs.queue_position(job)))

    async def job_workflow(request: Request) -> Response:
        store, jobs = state()
        job = jobs.get(check_uuid(request.path_params["id"], "job"))
        return JSONResponse({"workflow": job.graph, "format": "api"})

    async def cancel(request: Request) -> Response:
        store, jobs = state()
        job = jobs.cancel(jobs.get(check_uuid(request.path_params["id"], "job")))
        await asyncio.sleep(0)  # a queued job's task sees its cancel now
        return JSONResponse(job.to_json(origin(request.scope), jobs.queue_position(job)))

    async def events(request: Request) -> Response:
        store, jobs = state()
        job = jobs.get(check_uuid(request.path_params["id"], "job"))
        if streams[0] >= settings.max_streams:
            raise V2Error(
                429,
                "too_many_streams",
                "too many event streams are open; poll GET /jobs/{id}",
                headers={"Retry-After": "5"},
            )
        base = origin(request.scope)
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=1000)
        job.subscribers.add(queue)
        streams[0] += 1

        async def frames() -> AsyncIterator[bytes]:
            try:
                if job.status in TERMINAL:
                    for output in job.outputs:
                        yield _frame("output", job.output_json(output, base))
                    yield _frame("status", {"status": job.status})
                    return
                yield _frame(
                    "status", {"status": job.status, "queue_position": jobs.queue_position(job)}
                )
                if job.progress is not None:
                    yield _frame("progress", job.progress)
                while True:
                    try:
                        event, data = await asyncio.wait_for(queue.get(), _HEARTBEAT)
                    except asyncio.TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    if event == "output":
                        data = job.output_json(job.outputs[data["index"]], base)
                    yield _frame(event, data)
                    if event == "status" and data["status"] in TERMINAL:
                        return
            finally:
                job.subscribers.discard(queue)
                streams[0] -= 1

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def upload(request: Request) -> Response:
        store, jobs = state()
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise V2Error(
                422,
                "invalid_request",
                "send multipart/form-data with a 'file' part",
                {"field": "file"},
            )
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > settings.max_asset_bytes + (1 << 20)
        ):
            raise V2Error(
                413,
                "payload_too_large",
                f"the upload is larger than the {settings.max_asset_bytes}-byte asset limit",
                {"field": "file"},
            )
        try:
            form = await request.form(max_files=1, max_fields=32, max_part_size=64 * 1024)
        except (HTTPException, ValueError, KeyError) as e:
            raise V2Error(
                422,
                "invalid_request",
                f"a malformed multipart body: {getattr(e, 'detail', e)}",
                {"field": "file"},
            ) from None
        try:
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise V2Error(
                    422, "invalid_request", "missing the 'file' part (a file)", {"field": "file"}
                )
            given = form.get(
                "expected_hash"
            )  # present means checked: empty or a file part is a 422
            expected = (
                None
                if given is None
                else check_hash(given if isinstance(given, str) else None, "expected_hash")
            )
            name = form.get("file_path")
            name = name if isinstance(name, str) and name else file.filename
            rec, new = await asyncio.to_thread(
                store.add_stream,
                file.file,
                file_path=name,
                content_type=_text(form.get("content_type")) or file.content_type,
                expected_hash=expected,
            )
        finally:
            await form.close()
        return _asset_response(request, rec, new)

    async def from_hash(request: Request) -> Response:
        store, jobs = state()
        body = await _json_body(request, 64 * 1024)
        rec = store.from_hash(check_hash(body.get("hash")))
        return _asset_response(request, rec, False)

    async def from_path(request: Request) -> Response:
        store, jobs = state()
        body = await _json_body(request, 64 * 1024)
        rec, new = await asyncio.to_thread(
            store.from_path,
            body.get("path"),
            file_path=body.get("file_path"),
            content_type=body.get("content_type"),
        )
        return _asset_response(request, rec, new)

    async def by_hash(request: Request) -> Response:
        store, jobs = state()
        try:
            digest = check_hash(request.path_params["hash"])
        except V2Error:
            return Response(status_code=404)
        return Response(status_code=200 if store.by_hash(digest) is not None else 404)

    async def get_asset(request: Request) -> Response:
        store, jobs = state()
        rec = store.get(check_uuid(request.path_params["id"], "asset"))
        return JSONResponse(rec.to_json(origin(request.scope)))

    async def content(request: Request) -> Response:
        store, jobs = state()
        rec = store.get(check_uuid(request.path_params["id"], "asset"))
        path = store.path(rec)
        if not path.is_file():
            raise V2Error(404, "output_unavailable", "the asset's bytes are gone from the store")
        return FileResponse(
            path,
            media_type=rec.content_type,
            filename=rec.file_path,
            content_disposition_type="inline",
        )

    async def delete(request: Request) -> Response:
        store, jobs = state()
        store.delete(check_uuid(request.path_params["id"], "asset"))
        return Response(status_code=204)

    def _asset_response(request: Request, rec: AssetRecord, new: bool) -> Response:
        return JSONResponse(
            rec.to_json(origin(request.scope), created_new=new), status_code=201 if new else 200
        )

    async def v2_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, V2Error)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    table: dict[str, dict[str, Callable[[Request], Any]]] = {
        "/health": {"GET": health},
        "/jobs": {"POST": submit, "GET": list_jobs},
        "/jobs/{id}": {"GET": get_job},
        "/jobs/{id}/workflow": {"GET": job_workflow},
        "/jobs/{id}/cancel": {"POST": cancel},
        "/jobs/{id}/events": {"GET": events},
        "/assets": {"POST": upload},
        "/assets/from-hash": {"POST": from_hash},
        "/assets/from-path": {"POST": from_path},
        "/assets/by-hash/{hash}": {"HEAD": by_hash},
        "/assets/{id}": {"GET": get_asset, "DELETE": delete},
        "/assets/{id}/content": {"GET": content},
    }
    routes = [Route(path, _Dispatch(methods)) for path, methods in table.items()]
    app = Starlette(
        routes=routes, exception_handlers={V2Error: v2_error, HTTPException: http_error}
    )
    app.state.v2 = state
    return app


class _Dispatch:
    """One ASGI endpoint per path: its methods, else 405 with exactly those in ``Allow`` (a plain
    function endpoint would be GET-only in Starlette)."""

    def __init__(self, methods: dict[str, Callable[[Request], Any]]) -> None:
        self.methods = methods
        self.allow = ", ".join(methods)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        handler = self.methods.get(request.method)
        if handler is None:
            raise V2Error(
                405,
                "method_not_allowed",
                f"{request.method[:20]} is not allowed here; use {self.allow}",
                headers={"Allow": self.allow},
            )
        response: Response = await handler(request)
        await response(scope, receive, send)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
