"""Background jobs for comfypack's ComfyUI routes (lock, pack, build, deploy).

A :class:`Job` runs one blocking function on a small thread pool (never on ComfyUI's event
loop) and records what the browser polls through ``GET /comfypack/jobs/{id}``: its state,
the stage it is in (of a fixed list, so the fraction done is honest), bytes done of the
current stage where that is known (model hashing), log lines and, at the end, a result or a
structured error. Finished files are handed out by opaque download ids (:class:`Downloads`),
never by path.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "JobFailed", "Jobs", "Downloads", "HashProgress", "error_body"]

logger = logging.getLogger("comfypack.routes")

#: jobs kept (finished ones are dropped oldest first beyond this)
MAX_JOBS = 64


class JobFailed(Exception):
    """A job's (or a route's) failure that the browser should see as it is."""

    def __init__(self, status: int, kind: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return error_body(self.kind, self.message, self.details)


def error_body(kind: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "details": details}}


def describe_exception(e: BaseException) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, error body)`` for any exception a job or route may raise."""
    if isinstance(e, JobFailed):
        return e.status, e.to_dict()
    to_dict = getattr(e, "to_dict", None)  # comfypack.errors.ComfyPackError, without importing it
    status = getattr(e, "status", None)
    if callable(to_dict) and isinstance(status, int):
        body = to_dict()
        if isinstance(body, dict) and "error" in body:
            return status, body
    logger.exception("comfypack: unexpected error", exc_info=e)
    return 500, error_body("internal_error", f"{type(e).__name__}: {e}")


@dataclass
class Job:
    id: str
    kind: str
    stages: list[str]
    state: str = "queued"  # queued | running | done | failed
    stage_index: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    message: str = ""
    result: Any = None
    error: dict[str, Any] | None = None
    status_code: int | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- called from the worker thread ----------------------------------------------------------

    def stage(self, name: str, message: str = "") -> None:
        """Enter stage ``name`` (one of :attr:`stages`)."""
        with self._lock:
            if name in self.stages:
                self.stage_index = self.stages.index(name)
            self.bytes_done = self.bytes_total = 0
            self.message = message or name
            self.log.append(f"[{time.strftime('%H:%M:%S')}] {self.message}")

    def note(self, line: str) -> None:
        with self._lock:
            self.log.append(line.rstrip()[:2000])

    def set_bytes(self, done: int | None = None, total: int | None = None, add: int = 0) -> None:
        with self._lock:
            if total is not None:
                self.bytes_total = total
            if done is not None:
                self.bytes_done = done
            self.bytes_done += add

    # -- read by the route ----------------------------------------------------------------------

    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        sub = self.bytes_done / self.bytes_total if self.bytes_total else 0.0
        return round(min(1.0, (self.stage_index + min(sub, 1.0)) / max(1, len(self.stages))), 4)

    def to_dict(self, *, log_lines: int = 50) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "state": self.state,
                "stage": self.stages[self.stage_index] if self.stages else None,
                "stage_index": self.stage_index,
                "stages": list(self.stages),
                "message": self.message,
                "progress": self.fraction(),
                "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total,
                "elapsed_s": round((self.finished or time.time()) - self.created, 2),
                "result": self.result,
                "error": self.error,
                "log": list(self.log)[-log_lines:] if log_lines else [],
            }


class HashProgress:
    """What :func:`comfypack.files.hashing.hash_files` calls on a rich ``Progress`` (``add_task``,
    ``advance``, ``reset``), reported as the job's bytes done / total."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def add_task(self, description: str, total: int | None = None, **_: Any) -> int:
        self.job.note(description)
        self.job.set_bytes(done=0, total=int(total or 0))
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        self.job.set_bytes(add=int(advance))

    def reset(self, task: int, total: int | None = None, **_: Any) -> None:
        self.job.set_bytes(done=0, total=int(total) if total is not None else None)

    def remove_task(self, task: int) -> None:
        pass


class Jobs:
    """The jobs of one ComfyUI process; at most ``workers`` run at once, the rest wait."""

    def __init__(self, workers: int = 2) -> None:
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="comfypack-job")
        self._tasks: set[asyncio.Future[Any]] = set()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, kind: str, stages: list[str], work: Callable[[Job], Any]) -> Job:
        """Create a job and run ``work(job)`` on the pool; its return value is the result."""
        job = Job(id=secrets.token_hex(16), kind=kind, stages=stages)
        self._jobs[job.id] = job
        self._prune()
        loop = asyncio.get_running_loop()

        def run() -> Any:
            job.state = "running"
            return work(job)

        future = loop.run_in_executor(self._pool, run)
        self._tasks.add(future)

        def done(f: asyncio.Future[Any]) -> None:
            self._tasks.discard(f)
            with job._lock:
                job.finished = time.time()
                exc = asyncio.CancelledError("cancelled") if f.cancelled() else f.exception()
                if exc is None:
                    job.result = f.result()
                    job.state = "done"
                    job.stage_index = max(0, len(job.stages) - 1)
                    job.message = "done"
                else:
                    job.status_code, job.error = describe_exception(exc)
                    job.error = job.error["error"]
                    job.state = "failed"
                    job.message = job.error.get("message", "failed")

        future.add_done_callback(done)
        return job

    def _prune(self) -> None:
        while len(self._jobs) > MAX_JOBS:
            for job_id, job in self._jobs.items():
                if job.state in ("done", "failed"):
                    del self._jobs[job_id]
                    break
            else:
                return


class Downloads:
    """Finished files by opaque id: the only way the routes hand out a file."""

    def __init__(self, keep: int = 32) -> None:
        self._files: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def add(self, path: str, filename: str) -> str:
        download_id = secrets.token_urlsafe(24)
        with self._lock:
            self._files[download_id] = (path, filename)
            while len(self._files) > self._keep:
                _, (old, _) = self._files.popitem(last=False)
                try:
                    os.unlink(old)
                except OSError:
                    pass
        return download_id

    def get(self, download_id: str) -> tuple[str, str] | None:
        with self._lock:
            return self._files.get(download_id)
