"""The node package's route helpers, without ComfyUI (``custom_nodes/comfypack_nodes/``).

The package's ``__init__`` needs ComfyUI (its nodes import ``folder_paths``), so the route modules
are loaded here under a stand-in package. Covered: the same-origin rule, JSON-only bodies, the
501 a ComfyUI without comfypack answers, job progress (real bytes from the hashing code), and a
service stop that escalates to SIGKILL and leaves no process of the group behind.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shlex
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from conftest import ROOT, group_members

NODES = ROOT / "custom_nodes" / "comfypack_nodes"
PKG = "comfypack_nodes_under_test"


def _module(name: str) -> Any:
    if PKG not in sys.modules:
        pkg = types.ModuleType(PKG)
        pkg.__path__ = [str(NODES)]
        sys.modules[PKG] = pkg
    return importlib.import_module(f"{PKG}.{name}")


routes = _module("routes")
jobs = _module("_jobs")
services = _module("_services")
work = _module("_work")


def _request(headers: dict[str, str], method: str = "POST") -> web.Request:
    return make_mocked_request(method, "/comfypack/interface", headers=headers)


@pytest.mark.parametrize(
    "headers, refused",
    [
        ({"Host": "127.0.0.1:8188"}, False),  # curl, the services themselves
        (
            {
                "Host": "127.0.0.1:8188",
                "Origin": "http://127.0.0.1:8188",
                "Sec-Fetch-Site": "same-origin",
            },
            False,
        ),
        ({"Host": "comfy.lan", "Origin": "http://comfy.lan:80"}, False),  # default port either way
        (
            {
                "Host": "internal:8188",
                "X-Forwarded-Host": "comfy.example.com",
                "Origin": "https://comfy.example.com",
            },
            False,
        ),
        ({"Host": "127.0.0.1:8188", "Sec-Fetch-Site": "none"}, False),  # typed in the address bar
        ({"Host": "127.0.0.1:8188", "Sec-Fetch-Site": "cross-site"}, True),
        (
            {"Host": "127.0.0.1:8188", "Sec-Fetch-Site": "same-site"},
            True,
        ),  # another port = another origin
        ({"Host": "127.0.0.1:8188", "Origin": "http://127.0.0.1:3000"}, True),
        ({"Host": "127.0.0.1:8188", "Origin": "http://evil.example"}, True),
        ({"Host": "127.0.0.1:8188", "Origin": "null"}, True),
        ({"Host": "127.0.0.1:8188", "Origin": "chrome-extension://abc"}, True),
    ],
)
def test_cross_origin(headers: dict[str, str], refused: bool) -> None:
    assert (routes.cross_origin(_request(headers)) is not None) == refused


@pytest.mark.parametrize(
    "host, allowed_setting, refused",
    [
        ("127.0.0.1:8188", "", False),
        ("localhost:8188", "", False),
        ("LOCALHOST", "", False),
        ("app.localhost:8188", "", False),  # *.localhost is loopback by definition (RFC 6761)
        ("[::1]:8188", "", False),
        ("127.0.0.2", "", False),
        ("evil.example:8188", "", True),  # DNS rebinding: a foreign name that now points here
        ("comfy.lan:8188", "", True),
        ("192.168.1.20:8188", "", True),  # not the address this (mocked) connection reached
        ("localhost.evil.example", "", True),
        ("comfy.lan:8188", "comfy.lan, other.lan", False),
        ("evil.example", "comfy.lan", True),
        ("anything.example", "*", False),
        ("bad host", "", True),
    ],
)
def test_host_allow_list(
    monkeypatch: pytest.MonkeyPatch, host: str, allowed_setting: str, refused: bool
) -> None:
    monkeypatch.setenv("COMFYPACK_ALLOWED_HOSTS", allowed_setting)
    assert (routes.untrusted_host(_request({"Host": host})) is not None) == refused


@pytest.mark.parametrize(
    "name, expected",
    [
        ("text_tools", "text_tools"),
        ("My flow.json", "My_flow"),
        ("../../etc/passwd", "passwd"),
        ("workflows/a b.json", "a_b"),
        ("", "workflow"),
        (None, "workflow"),
        ("...", "workflow"),
        ("x.cpack.zip", "x"),
        ("ünïcode", "n_code"),
    ],
)
def test_slug(name: Any, expected: str) -> None:
    assert work.slug(name) == expected


def test_job_progress_counts_hashed_bytes(tmp_path: Path) -> None:
    from comfypack.files.hashing import hash_files

    job = jobs.Job(id="0" * 32, kind="lock", stages=["a", "hashing models", "c"])
    job.stage("hashing models")
    f = tmp_path / "model.bin"
    f.write_bytes(b"x" * (3 << 20))
    hash_files([f], progress=jobs.HashProgress(job))
    d = job.to_dict()
    assert d["bytes_done"] == d["bytes_total"] == 3 << 20
    assert d["stage"] == "hashing models" and d["progress"] == pytest.approx(2 / 3, abs=1e-3)
    assert any("sha256" in line for line in d["log"])


def _app(tmp_path: Path) -> web.Application:
    app = web.Application()
    table = web.RouteTableDef()
    routes.ComfyPackRoutes(str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path)).add_routes(
        table
    )
    app.add_routes(table)
    return app


async def _post(tmp_path: Path, path: str, **kw: Any) -> tuple[int, Any]:
    async with TestClient(TestServer(_app(tmp_path))) as client:
        r = await client.post(path, **kw)
        return r.status, await r.json()


def test_a_comfyui_without_comfypack_answers_501(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        work.importlib.util, "find_spec", lambda n, *a: None if n == "comfypack" else real(n, *a)
    )
    status, body = asyncio.run(
        _post(tmp_path, "/comfypack/interface", json={"workflow": {"1": {}}})
    )
    assert status == 501
    assert body["error"]["type"] == "comfypack_missing"
    # the one command to run, with the very interpreter that runs ComfyUI
    assert (
        f"run: {shlex.quote(sys.executable)} -m pip install comfypack " in body["error"]["message"]
    )


def test_guard_json_only_and_same_origin(tmp_path: Path) -> None:
    status, body = asyncio.run(
        _post(
            tmp_path,
            "/comfypack/pack",
            data="workflow=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    assert status == 415 and body["error"]["type"] == "unsupported_media_type"
    status, body = asyncio.run(
        _post(tmp_path, "/comfypack/serve", json={}, headers={"Origin": "http://evil.example"})
    )
    assert status == 403 and body["error"]["type"] == "forbidden"
    status, body = asyncio.run(_post(tmp_path, "/comfypack/interface", json={"workflow": "nope"}))
    assert status == 400 and "`workflow` must be" in body["error"]["message"]


STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    print("child", child.pid, flush=True)
    time.sleep(60)
""")


