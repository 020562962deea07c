"""comfypack services beside everything else on one host (issue 12), over real `comfypack serve`
processes: their own BentoML state, honest readiness, one-line start-up errors, multipart jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, ROOT, TEST_WORKFLOWS, bentoml_serve, require_comfyui, stop_group

pytestmark = pytest.mark.e2e

TEXT = EXAMPLES / "text_tools" / "workflow_api.json"
IMAGE = EXAMPLES / "image_adjust"


def _free_port() -> int:
    from comfypack.comfyui.process import free_port

    return free_port()


def _poll(url: str, seconds: float, until: object) -> list[tuple[float, int, dict[str, object]]]:
    """GET ``url`` every 0.2 s until ``until(status, body)``; every answer seen, with its time."""
    seen: list[tuple[float, int, dict[str, object]]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = httpx.get(url, timeout=3)
            body = r.json()
            seen.append((time.monotonic(), r.status_code, body))
            if until(r.status_code, body):  # type: ignore[operator]
                return seen
        time.sleep(0.2)
    raise AssertionError(f"{url}: condition not met in {seconds} s; last answers {seen[-3:]}")


@contextlib.contextmanager
def _serve(
    args: list[str], log: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`comfypack serve ARGS` on a free port, *not* waiting for readiness (the tests watch it)."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "comfypack.cli", "serve", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
            cwd=ROOT,
        )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_group(proc)


def _metric(url: str, name: str, headers: dict[str, str] | None = None) -> float:
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def _wait_job(url: str, task_id: str, headers: dict[str, str] | None = None) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{url}/generate/status", params={"task_id": task_id}, headers=headers, timeout=10
        )
        status = r.json().get("status")
        if status not in ("in_progress", None):
            return str(status)
        time.sleep(0.3)
    raise AssertionError("job did not finish")


def test_two_services_and_someone_elses_share_a_host(tmp_path: Path) -> None:
    """Services A (no key) and B (a key) and a plain `bentoml serve`, all with the *same*
    BENTOML_HOME in their environment (the default a user has): each comfypack service keeps its
    jobs and metrics to itself, a later start wipes nobody's jobs, and B's key reads none of A's."""
    comfyui = str(require_comfyui())
    shared = tmp_path / "bentoml-home-of-the-user"
    env = {
        "COMFYPACK_HOME": str(tmp_path / "home"),
        "BENTOML_HOME": str(shared),
        "COMFYPACK_WORKERS": "1",
    }
    port_other = _free_port()
    other_log = open(tmp_path / "other.log", "wb")  # noqa: SIM115 - closed below
    other = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "service:Other", "--port", str(port_other)],
        cwd=ROOT / "tests" / "e2e" / "other_service",
        env={**os.environ, **env},
        stdout=other_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with _serve([str(TEXT), "--comfyui", comfyui], tmp_path / "a.log", env) as (a, _):
            _poll(f"{a}/readyz", 180, lambda s, b: s == 200)
            job = httpx.post(f"{a}/generate/submit", json={"text": "alpha"}, timeout=30).json()[
                "task_id"
            ]
            assert _wait_job(a, job) == "completed"
            assert httpx.post(f"{a}/generate", json={"text": "one"}, timeout=60).status_code == 200
            with _serve(
                [str(TEXT), "--comfyui", comfyui, "--api-key-env", "B_KEY"],
                tmp_path / "b.log",
                {**env, "B_KEY": "key-of-b"},
            ) as (b, _):
                auth = {"Authorization": "Bearer key-of-b"}
                _poll(f"{b}/readyz", 180, lambda s, body: s == 200)
                # A's finished job outlived B's start (and the other service's)
                r = httpx.get(f"{a}/generate/get", params={"task_id": job}, timeout=10)
                assert r.status_code == 200, r.text
                assert r.json()["text"] == "ALPHA COMFYUI"  # the default case is UPPER
                # B, with its key, cannot read A's job: B has no such task at all
                r = httpx.get(
                    f"{b}/generate/get", params={"task_id": job}, headers=auth, timeout=10
                )
                assert r.status_code == 404, r.text
                # metrics: A's traffic is A's
                assert _metric(a, "comfypack_request_duration_seconds_count") >= 2
                assert _metric(b, "comfypack_request_duration_seconds_count", auth) == 0
                # each service's state lives in its own folder, none in the user's BENTOML_HOME
                services = sorted(p.name for p in (tmp_path / "home" / "services").iterdir())
                assert services == sorted(
                    {f"127.0.0.1-{a.rsplit(':', 1)[1]}", f"127.0.0.1-{b.rsplit(':', 1)[1]}"}
                )
                for name in services:
                    assert (
                        tmp_path / "home" / "services" / name / "bentoml" / "task_result.db"
                    ).is_file()
        # the other service's own jobs still work in the shared home
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(
                    f"http://127.0.0.1:{port_other}/echo/submit", json={"text": "x"}, timeout=5
                )
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline, (tmp_path / "other.log").read_text()[-2000:]
            time.sleep(0.5)
        assert (shared / "task_result.db").is_file()
    finally:
        stop_group(other)
        other_log.close()


