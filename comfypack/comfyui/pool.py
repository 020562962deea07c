"""A pool of headless ComfyUI workers behind one bounded queue.

ComfyUI runs one prompt at a time. Each worker (one ComfyUI process, or one attached URL) takes
up to ``pipeline`` requests at once (default 2): while one prompt executes, the next is already
in ComfyUI's own queue, so ComfyUI never idles between requests for our upload / history round
trips. A worker's slots are handed out round-robin with the other workers' (an idle worker is
preferred to a half-busy one). Requests wait for a free slot in FIFO order; when
``max_queue`` requests are already waiting, :meth:`WorkerPool.acquire` raises
:class:`Overloaded` at once (the service answers 503 with ``Retry-After``) instead of piling up.

A worker whose ComfyUI exits is noticed by a watcher thread (``Popen.wait``, no polling):
its in-flight request has already failed fast (its websocket dropped), the worker is taken out
of rotation, restarted, reconnected and put back. ``ready`` is true while any worker is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ComfyUIUnavailable, Overloaded
from .client import ComfyUIClient
from .process import ComfyUIProcess, gpu_count, gpu_ids

__all__ = ["Admission", "Worker", "WorkerPool", "default_worker_count"]

logger = logging.getLogger("comfypack.comfyui.pool")


@dataclass
class Admission:
    """A request's place in the queue (see :meth:`WorkerPool.admission`)."""

    waiting: bool = True


def default_worker_count() -> int:
    """One worker per GPU, one on CPU."""
    return max(1, gpu_count())


