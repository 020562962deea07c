"""The jobs a service runs: their state (status, progress), their cancellation, and who hears
when one finishes.

A job is one run of the workflow that a caller follows by id — BentoML's task id for
``POST /<endpoint>/submit``. Its state is a plain JSON-ready dict (``GET …/progress`` answers it
as is)::

    {"task_id", "status", "node", "nodes_done", "nodes_total", "step", "steps", "progress"}

``status`` goes ``queued`` → ``running`` → ``completed`` | ``failed`` | ``cancelled``. Listeners
added with :meth:`JobTable.on_finish` are called once per job when it reaches one of the last
three (webhooks, for instance); a listener that raises is logged and does not affect the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["JobTable", "FINAL_STATUSES", "progress_hook"]

logger = logging.getLogger("comfypack.serve.jobs")

#: the statuses a job ends in
FINAL_STATUSES = ("completed", "failed", "cancelled")

#: ``listener(job_state, result_or_None, error_or_None)``
FinishListener = Callable[[dict[str, Any], Any, BaseException | None], Any]


class JobTable:
    """Progress and cancellation of the jobs in flight, keyed by id; the last ``keep`` jobs'
    states are kept for ``progress``."""

    def __init__(self, keep: int = 1000) -> None:
        self.state: dict[str, dict[str, Any]] = {}
        self.running: dict[str, asyncio.Future[Any]] = {}
        self.keep = keep
        self._listeners: list[FinishListener] = []

    def start(self, task_id: str, total_nodes: int) -> dict[str, Any]:
        state = {
            "task_id": task_id,
            "status": "queued",
            "node": None,
            "nodes_done": 0,
            "nodes_total": total_nodes,
            "step": None,
            "steps": None,
            "progress": 0.0,
        }
        self.state[task_id] = state
        while len(self.state) > self.keep:
            self.state.pop(next(iter(self.state)))
        return state

    def progress(self, task_id: str) -> dict[str, Any] | None:
        return self.state.get(task_id)

    def cancel(self, task_id: str) -> bool:
        """Cancel a running job (its prompt is removed from ComfyUI); False if none is running."""
        task = self.running.get(task_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def on_finish(self, listener: FinishListener) -> None:
        """Call ``listener(state, result, error)`` when a job ends (once per job)."""
        self._listeners.append(listener)

    def finish(
        self,
        job: dict[str, Any],
        status: str,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Mark ``job`` ended with ``status`` (one of :data:`FINAL_STATUSES`) and tell the listeners."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"not a final status: {status!r}")
        job["status"] = status
        if status == "completed":
            job.update(progress=1.0, nodes_done=job["nodes_total"], node=None)
        for listener in self._listeners:
            try:
                listener(job, result, error)
            except Exception:  # a listener's bug must not change the job's answer
                logger.exception("job %s: a finish listener failed", job.get("task_id"))


def progress_hook(job: dict[str, Any]) -> Callable[[Any], None]:
    """An ``on_progress`` for :meth:`WorkflowRunner.run` that keeps ``job``'s node count, sampler
    step and overall fraction (never 1.0 before the job completes) up to date."""
    seen: set[str] = set()

    def on_progress(event: Any) -> None:
        if event.node is not None and event.value is None and event.node not in seen:
            seen.add(event.node)
            job["nodes_done"] = len(seen) - 1
            job["node"] = event.node
            job["step"] = job["steps"] = None
        elif event.value is not None:
            job["step"], job["steps"] = event.value, event.max
        total = max(1, job["nodes_total"])
        frac = job["nodes_done"] / total
        if job["step"] is not None and job["steps"]:
            frac += (job["step"] / job["steps"]) / total
        job["progress"] = round(min(frac, 0.99), 4)

    return on_progress