def test_readyz_waits_for_the_warm_up(tmp_path: Path) -> None:
    wf = json.loads((TEST_WORKFLOWS / "sleep_echo.json").read_text())
    wf["2"]["inputs"]["default"] = 5.0  # the warm-up runs with the defaults: 5 s of sleep
    path = tmp_path / "slow_warmup.json"
    path.write_text(json.dumps(wf))
    with _serve(
        [
            str(path),
            "--comfyui",
            str(require_comfyui()),
            "--warmup",
            "--workers",
            "1",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        tmp_path / "serve.log",
        {},
    ) as (url, _):
        seen = _poll(f"{url}/readyz", 240, lambda s, b: s == 200)
        reasons = [str(body.get("reason")) for _, status, body in seen if status == 503]
        assert any("warming up" in r for r in reasons), reasons
        log = (tmp_path / "serve.log").read_text()
        assert "warm-up run took" in log, log[-2000:]
        assert seen[-1][2]["ready"] is True


def test_a_missing_model_keeps_the_service_not_ready_and_says_which(tmp_path: Path) -> None:
    """`comfypack serve` refuses before starting (exit 2, one line); a service started without the
    CLI (`bentoml serve` with COMFYPACK_WORKFLOW, as in a Bento) stays up, not ready, and answers
    requests 503 naming the file — not a 400 that blames the caller."""
    wf = json.loads(TEXT.read_text())
    wf["90"] = {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "not_here.safetensors"},
    }
    path = tmp_path / "needs_a_checkpoint.json"
    path.write_text(json.dumps(wf))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfypack.cli",
            "serve",
            str(path),
            "--comfyui",
            str(require_comfyui()),
            "--port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert cli.returncode == 2
    lines = [ln for ln in cli.stderr.splitlines() if ln.strip()]
    assert (
        len(lines) == 1
        and "not_here.safetensors (node 90 CheckpointLoaderSimple, input ckpt_name)" in lines[0]
    ), cli.stderr

    port = _free_port()
    env = {
        **os.environ,
        "COMFYPACK_WORKFLOW": str(path),
        "COMFYPACK_COMFYUI_DIR": str(require_comfyui()),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "COMFYPACK_WORKERS": "1",
    }
    with open(tmp_path / "bento.log", "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "comfypack.serve.bento_service:ComfyPack",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        seen = _poll(
            f"{url}/readyz", 180, lambda s, b: "not_here.safetensors" in str(b.get("reason"))
        )
        assert seen[-1][1] == 503
        r = httpx.post(f"{url}/generate", json={"text": "x"}, timeout=60)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["type"] == "models_missing"
        assert r.json()["error"]["details"][0]["file"] == "not_here.safetensors"
    finally:
        stop_group(proc)


def test_an_unreachable_attached_comfyui_is_retried_until_it_answers(tmp_path: Path) -> None:
    from comfypack.comfyui.process import ComfyUIProcess

    port = _free_port()
    with _serve(
        [
            str(TEXT),
            "--comfyui-url",
            f"http://127.0.0.1:{port}",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        tmp_path / "serve.log",
        {},
    ) as (url, proc):
        seen = _poll(f"{url}/readyz", 120, lambda s, b: "does not answer" in str(b.get("reason")))
        assert seen[-1][1] == 503 and f"127.0.0.1:{port}" in str(seen[-1][2]["reason"])
        assert proc.poll() is None, "the service stays up, not ready"
        with ComfyUIProcess(require_comfyui(), port=port, startup_timeout=180):
            _poll(f"{url}/readyz", 120, lambda s, b: s == 200)
            r = httpx.post(f"{url}/generate", json={"text": "back"}, timeout=60)
            assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["port in use", "not ComfyUI"])
def test_start_up_errors_are_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1] if case == "port in use" else _free_port()
        comfyui = require_comfyui() if case == "port in use" else tmp_path
        started = time.monotonic()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "comfypack.cli",
                "serve",
                str(TEXT),
                "--comfyui",
                str(comfyui),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert ("cannot listen on" if case == "port in use" else "is not a ComfyUI tree") in lines[0]
    assert "Traceback" not in r.stderr + r.stdout and "starting" not in r.stderr
    assert time.monotonic() - started < 60


def test_readyz_turns_503_the_moment_a_worker_dies(tmp_path: Path) -> None:
    import psutil

    with bentoml_serve(
        TEST_WORKFLOWS / "sleep_echo.json", tmp_path, env={"COMFYPACK_WORKERS": "1"}
    ) as served:
        (pid,) = [
            p.pid
            for p in psutil.Process(served.proc.pid).children(recursive=True)
            if any(a.endswith("main.py") for a in p.cmdline())
        ]
        os.kill(pid, signal.SIGKILL)
        # gone = reaped (a multi-threaded process shows 'Z' while its other threads still exit,
        # and cannot be waited for until they have)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(pid):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        r = httpx.get(f"{served.url}/readyz", timeout=5)  # the worker is dead now: not ready
        assert r.status_code == 503, r.text
        _poll(f"{served.url}/readyz", 120, lambda s, b: s == 200)  # restarted


def test_submit_takes_a_multipart_upload_like_generate(tmp_path: Path) -> None:
    image = (IMAGE / "example.png").read_bytes()
    with bentoml_serve(IMAGE / "workflow_api.json", tmp_path) as served:
        r = httpx.post(
            f"{served.url}/generate/submit",
            files={"image": ("in.png", image, "image/png")},
            data={"width": "64", "height": "48"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        task = r.json()["task_id"]
        assert _wait_job(served.url, task) == "completed"
        out = httpx.get(f"{served.url}/generate/get", params={"task_id": task}, timeout=30)
        assert out.status_code == 200 and out.headers["content-type"] == "image/png"
        from io import BytesIO

        from PIL import Image

        assert Image.open(BytesIO(out.content)).size == (64, 48)
