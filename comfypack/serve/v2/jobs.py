"""v2 jobs: one run of a graph on the service's worker pool, its progress, events and outputs.

A job takes its place in the pool's queue when it is submitted (a full queue is ``429
queue_full`` with ``Retry-After`` at once, as ``/generate`` is 503), then runs in a task of its
own: ``queued`` → ``running`` (a worker took it) → ``succeeded`` | ``failed`` | ``canceled``; a
cancel of a running job reads ``canceling`` until ComfyUI's interrupt lands. Progress comes from
the worker's real ComfyUI websocket (the runner's ``on_progress``); every output is stored as a
v2 asset (``job_id`` set). Subscribers (the SSE stream) get ``status``, ``progress``, ``output``
and ``log`` events; ``output`` events come before the terminal ``status``.

The pool is reached through :class:`Engine`, a narrow protocol that the service's
:class:`~comfypack.serve.engine.WorkflowEngine` meets (its ``submit`` is the queue discipline
``/generate`` uses too), so this module knows nothing of BentoML.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ...atomic import atomic_file
from ...comfyui.client import ComfyUIClient, FileRef, ProgressEvent
from ...comfyui.runner import OutputFile, RunOutput, WorkflowRunner
from ...errors import ComfyPackError, ComfyUITimeout, ExecutionFailed, PromptRejected, RequestError
from ...workflow.interface import Interface
from .assets import AssetRecord, AssetStore
from .common import V2Error, iso, now

__all__ = ["Engine", "Job", "JobManager", "Submission", "TERMINAL"]

logger = logging.getLogger("comfypack.serve.v2")

TERMINAL = frozenset({"succeeded", "failed", "canceled", "expired"})
_UI_KINDS = {
    "images": "image",
    "gifs": "video",
    "video": "video",
    "audio": "audio",
    "files": "file",
}
_RUN_PREFIX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_")
_PROGRESS_EVERY = 0.2  # seconds between progress events (a node change is sent at once)


class Engine(Protocol):
    """What a v2 job needs of the service (:class:`~comfypack.serve.engine.WorkflowEngine` is one): its
    workflow, runner and pool, and the queue discipline every route shares."""

    interface: Interface
    workflow: dict[str, Any]
    runner: WorkflowRunner
    pool: Any

    async def wait_started(self) -> None: ...

    async def submit(
        self,
        prepare: Callable[[], Awaitable[Any]],
        run: Callable[[Any, Any, float], Awaitable[Any]],
        *,
        on_running: Callable[[], None] | None = None,
    ) -> Any: ...


@dataclass
class Job:
    id: str
    graph: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, str] | None = None
    status: str = "queued"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    progress: dict[str, Any] | None = None
    outputs: list[tuple[str, str, AssetRecord]] = field(
        default_factory=list
    )  # (node id, type, asset)
    error: dict[str, Any] | None = None
    seeds: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = field(default_factory=set)

    def set(self, status: str) -> None:
        self.status = status
        self.updated_at = now()

    def to_json(self, base: str, queue_position: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "expires_at": iso(self.expires_at),
            "create_time": iso(self.created_at),
            "update_time": iso(self.updated_at or self.created_at),
            "queue_position": queue_position if self.status == "queued" else None,
            "progress": self.progress,
            "outputs": [self.output_json(o, base) for o in self.outputs],
            "error": self.error,
            "metadata": self.metadata or {},
            "urls": {
                "self": f"{base}/jobs/{self.id}",
                "events": f"{base}/jobs/{self.id}/events",
                "cancel": f"{base}/jobs/{self.id}/cancel",
            },
        }
        if self.seeds:
            body["seeds"] = dict(self.seeds)
        return body

    def output_json(self, output: tuple[str, str, AssetRecord], base: str) -> dict[str, Any]:
        node_id, kind, rec = output
        return {
            "node_id": node_id,
            "name": rec.file_path,
            "type": kind,
            "content_type": rec.content_type,
            "size_bytes": rec.size_bytes,
            "id": rec.id,
            "hash": rec.hash,
            "url": f"{base}/assets/{rec.id}/content",
            "url_expires_at": rec.expires_at,
            "job_id": self.id,
        }


@dataclass
class Submission:
    """A checked job, ready to run: ``values`` (the served workflow) or ``graph`` (any graph)."""

    graph: dict[str, Any]
    values: dict[str, Any] | None
    assets: dict[tuple[str, str], AssetRecord]  # (node id, input) → the asset it names
    metadata: dict[str, str] | None = None


class JobManager:
    """The jobs of one service (in memory, the newest ``keep``)."""

    def __init__(self, store: AssetStore, *, keep: int = 1000, retention: float = 86400.0) -> None:
        self.store = store
        self.keep = keep
        self.retention = retention
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._types: frozenset[str] | None = None

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise V2Error(404, "not_found", f"no job {job_id}", {"field": "id"})
        return job

    def queue_position(self, job: Job) -> int | None:
        if job.status != "queued":
            return None
        return 1 + sum(
            1 for j in self.jobs.values() if j.status == "queued" and j.created_at < job.created_at
        )

    async def node_types(self, engine: Engine) -> Collection[str]:
        """The node types of the service's ComfyUI (``/object_info`` of a worker, read once)."""
        if self._types is None:
            await engine.wait_started()
            worker = next((w for w in engine.pool.workers if w.up and w.client is not None), None)
            if worker is None:
                raise V2Error(
                    503, "unavailable", "no ComfyUI worker is up", headers={"Retry-After": "5"}
                )
            self._types = frozenset(await worker.client.get_json("/object_info"))
        return self._types

    async def submit(self, engine: Engine, sub: Submission) -> Job:
        """Take a place in the service's queue now (429 when it is full, 503 when no worker can
        come up), then run in the background."""
        moment = now()
        job = Job(
            str(uuid.uuid4()),
            sub.graph,
            moment,
            moment + timedelta(seconds=self.retention),
            metadata=sub.metadata,
        )
        admitted = asyncio.Event()
        task = asyncio.create_task(self._run(engine, job, sub, admitted))
        waiter = asyncio.create_task(admitted.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if not admitted.is_set():  # refused before it had a place: no job
            try:
                task.result()
            except ComfyPackError as e:
                retry = getattr(e, "retry_after", None)
                if retry is not None:
                    raise V2Error(
                        429,
                        "queue_full",
                        e.message,
                        {"retry_after": retry},
                        headers={"Retry-After": str(retry)},
                    ) from e
                raise V2Error(503, "unavailable", e.message, headers={"Retry-After": "5"}) from e
            raise V2Error(503, "unavailable", "the job could not take a place in the queue")
        job.task = task
        self.jobs[job.id] = job
        self._trim()
        return job

    def _trim(self) -> None:
        for job_id in [j for j, job in self.jobs.items() if job.status in TERMINAL][
            : max(0, len(self.jobs) - self.keep)
        ]:
            self.jobs.pop(job_id, None)

    def cancel(self, job: Job) -> Job:
        if job.status in TERMINAL or job.task is None:
            return job
        if job.status == "running":
            job.set("canceling")
            self._publish(job, "status", {"status": "canceling"})
        job.task.cancel()
        return job

    # -- running -------------------------------------------------------------------------------

    async def _run(
        self, engine: Engine, job: Job, sub: Submission, admitted: asyncio.Event
    ) -> None:
        async def prepare() -> Any:
            admitted.set()  # inside the queue place: the job exists from here on
            return None if sub.values is None else await engine.runner.decode(sub.values)

        async def run(client: ComfyUIClient, request: Any, left: float) -> Any:
            self._started(job)
            if request is None:
                await self._run_graph(client, job, sub, left)
                return None
            return await engine.runner.run(
                client, request, timeout=left, on_progress=self._on_progress(job)
            )

        try:
            with self.store.pin([rec.id for rec in sub.assets.values()]):
                result = await engine.submit(prepare, run)
                if result is not None:
                    await self._store_outputs(engine, job, result)
            job.progress = {
                **(job.progress or _progress_start(len(job.graph))),
                "value": 1.0,
                "nodes_done": len(job.graph),
                "message": "done",
            }
            self._finish(job, "succeeded")
        except asyncio.CancelledError:
            if not admitted.is_set():
                raise
            self._finish(job, "canceled")
        except V2Error as e:
            self._finish(
                job,
                "failed",
                {
                    "code": e.code,
                    "message": e.message,
                    "node_id": None,
                    "class_type": None,
                    "traceback": None,
                },
            )
        except ComfyPackError as e:
            if not admitted.is_set():
                raise  # refused (queue full, no worker): the submit answers it
            self._finish(job, "failed", _job_error(e, job.graph))
        except Exception as e:  # noqa: BLE001 - a job records every failure; the log has the trace
            logger.exception("v2 job %s failed", job.id)
            self._finish(
                job,
                "failed",
                {
                    "code": "internal_error",
                    "message": f"{type(e).__name__}: {e}"[:1000],
                    "node_id": None,
                    "class_type": None,
                    "traceback": None,
                },
            )

    def _started(self, job: Job) -> None:
        job.started_at = now()
        job.set("running")
        job.progress = _progress_start(len(job.graph))
        self._publish(job, "status", {"status": "running"})
        self._publish(job, "progress", job.progress)

    async def _store_outputs(self, engine: Engine, job: Job, result: RunOutput) -> None:
        """The served workflow's named outputs, as assets (values as text / JSON files)."""
        job.seeds = dict(result.seeds)
        if result.seeds:
            self._publish(
                job, "log", {"level": "info", "message": "seeds used: " + json.dumps(result.seeds)}
            )
        for spec in engine.interface.outputs:
            for i, value in enumerate(result.outputs.get(spec.name, [])):
                if isinstance(value, OutputFile):
                    name = _RUN_PREFIX.sub("", value.filename)  # the runner's per-run prefix
                    rec = await asyncio.to_thread(
                        self.store.add_bytes,
                        value.data,
                        file_path=name,
                        content_type=value.media_type,
                        job_id=job.id,
                    )
                    kind = spec.kind
                else:
                    suffix = f"_{i}" if i else ""
                    text, ext, media = (
                        (str(value), "txt", "text/plain")
                        if spec.kind == "text"
                        else (json.dumps(value), "json", "application/json")
                    )
                    rec = await asyncio.to_thread(
                        self.store.add_bytes,
                        text.encode(),
                        file_path=f"{spec.name}{suffix}.{ext}",
                        content_type=media,
                        job_id=job.id,
                    )
                    kind = "text"
                job.outputs.append((spec.node_id, kind, rec))

    async def _run_graph(
        self, client: ComfyUIClient, job: Job, sub: Submission, left: float
    ) -> None:
        """Any graph (the opt-in policy): its assets staged as inputs, every output collected."""
        staged: list[FileRef] = []
        try:
            prompt = json.loads(json.dumps(job.graph))
            for (node_id, name), rec in sub.assets.items():
                ref = await _stage(client, self.store, rec, f"v2_{job.id}_{rec.file_path}")
                staged.append(ref)
                prompt[node_id]["inputs"][name] = f"{ref.subfolder}/{ref.filename}"
            result = await client.run(
                prompt, timeout=left, on_progress=self._on_progress(job), prompt_id=job.id
            )
            for node_id, ui in result.outputs.items():
                await self._collect(client, job, str(node_id), ui)
        finally:
            for ref in staged:
                path = client.local_path(ref)
                if path is not None:
                    path.unlink(missing_ok=True)

    async def _collect(
        self, client: ComfyUIClient, job: Job, node_id: str, ui: Mapping[str, Any]
    ) -> None:
        for key, kind in _UI_KINDS.items():
            for item in ui.get(key) or []:
                if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                    continue
                ref = FileRef.from_ui(item)
                data = await client.read_file(ref)
                media = mimetypes.guess_type(ref.filename)[0] or "application/octet-stream"
                rec = await asyncio.to_thread(
                    self.store.add_bytes,
                    data,
                    file_path=ref.filename,
                    content_type=media,
                    job_id=job.id,
                )
                job.outputs.append((node_id, kind, rec))
                local = client.local_path(ref) if ref.type == "output" else None
                if local is not None:  # ours now: the asset store holds the bytes
                    with contextlib.suppress(OSError):
                        os.unlink(local)
        texts = ui.get("text")
        if isinstance(texts, list):
            for i, text in enumerate(texts):
                rec = await asyncio.to_thread(
                    self.store.add_bytes,
                    str(text).encode(),
                    file_path=f"text_{node_id}_{i}.txt",
                    content_type="text/plain",
                    job_id=job.id,
                )
                job.outputs.append((node_id, "text", rec))

    def _on_progress(self, job: Job) -> Callable[[ProgressEvent], None]:
        seen: set[str] = set()
        last = [0.0]

        def on_progress(event: ProgressEvent) -> None:
            p = dict(job.progress or _progress_start(len(job.graph)))
            changed = False
            if event.node is not None and event.value is None and event.node not in seen:
                seen.add(event.node)
                p.update(
                    nodes_done=len(seen) - 1, current_node=str(event.node), step=None, steps=None
                )
                node = job.graph.get(str(event.node)) or {}
                p["current_node_class"] = node.get("class_type")
                changed = True
            elif event.value is not None:
                p.update(step=int(event.value), steps=int(event.max or 0) or None)
            total = max(1, p["nodes_total"])
            frac = p["nodes_done"] / total
            if p.get("step") is not None and p.get("steps"):
                frac += (p["step"] / p["steps"]) / total
            p["value"] = round(min(frac, 0.99), 4)
            label = p.get("current_node_class") or p.get("current_node") or ""
            p["message"] = (
                f"{label} {p['step']}/{p['steps']}" if p.get("steps") else str(label) or None
            )
            job.progress = p
            moment = time.monotonic()
            if changed or moment - last[0] >= _PROGRESS_EVERY:
                last[0] = moment
                self._publish(job, "progress", p)

        return on_progress

    def _finish(self, job: Job, status: str, error: dict[str, Any] | None = None) -> None:
        job.completed_at = now()
        job.error = error
        job.set(status)
        for i in range(len(job.outputs)):
            self._publish(job, "output", {"index": i})  # the stream renders it with its links
        self._publish(job, "status", {"status": status})

    def _publish(self, job: Job, event: str, data: dict[str, Any]) -> None:
        for queue in list(job.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((event, data))


def _progress_start(total: int) -> dict[str, Any]:
    return {
        "value": 0.0,
        "nodes_done": 0,
        "nodes_total": total,
        "current_node": None,
        "current_node_class": None,
        "step": None,
        "steps": None,
        "message": None,
    }


def _job_error(e: ComfyPackError, graph: Mapping[str, Any]) -> dict[str, Any]:
    details = e.details if isinstance(e.details, dict) else {}
    node_id = details.get("node_id")
    code = (
        "node_execution_error"
        if isinstance(e, ExecutionFailed)
        else "invalid_workflow"
        if isinstance(e, PromptRejected)
        else "timeout"
        if isinstance(e, ComfyUITimeout)
        else "invalid_input"
        if isinstance(e, RequestError)
        else e.type
    )
    class_type = (
        details.get("node_type") or (graph.get(str(node_id)) or {}).get("class_type")
        if node_id
        else None
    )
    return {
        "code": code,
        "message": e.message[:1000],
        "node_id": None if node_id is None else str(node_id),
        "class_type": class_type,
        "traceback": None,
    }


async def _stage(client: ComfyUIClient, store: AssetStore, rec: AssetRecord, name: str) -> FileRef:
    """Put an asset where the worker's ComfyUI reads inputs (``input/comfypack/<name>``)."""
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200]
    folder = client.local_path(FileRef("", "comfypack", "input"))
    if folder is None:
        stored = await client.upload(
            await asyncio.to_thread(store.read, rec), name, subfolder="comfypack"
        )
        sub, _, fname = stored.rpartition("/")
        return FileRef(fname, sub, "input")

    def copy() -> None:
        import shutil

        with atomic_file(folder / name) as out, open(store.path(rec), "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

    await asyncio.to_thread(copy)
    return FileRef(name, "comfypack", "input")
