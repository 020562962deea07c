"""`comfypack build` end to end: pack an example, build its Bento into a temp BENTOML_HOME, serve
it with `bentoml serve <tag>` on 127.0.0.1 and call it.

Here `bentoml serve` runs in this environment: at start the service restores the pack into a
workspace under a temp COMFYPACK_HOME from the locked, packaged ComfyUI source (the wheel that
`make setup` downloaded, so it works offline) and runs that ComfyUI.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import EXAMPLES, ROOT, require_comfyui, stop_group

from comfypack.comfyui.source import comfyui_version

pytestmark = pytest.mark.e2e


def _wheels(comfyui_dir: Path) -> Path | None:
    """The folder holding the packaged ComfyUI source wheel `make setup` downloaded."""
    from comfypack.comfyui.source import DEFAULT_PACKAGED
    from comfypack.config import comfypack_home

    name = DEFAULT_PACKAGED.package.replace("-", "_")
    for folder in (
        comfypack_home() / "wheels",
        comfyui_dir.parent / "wheels",
        ROOT / ".cache" / "wheels",
    ):
        if list(folder.glob(f"{name}-{DEFAULT_PACKAGED.version}-*.whl")):
            return folder
    return None


def _env(tmp_path: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYPACK_", "BENTOML_"))}
    # COMFYPACK_ALLOW_LOCAL_SOURCES: the current ComfyUI line is locked from a file:// archive
    env.update(
        BENTOML_HOME=str(tmp_path / "bentoml"),
        COMFYPACK_HOME=str(home),
        BENTOML_DO_NOT_TRACK="true",
        COMFYPACK_ALLOW_LOCAL_SOURCES="1",
    )
    if os.environ.get("COMFYPACK_EXTRA_NODES_DIRS"):
        env["COMFYPACK_EXTRA_NODES_DIRS"] = os.environ["COMFYPACK_EXTRA_NODES_DIRS"]
    return env


def _comfypack(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "comfypack.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"comfypack {' '.join(args)}:\n{proc.stderr[-3000:]}"
    return proc


def test_build_a_pack_then_bentoml_serve_the_bento(tmp_path: Path) -> None:
    from comfypack.comfyui.process import free_port

    comfyui_dir = require_comfyui()
    home = tmp_path / "home"
    home.mkdir()
    wheels = _wheels(comfyui_dir)
    if wheels is not None:
        (home / "wheels").symlink_to(wheels)
    env = _env(tmp_path, home)

    pack = tmp_path / "text_tools.cpack.zip"
    _comfypack(
        "pack",
        str(EXAMPLES / "text_tools" / "workflow_api.json"),
        "--comfyui",
        str(comfyui_dir),
        "-o",
        str(pack),
        "--offline",
        env=env,
    )
    out = json.loads(_comfypack("build", str(pack), "--timeout", "120", "--json", env=env).stdout)
    assert out["built"] is True
    tag = out["tag"]
    name, version = tag.split(":")
    assert name == "text_tools"

    bento = tmp_path / "bentoml" / "bentos" / name / version
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    envs = {e["name"]: e["value"] for e in info["envs"]}
    assert envs["COMFYPACK_PACK"] == "pack/text_tools.cpack.zip"
    assert envs["COMFYPACK_TIMEOUT"] == "120"
    assert info["services"][0]["config"]["traffic"]["timeout"] == 150
    assert info["labels"]["comfyui-version"] == comfyui_version(comfyui_dir)  # 0.3.75 or 0.28.x
    for rel in (
        "service.py",
        "comfypack-bento.json",
        "pack/text_tools.cpack.zip",
        "comfypack/serve/service.py",
        "custom_nodes/comfypack_nodes/__init__.py",
    ):
        assert (bento / "src" / rel).is_file(), rel
    setup = next((bento / "env" / "docker").glob("script__*")).read_text()
    assert "comfypack.serve.bento_runtime prepare" in setup
    reqs = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "torch==" in reqs and "comfyui-frontend-package==" in reqs  # the lock's pins

    # a second build of the same thing reuses the Bento
    again = json.loads(_comfypack("build", str(pack), "--timeout", "120", "--json", env=env).stdout)
    assert again == {**out, "built": False}

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                tag,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=tmp_path,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, (
                f"bentoml serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        body = json.loads((EXAMPLES / "text_tools" / "request.json").read_text())
        r = httpx.post(f"{url}/generate", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() == {"text": "Hello Comfypack", "length": 15, "contains": True}
        bad = httpx.post(f"{url}/generate", json={"case": "nope"}, timeout=30)
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "case"
        docs = httpx.get(f"{url}/docs.json", timeout=10).json()
        body = docs["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
        assert body["example"]["case"] == "UPPERCASE"  # a pack has no request.json: the defaults
        # the service restored the pack into a workspace of its own under COMFYPACK_HOME
        workspaces = list((home / "workspaces").iterdir())
        assert len(workspaces) == 1 and (workspaces[0] / "comfyui" / "main.py").is_file()
    finally:
        stop_group(proc)