def test_stop_escalates_to_sigkill_and_leaves_nothing(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)

    async def go() -> tuple[dict[str, Any], int]:
        svc = services.Services(tmp_path, command=[sys.executable, str(script)], grace=0.5)
        s = svc.start(
            service_id="a" * 16,
            name="demo flow",
            workflow_sha256="a" * 64,
            workflow_json=json.dumps({}),
            comfyui_url="http://127.0.0.1:1",
            host="127.0.0.1",
            public_host="localhost",
        )
        deadline = time.monotonic() + 20
        while not any(line.startswith("child") for line in s.log):
            assert time.monotonic() < deadline and s.proc.poll() is None, list(s.log)
            await asyncio.sleep(0.05)
        assert len(group_members(s.proc.pid)) == 2
        assert s.to_dict()["docs_url"] == f"http://localhost:{s.port}/docs"
        assert s.workflow_path.parent.name == "demo_flow"
        return await svc.stop(s.id), s.proc.pid

    result, pgid = asyncio.run(go())
    assert result["state"] == "stopped" and result["killed"] is True and result["left"] == []
    assert group_members(pgid) == []


PARENT = textwrap.dedent("""
    import asyncio, importlib, sys, types
    from pathlib import Path
    pkg = types.ModuleType("cpn"); pkg.__path__ = [sys.argv[1]]; sys.modules["cpn"] = pkg
    services = importlib.import_module("cpn._services")

    async def main():
        svc = services.Services(Path(sys.argv[2]), command=[sys.executable, "-c", "import time; time.sleep(60)"])
        s = svc.start(service_id="b" * 16, name="x", workflow_sha256="b" * 64, workflow_json="{}",
                      comfyui_url="http://127.0.0.1:1", host="127.0.0.1", public_host="127.0.0.1")
        print(s.proc.pid, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_service_dies_with_a_killed_comfyui(tmp_path: Path) -> None:
    """ComfyUI SIGKILLed (no atexit): PR_SET_PDEATHSIG still ends the service it started."""
    import signal
    import subprocess

    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(NODES), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert group_members(child) == [child]
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while group_members(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(child) == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_capabilities_come_from_version_json_not_help_text(monkeypatch):
    """The node package asks the CLI of its own Python what it can do (``comfypack version
    --json``, machine-readable); a CLI that cannot answer means no build/deploy."""
    work = _module("_work")
    work._cli_features.clear()
    monkeypatch.setenv("COMFYPACK_CLI", f"{shlex.quote(sys.executable)} -m comfypack.cli")
    try:
        assert "--json" in work.cli_options("build") and work.cli_has("deploy")
        assert work.cli_options("no-such-command") is None
        work._cli_features.clear()
        monkeypatch.setenv(
            "COMFYPACK_CLI", f"{shlex.quote(sys.executable)} -c pass"
        )  # answers nothing
        assert work.cli_features() is None and not work.cli_has("build")
    finally:
        work._cli_features.clear()


def test_run_cli_job_takes_the_bento_tag_from_json_only(monkeypatch, tmp_path):
    work = _module("_work")
    script = tmp_path / "fake_cli.py"
    script.write_text(
        "import json, sys\nprint('Bento built: fake:v1', file=sys.stderr)\n"
        "print(json.dumps({'tag': 'text_tools:abc'}) if '--json' in sys.argv else 'built: x:y')\n"
    )
    monkeypatch.setenv("COMFYPACK_CLI", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    job = jobs.Job("j" * 32, "build", ["building"])
    assert work.run_cli_job(job, ["build", "--json"], "building")["bento"] == "text_tools:abc"
    assert "bento" not in work.run_cli_job(job, ["build"], "building")  # human output is not parsed
