"""Production serving over a real `bentoml serve`: crash recovery, bounded queue, jobs, auth, limits.

The sleep workflow (tests/workflows/sleep_echo.json, test node ComfyPackTestSleep) gives requests
that last long enough to kill a worker or cancel a job mid-run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import EXAMPLES, TEST_WORKFLOWS, Served, bentoml_serve

pytestmark = pytest.mark.e2e

SLEEP = TEST_WORKFLOWS / "sleep_echo.json"
TEXT = EXAMPLES / "text_tools" / "workflow_api.json"


def comfyui_pids(served: Served) -> list[int]:
    kids = psutil.Process(served.proc.pid).children(recursive=True)
    return [p.pid for p in kids if any(a.endswith("main.py") for a in p.cmdline())]


def wait_ready(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} did not become ready in {seconds} s")


@pytest.fixture(scope="module")
def sleepy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with bentoml_serve(
        SLEEP, tmp_path_factory.mktemp("logs"), env={"COMFYPACK_WORKERS": "1"}
    ) as served:
        yield served


def test_killed_worker_fails_fast_and_comes_back(sleepy: Served) -> None:
    (pid,) = comfyui_pids(sleepy)

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(timeout=60) as client:
            call = asyncio.create_task(
                client.post(f"{sleepy.url}/generate", json={"text": "a", "seconds": 20})
            )
            await asyncio.sleep(2.0)  # the prompt is running in ComfyUI now
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            response = await call
            assert time.monotonic() - killed < 5, "the in-flight request must fail fast"
            return response

    r = asyncio.run(scenario())
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "comfyui_unavailable"
    wait_ready(sleepy.url)
    assert comfyui_pids(sleepy) != [pid], "a new ComfyUI must have been started"
    again = httpx.post(f"{sleepy.url}/generate", json={"text": "after", "seconds": 0}, timeout=60)
    assert again.status_code == 200 and again.json() == {"text": "after"}
    metrics = httpx.get(f"{sleepy.url}/metrics").text
    assert "comfypack_worker_restarts_total" in metrics


def test_async_job_progress_and_result(sleepy: Served) -> None:
    sub = httpx.post(
        f"{sleepy.url}/generate/submit", json={"text": "job", "seconds": 1.5}, timeout=30
    )
    assert sub.status_code == 200, sub.text
    task_id = sub.json()["task_id"]
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(f"{sleepy.url}/generate/status", params={"task_id": task_id}).json()[
            "status"
        ]
        prog = httpx.get(f"{sleepy.url}/generate/progress", params={"task_id": task_id})
        if prog.status_code == 200:
            seen.append(prog.json()["status"])
        if status != "in_progress":
            break
        time.sleep(0.2)
    assert status == "completed", status
    assert "running" in seen
    result = httpx.get(f"{sleepy.url}/generate/get", params={"task_id": task_id})
    assert result.status_code == 200 and result.json() == {"text": "job"}
    final = httpx.get(f"{sleepy.url}/generate/progress", params={"task_id": task_id}).json()
    assert final["status"] == "completed" and final["progress"] == 1.0


def test_cancel_a_running_job(sleepy: Served) -> None:
    task_id = httpx.post(f"{sleepy.url}/generate/submit", json={"text": "x", "seconds": 30}).json()[
        "task_id"
    ]
    deadline = time.monotonic() + 30
    while (
        httpx.get(f"{sleepy.url}/generate/progress", params={"task_id": task_id})
        .json()
        .get("status")
        != "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    r = httpx.put(f"{sleepy.url}/generate/cancel", params={"task_id": task_id})
    assert r.status_code == 200, r.text
    while (
        httpx.get(f"{sleepy.url}/generate/status", params={"task_id": task_id}).json()["status"]
        == "in_progress"
    ):
        assert time.monotonic() - started < 10, "cancel must interrupt the prompt, not wait 30 s"
        time.sleep(0.1)
    assert (
        httpx.get(f"{sleepy.url}/generate/progress", params={"task_id": task_id}).json()["status"]
        == "cancelled"
    )
    # the worker is free again at once
    ok = httpx.post(f"{sleepy.url}/generate", json={"text": "next", "seconds": 0}, timeout=30)
    assert ok.status_code == 200 and ok.json() == {"text": "next"}


def test_client_disconnect_cancels_its_prompt(sleepy: Served) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sleepy.url}/generate", json={"text": "gone", "seconds": 30}, timeout=2)
    started = time.monotonic()
    r = httpx.post(f"{sleepy.url}/generate", json={"text": "next", "seconds": 0}, timeout=30)
    assert r.status_code == 200 and r.json() == {"text": "next"}
    assert time.monotonic() - started < 10, "the abandoned 30 s prompt must have been interrupted"


def test_64_concurrent_requests_none_lost_or_mixed(tmp_path: Path) -> None:
    with bentoml_serve(TEXT, tmp_path, env={"COMFYPACK_MAX_QUEUE": "16"}) as served:

        async def go() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            f"{served.url}/generate", json={"text": f"req{i}", "case": "lowercase"}
                        )
                        for i in range(64)
                    )
                )

        responses = asyncio.run(go())
    ok = rejected = 0
    for i, r in enumerate(responses):
        if r.status_code == 200:
            assert r.json()["text"] == f"req{i} comfyui", (
                "a response must carry its own request's output"
            )
            ok += 1
        else:
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["type"] == "overloaded"
            rejected += 1
    assert ok + rejected == 64
    # how many get a slot depends on how the 64 arrive; the point is none is lost or mixed
    assert ok >= 8
    assert rejected >= 1, "a queue bounded at 16 must turn some of 64 simultaneous requests away"


def test_auth_upload_limit_and_warmup(comfyui: object, tmp_path: Path) -> None:
    env = {
        "COMFYPACK_API_KEY": "s3cret",
        "COMFYPACK_MAX_UPLOAD_BYTES": "50000",
        "COMFYPACK_WARMUP": "1",
        "COMFYPACK_COMFYUI_URL": comfyui.url,
    }  # type: ignore[attr-defined]
    with bentoml_serve(TEXT, tmp_path, env=env) as served:
        url = served.url
        deadline = time.monotonic() + 30
        while "warm-up run took" not in served.log.read_text():
            assert time.monotonic() < deadline, (
                "COMFYPACK_WARMUP=1 must run the workflow once at start"
            )
            time.sleep(0.2)
        assert httpx.get(f"{url}/readyz").status_code == 200  # health stays open
        assert httpx.get(f"{url}/livez").status_code == 200
        denied = httpx.post(f"{url}/generate", json={"text": "x"})
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "unauthorized"
        assert httpx.get(f"{url}/docs.json").status_code == 401
        assert (
            httpx.post(
                f"{url}/generate", json={"text": "x"}, headers={"X-API-Key": "wrong"}
            ).status_code
            == 401
        )
        ok = httpx.post(
            f"{url}/generate",
            json={"text": "x"},
            headers={"Authorization": "Bearer s3cret", "X-Request-ID": "req-abc-123"},
        )
        assert ok.status_code == 200 and ok.json()["text"] == "X COMFYUI"
        assert ok.headers["x-request-id"] == "req-abc-123"
        deadline = time.monotonic() + 10
        while "request_id=req-abc-123 route=/generate" not in served.log.read_text():
            assert time.monotonic() < deadline, "each request is logged with its request id"
            time.sleep(0.1)
        big = httpx.post(
            f"{url}/generate", json={"text": "y" * 60000}, headers={"X-API-Key": "s3cret"}
        )
        assert (
            big.status_code == 413
            and big.json()["error"]["details"][0]["message"] == "request too large"
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"text": "'
            for _ in range(10):
                yield b"z" * 10000
            yield b'"}'

        streamed = httpx.post(
            f"{url}/generate",
            content=chunks(),
            headers={"X-API-Key": "s3cret", "content-type": "application/json"},
        )
        assert streamed.status_code == 413


def test_metrics_exposed(sleepy: Served) -> None:
    httpx.post(f"{sleepy.url}/generate", json={"text": "m", "seconds": 0}, timeout=30)
    text = httpx.get(f"{sleepy.url}/metrics").text
    for name in (
        "comfypack_request_duration_seconds",
        "comfypack_queue_depth",
        "comfypack_busy_workers",
    ):
        assert name in text, name
