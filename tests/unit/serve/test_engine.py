"""comfypack.serve.engine, comfypack.serve.jobs and serving.GenerateEndpoint without ComfyUI: a stand-in pool
(the transport) so start-up, readiness, the queue discipline, job states and error answers are
checked here; tests/e2e runs the same code against a real ComfyUI and `bentoml serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from comfypack.errors import ComfyPackError, ComfyUIUnavailable, Overloaded, RequestError
from comfypack.serve.engine import ServeConfig, WorkflowEngine, load_served
from comfypack.serve.jobs import JobTable, progress_hook

from .._helpers import example


class _Pool:
    """What the engine uses of a WorkerPool; records what happened."""

    def __init__(self, *, overloaded: bool = False) -> None:
        self.started = self.closed = False
        self.events: list[str] = []
        self.overloaded = overloaded
        self.workers = [SimpleNamespace(up=True, client="client-0")]
        self.attached = True

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    @property
    def ready(self) -> bool:
        return self.started

    def not_ready_reason(self) -> str | None:
        return None if self.started else "workers starting"

    @contextlib.asynccontextmanager
    async def admission(self):  # type: ignore[no-untyped-def]
        if self.overloaded:
            raise Overloaded("all busy", retry_after=3)
        self.events.append("admitted")
        yield SimpleNamespace(waiting=True)

    @contextlib.asynccontextmanager
    async def acquire(self, timeout: float | None = None, *, admitted: Any = None):  # type: ignore[no-untyped-def]
        self.events.append(f"acquired timeout<={timeout is not None and timeout <= 30}")
        yield self.workers[0]


def _engine(pool: _Pool | None = None, **config: Any) -> tuple[WorkflowEngine, _Pool]:
    pool = pool or _Pool()
    cfg = ServeConfig(
        workflow=example("text_tools"), comfyui_url="http://127.0.0.1:1", timeout=30, **config
    )
    workflow, interface = load_served(cfg)
    return WorkflowEngine(cfg, workflow, interface, pool_factory=lambda d, u: pool), pool


def test_readiness_follows_start_up():
    async def main() -> None:
        engine, pool = _engine()
        assert engine.readiness() == (False, "workers starting")
        await engine.start()
        await asyncio.sleep(0)
        await engine._startup  # type: ignore[misc]
        ok, reason = engine.readiness()
        assert ok and reason == "1 of 1 worker(s) up"
        await engine.stop()
        assert pool.closed

    asyncio.run(main())


def test_a_bad_body_is_refused_before_it_takes_a_place_in_the_queue():
    async def main() -> None:
        engine, pool = _engine()
        await engine.start()
        with pytest.raises(RequestError) as err:
            await engine.execute({"case": "shouting"})
        assert err.value.fields == ["case"]
        assert pool.events == []

    asyncio.run(main())


def test_execute_takes_a_place_then_a_worker_and_runs_within_the_timeout(monkeypatch):
    async def main() -> None:
        engine, pool = _engine()
        seen: dict[str, Any] = {}

        async def run(
            client: Any, request: Any, *, on_progress: Any = None, timeout: float | None = None
        ) -> str:
            seen.update(client=client, values=request.values, timeout=timeout)
            return "result"

        monkeypatch.setattr(engine.runner, "run", run)
        running: list[bool] = []
        await engine.start()
        assert (
            await engine.execute({"text": "hi"}, on_running=lambda: running.append(True))
            == "result"
        )
        assert pool.events == ["admitted", "acquired timeout<=True"] and running == [True]
        assert seen["client"] == "client-0" and seen["values"]["text"] == "hi"
        assert 0 < seen["timeout"] <= 30

    asyncio.run(main())


def test_a_full_queue_raises_overloaded():
    async def main() -> None:
        engine, _ = _engine(_Pool(overloaded=True))
        await engine.start()
        with pytest.raises(Overloaded) as err:
            await engine.execute({})
        assert err.value.retry_after == 3

    asyncio.run(main())


def test_a_pool_that_cannot_be_made_is_a_reason_not_a_crash():
    def refuse(d: Any, u: Any) -> Any:
        raise ComfyPackError("/nowhere is not a ComfyUI tree")

    async def main() -> None:
        cfg = ServeConfig(workflow=example("text_tools"), comfyui_dir=Path("/nowhere"))
        workflow, interface = load_served(cfg)
        engine = WorkflowEngine(cfg, workflow, interface, pool_factory=refuse)
        await engine.start()
        assert engine.readiness() == (False, "start-up failed: /nowhere is not a ComfyUI tree")
        with pytest.raises(ComfyUIUnavailable, match="not a ComfyUI tree"):
            await engine.execute({})

    asyncio.run(main())


def test_from_env_without_a_workflow_says_which_variable_to_set(monkeypatch, tmp_path):
    # an installed package has no repository example next to it: the intended message, not
    # "no such file" for a path inside site-packages
    for key in ("COMFYPACK_WORKFLOW", "COMFYPACK_PACK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ComfyPackError, match="set COMFYPACK_WORKFLOW"):
        ServeConfig.from_env(default_workflow=tmp_path / "examples" / "missing.json")
    present = example("text_tools")
    assert ServeConfig.from_env(default_workflow=present).workflow == present


def test_label_and_request_limits():
    cfg = ServeConfig(workflow=Path("flows/image_adjust/workflow_api.json"), timeout=5)
    assert cfg.label == "image_adjust"
    assert ServeConfig(workflow=Path("/p/my_flow.cpack.zip")).label == "my_flow"
    assert cfg.request_limits().url.timeout <= 5  # no URL fetch outlasts the request


# -- jobs -----------------------------------------------------------------------------------------


def test_job_table_finish_tells_listeners_once_and_survives_a_failing_one():
    jobs = JobTable(keep=2)
    heard: list[tuple[str, Any, Any]] = []
    jobs.on_finish(lambda job, result, error: heard.append((job["status"], result, error)))
    jobs.on_finish(lambda job, result, error: 1 / 0)
    job = jobs.start("t1", total_nodes=4)
    jobs.finish(job, "completed", result="out")
    assert heard == [("completed", "out", None)]
    assert job["progress"] == 1.0 and job["nodes_done"] == 4
    with pytest.raises(ValueError):
        jobs.finish(job, "running")
    jobs.start("t2", 1)
    jobs.start("t3", 1)
    assert jobs.progress("t1") is None and jobs.progress("t3") is not None  # only `keep` kept


def test_progress_hook_never_reports_done_before_the_job_is():
    job = JobTable().start("t", total_nodes=2)
    hook = progress_hook(job)
    hook(SimpleNamespace(node="1", value=None, max=None))
    hook(SimpleNamespace(node="2", value=None, max=None))
    hook(SimpleNamespace(node=None, value=10, max=10))
    assert job["nodes_done"] == 1 and job["node"] == "2" and job["progress"] == 0.99


# -- the endpoint ---------------------------------------------------------------------------------


class _Request:
    def __init__(self, task_id: str | None = None) -> None:
        self.headers: dict[str, str] = {}
        self.scope: dict[str, Any] = {}
        self.state = SimpleNamespace(task_id=task_id)

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}


def _endpoint(engine: Any) -> Any:
    from comfypack.serve.service import GenerateEndpoint, _Metrics

    return GenerateEndpoint(engine, JobTable(), _Metrics("test"), route="/generate")


def test_endpoint_answers_overloaded_with_retry_after():
    async def main() -> None:
        engine, _ = _engine(_Pool(overloaded=True))
        await engine.start()
        response = await _endpoint(engine).handle(_Request(), {})
        assert response.status_code == 503 and response.headers["retry-after"] == "3"
        assert json.loads(response.body)["error"]["type"] == "overloaded"

    asyncio.run(main())


def test_endpoint_a_cancelled_job_is_409_and_its_listeners_hear_it(monkeypatch):
    async def main() -> None:
        engine, _ = _engine()
        started = asyncio.Event()

        async def run(client: Any, request: Any, **kw: Any) -> Any:
            started.set()
            await asyncio.sleep(3600)

        monkeypatch.setattr(engine.runner, "run", run)
        await engine.start()
        endpoint = _endpoint(engine)
        heard: list[str] = []
        endpoint.jobs.on_finish(lambda job, result, error: heard.append(job["status"]))
        answer = asyncio.ensure_future(endpoint.handle(_Request(task_id="job-1"), {}))
        await asyncio.wait_for(started.wait(), 5)
        assert endpoint.jobs.progress("job-1")["status"] == "running"
        assert endpoint.jobs.cancel("job-1")
        response = await asyncio.wait_for(answer, 5)
        assert (
            response.status_code == 409
            and json.loads(response.body)["error"]["type"] == "cancelled"
        )
        assert heard == ["cancelled"] and endpoint.jobs.progress("job-1")["status"] == "cancelled"

    asyncio.run(main())