@dataclass
class Worker:
    index: int
    process: ComfyUIProcess | None
    url: str
    client: ComfyUIClient | None = None
    up: bool = False
    restarts: int = 0
    inflight: int = 0
    gen: int = 0  # bumped each time the worker comes up; stale queue entries are dropped
    last_error: str | None = None
    _watch: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class WorkerPool:
    """``n`` ComfyUI workers started from ``comfyui_dir`` — or, with ``urls``, attached ones."""

    def __init__(
        self,
        *,
        comfyui_dir: Path | None = None,
        urls: list[str] | None = None,
        n: int | None = None,
        python: str | None = None,
        max_queue: int = 64,
        startup_timeout: float = 180.0,
        restart: bool = True,
        on_restart: Callable[[Worker], None] | None = None,
        on_change: Callable[[WorkerPool], None] | None = None,
        extra_args: list[str] | None = None,
        pipeline: int = 2,
    ) -> None:
        if not urls and comfyui_dir is None:
            raise ValueError("give comfyui_dir (start workers) or urls (attach)")
        self.comfyui_dir = comfyui_dir
        self.python = python
        self.max_queue = max_queue
        self.startup_timeout = startup_timeout
        self.restart = restart
        self.on_restart = on_restart
        self.on_change = on_change or (lambda pool: None)
        self.extra_args = extra_args
        self.pipeline = max(1, pipeline)
        # one GPU per worker, round robin over those this process may use (its own
        # CUDA_VISIBLE_DEVICES entries: "2,3" pins workers to GPUs 2 and 3, not 0 and 1)
        gpus = gpu_ids()
        if urls:
            self.workers = [Worker(i, None, u.rstrip("/")) for i, u in enumerate(urls)]
        else:
            count = n or default_worker_count()
            self.workers = []
            for i in range(count):
                env = {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else None
                proc = ComfyUIProcess(
                    comfyui_dir,  # type: ignore[arg-type]
                    python=python,
                    startup_timeout=startup_timeout,
                    env=env,
                    extra_args=extra_args,
                )
                self.workers.append(Worker(i, proc, ""))
        self._idle: asyncio.Queue[tuple[Worker, int]] = asyncio.Queue()
        self._waiting = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.durations: list[float] = []  # recent run durations (s), for Retry-After

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker; returns when all are up (a worker that fails to start raises)."""
        self._loop = asyncio.get_running_loop()
        for w in self.workers:
            if w.process is not None:
                w.process.start()  # Popen from the event loop's (main) thread: see process.py
        results = await asyncio.gather(
            *(self._bring_up(w) for w in self.workers), return_exceptions=True
        )
        self._interleave()
        failed = [
            (w, r)
            for w, r in zip(self.workers, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if failed and self.attached:
            # an attached ComfyUI may come later: keep trying (with backoff), stay not-ready meanwhile
            for w, e in failed:
                w.last_error = f"ComfyUI at {w.url} does not answer: {e}"
                logger.error("worker %d: %s; retrying", w.index, w.last_error)
                self._spawn(self._reattach(w))
            return
        if len(failed) == len(self.workers):
            raise failed[0][1]
        for _, e in failed:
            logger.error("a worker failed to start: %s", e)

    @property
    def attached(self) -> bool:
        """Whether the workers are ComfyUIs at given URLs (not started by this pool)."""
        return all(w.process is None for w in self.workers)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reattach(self, w: Worker) -> None:
        delay = 1.0
        while not self._closing:
            await asyncio.sleep(delay)
            if w.client is not None:
                await w.client.close()
                w.client = None
            try:
                await self._bring_up(w)
                return
            except Exception as e:  # keep trying: the service is up, not ready, and says why
                w.last_error = f"ComfyUI at {w.url} does not answer: {e}"
                delay = min(delay * 2, 30)
                logger.warning("worker %d: %s; retrying in %.0f s", w.index, w.last_error, delay)

    def not_ready_reason(self) -> str | None:
        """Why no worker can take a request (``None`` when one can)."""
        if self.ready:
            return None
        errors = [f"worker {w.index}: {w.last_error}" for w in self.workers if w.last_error]
        return "; ".join(errors) if errors else "no ComfyUI worker is up yet"

    async def _bring_up(self, w: Worker) -> None:
        if w.process is not None:
            await asyncio.to_thread(w.process.wait_ready)
            w.url = w.process.url
            w.client = ComfyUIClient(
                w.url, output_dir=w.process.output_dir, input_dir=w.process.input_dir
            )
            self._watch(w)
        else:
            w.client = ComfyUIClient(w.url)
        await w.client.connect()
        w.up = True
        w.gen += 1
        w.inflight = 0
        w.last_error = None
        for _ in range(self.pipeline):
            self._idle.put_nowait((w, w.gen))
        logger.info("worker %d up at %s (pid %s)", w.index, w.url, w.pid)

    def _interleave(self) -> None:
        """Order the free slots w0, w1, …, w0, w1, … so the first requests spread over workers."""
        per_worker: dict[int, list[tuple[Worker, int]]] = {}
        while not self._idle.empty():
            slot = self._idle.get_nowait()
            per_worker.setdefault(slot[0].index, []).append(slot)
        for round_ in itertools.zip_longest(*per_worker.values()):
            for slot in round_:
                if slot is not None:
                    self._idle.put_nowait(slot)

    def _watch(self, w: Worker) -> None:
        proc = w.process
        assert proc is not None and proc._proc is not None
        popen = proc._proc
        loop = self._loop
        assert loop is not None

        def wait() -> None:
            code = popen.wait()
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._on_exit, w, popen.pid, code)

        w._watch = threading.Thread(target=wait, name=f"comfyui-watch-{w.index}", daemon=True)
        w._watch.start()

    def _on_exit(self, w: Worker, pid: int, code: int) -> None:
        if self._closing or w.process is None or w.process.pid not in (pid, None):
            return
        w.up = False
        w.last_error = f"ComfyUI (pid {pid}) exited with code {code}"
        logger.error("worker %d: %s", w.index, w.last_error)
        if self.restart:
            self._spawn(self._restart(w))

    async def _restart(self, w: Worker) -> None:
        assert w.process is not None
        if w.client is not None:
            await w.client.close()
            w.client = None
        delay = 1.0
        while not self._closing:
            try:
                w.process.restart()  # on the loop's thread, like the first start
                await self._bring_up(w)
                w.restarts += 1
                if self.on_restart:
                    self.on_restart(w)
                return
            except Exception as e:  # keep trying; the pool stays up on other workers
                w.last_error = str(e)
                logger.error(
                    "worker %d failed to restart: %s; retrying in %.0f s", w.index, e, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for w in self.workers:
            if w.client is not None:
                await w.client.close()
            if w.process is not None:
                await asyncio.to_thread(w.process.stop)

    # -- dispatch -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return any(w.up and (w.process is None or w.process.is_running()) for w in self.workers)

    @property
    def queue_depth(self) -> int:
        return self._waiting

    @property
    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.inflight)

    def retry_after(self) -> int:
        recent = self.durations[-50:]
        per_run = sum(recent) / len(recent) if recent else 1.0
        up = max(1, sum(self.pipeline for w in self.workers if w.up))
        return max(1, round(per_run * (self._waiting + 1) / up))

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"all {len(self.workers)} workers are busy and {self._waiting} requests "
            "are waiting; retry later",
            retry_after=self.retry_after(),
        )

    @contextlib.asynccontextmanager
    async def admission(self) -> AsyncIterator[Admission]:
        """A place in the queue for a request's work *before* it needs a worker (fetching its URL
        inputs): counted as waiting, so a full queue refuses it (:class:`Overloaded`) before it
        fetches anything. Inside it, take the worker with ``acquire(admitted=<the admission>)``;
        the place is given up once the worker is taken (or the block ends)."""
        if self._waiting >= self.max_queue + self._idle.qsize():
            raise self._overloaded()
        ticket = Admission()
        self._waiting += 1
        self.on_change(self)
        try:
            yield ticket
        finally:
            if ticket.waiting:
                ticket.waiting = False
                self._waiting -= 1
                self.on_change(self)

    @contextlib.asynccontextmanager
    async def acquire(
        self, timeout: float | None = None, *, admitted: Admission | None = None
    ) -> AsyncIterator[Worker]:
        """An idle, healthy worker for one run; :class:`Overloaded` when the queue is full
        (``admitted``: the caller's :meth:`admission`, which already holds its place)."""
        if admitted is None or not admitted.waiting:
            if self._idle.empty() and self._waiting >= self.max_queue:
                raise self._overloaded()
            admitted = Admission()
            self._waiting += 1
            self.on_change(self)
        try:
            while True:
                try:
                    w, gen = await asyncio.wait_for(self._idle.get(), timeout)
                except asyncio.TimeoutError as e:
                    raise ComfyUIUnavailable(
                        f"no ComfyUI worker became free within {timeout:g} s"
                    ) from e
                if gen == w.gen and w.up and (w.process is None or w.process.is_running()):
                    break  # a worker that died while idle is dropped; its restart re-queues it
        finally:
            admitted.waiting = False
            self._waiting -= 1
        w.inflight += 1
        self.on_change(self)
        started = time.monotonic()
        try:
            yield w
        finally:
            w.inflight -= 1
            self.on_change(self)
            self.durations.append(time.monotonic() - started)
            del self.durations[:-200]
            if w.up and (w.process is None or w.process.is_running()):
                self._idle.put_nowait((w, w.gen))
