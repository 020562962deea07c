"""End to end: the official ``comfy-sdk`` (installed from the registry, a dev dependency) against a
real ``comfypack serve`` — of the image_adjust example attached to the session's ComfyUI, and of
its ``.cpack.zip`` (``comfypack pack`` → ``comfypack serve PACK``, its own restored ComfyUI) —
under the default policy (the served workflow only) and under ``--any-graph``.

The README's "Use the Comfy SDK" snippet is run exactly as written (a subprocess, in a folder with
the example's files, ``COMFY_BASE_URL`` / ``COMFY_API_KEY`` set), and its output is checked
against what ``POST /generate`` answers for the same inputs.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    EXAMPLES,
    ROOT,
    TEST_WORKFLOWS,
    Served,
    bentoml_serve,
    png_bytes,
    require_comfyui,
)

pytestmark = pytest.mark.e2e

ADJUST = EXAMPLES / "image_adjust"
KEY = "v2-e2e-key-5b0c1f"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Services:
    default: Served  # the served workflow only
    any_graph: Served  # --any-graph
    kind: str


def _pack(tmp: Path) -> Path:
    out = tmp / "image_adjust.cpack.zip"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfypack.cli",
            "pack",
            str(ADJUST / "workflow_api.json"),
            "--comfyui",
            str(require_comfyui()),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module", params=["workflow", "pack"])
def services(
    request: pytest.FixtureRequest, comfyui: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    logs = tmp_path_factory.mktemp("logs")
    env = {"COMFYPACK_API_KEY": KEY}
    if request.param == "workflow":
        target, kw = ADJUST / "workflow_api.json", {"comfyui_url": comfyui.url}
    else:
        target, kw = _pack(tmp_path_factory.mktemp("pack")), {"pack": True}
        # our own pack of this machine's ComfyUI: on the current line its source is a local archive
        env["COMFYPACK_ALLOW_LOCAL_SOURCES"] = "1"
    with (
        bentoml_serve(target, logs, env=env, **kw) as default,
        bentoml_serve(target, logs, env={**env, "COMFYPACK_V2_ANY_GRAPH": "1"}, **kw) as any_graph,
    ):
        yield Services(default, any_graph, request.param)


@pytest.fixture()
def sdk(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(served: Served, key: str | None = KEY) -> Any:
        from comfy_sdk import Comfy

        monkeypatch.setenv("COMFY_BASE_URL", served.url)
        return Comfy(api_key=key) if key else Comfy()

    return make


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- readme-comfy-sdk -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no block after <!-- readme-comfy-sdk -->"
    return m.group(1)


def rgb(data: bytes) -> tuple[tuple[int, int], list[tuple[int, ...]]]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size, list(im.convert("RGB").getdata())


def test_readme_snippet_streams_and_downloads_what_generate_answers(
    services: Services, tmp_path: Path, sdk: Any
) -> None:
    served = services.default
    work = tmp_path / "run"
    shutil.copytree(ADJUST, work / "examples" / "workflows" / "image_adjust")
    env = {**os.environ, "COMFY_BASE_URL": served.url, "COMFY_API_KEY": KEY}
    done = subprocess.run(
        [sys.executable, "-c", readme_snippet()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    lines = done.stdout.splitlines()
    statuses = [line.split()[1] for line in lines if line.startswith("status ")]
    assert statuses[-1] == "succeeded", lines
    progress = [line for line in lines if line.startswith("progress ")]
    assert any("ImageBlur" in line for line in progress), lines  # a node ComfyUI ran, live
    (saved,) = [work / line.split(" ", 1)[1] for line in lines if line.startswith("saved ")]
    # the same inputs through the typed endpoint give the same picture
    body = {"image": base64.b64encode((ADJUST / "example.png").read_bytes()).decode(), "width": 32}
    r = httpx.post(f"{served.url}/generate", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    size, pixels = rgb(saved.read_bytes())
    assert size == (32, 64)
    assert (size, pixels) == rgb(r.content)

    client = sdk(served)
    listed = list(client.list_jobs())
    assert listed and listed[0].status == "succeeded"
    job = client.jobs.get(listed[0].id)
    assert job.get_workflow().graph["3"]["inputs"]["default"] == 32
    (out,) = job.get_outputs("10")
    assert (
        out.type == "image"
        and out.content_type == "image/png"
        and out.to_bytes() == saved.read_bytes()
    )


def test_assets_dedupe_from_hash_range_delete(services: Services, sdk: Any) -> None:
    from blake3 import blake3

    served = services.default
    client = sdk(served)
    data = png_bytes((12, 10), (1, 2, 3))
    digest = "blake3:" + blake3(data).hexdigest()
    asset_id = client.assets.from_bytes(data, filename="a.png").commit()
    again = client.assets.from_bytes(data, filename="b.png")
    assert (
        again.commit() == asset_id and again.created_new is False
    )  # the SDK minted it from the hash
    base = f"{served.url}/api/v2"
    assert httpx.head(f"{base}/assets/by-hash/{digest}", headers=AUTH).status_code == 200
    assert httpx.head(f"{base}/assets/by-hash/blake3:{'0' * 64}", headers=AUTH).status_code == 404
    meta = httpx.get(f"{base}/assets/{asset_id}", headers=AUTH).json()
    assert (
        meta["hash"] == digest
        and meta["size_bytes"] == len(data)
        and meta["content_type"] == "image/png"
    )
    part = httpx.get(f"{base}/assets/{asset_id}/content", headers={**AUTH, "Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == data[:8]
    assert httpx.get(meta["url"], headers=AUTH).content == data
    # hostile input: a clear 4xx naming the field, never a host file
    assert httpx.get(f"{base}/assets/..%2f..%2fetc%2fpasswd", headers=AUTH).status_code == 404
    r = httpx.get(f"{base}/assets/not-a-uuid/content", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.post(f"{base}/assets/from-path", json={"path": "/etc/passwd"}, headers=AUTH)
    assert (
        r.status_code == 404 and r.json()["error"]["details"]["field"] == "path"
    )  # from-path is off
    r = httpx.post(f"{base}/assets/from-hash", json={"hash": "md5:abc"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "hash"
    r = httpx.post(
        f"{base}/assets",
        files={"file": ("x.png", data, "image/png")},
        data={"expected_hash": "blake3:" + "1" * 64},
        headers=AUTH,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "hash_mismatch"
    assert httpx.get(f"{base}/assets/{asset_id}").status_code == 401  # the service's key
    client.assets.delete(asset_id)
    assert httpx.get(f"{base}/assets/{asset_id}", headers=AUTH).status_code == 404


def test_default_policy_refuses_a_modified_graph(services: Services, sdk: Any) -> None:
    from comfy_sdk import InvalidWorkflow, MissingAsset

    client = sdk(services.default)
    wf = client.workflows.from_file(str(ADJUST / "workflow_api.json"))
    wf.set_input("1", "image", client.assets.from_bytes(png_bytes(), filename="p.png"))
    wf.set_input("7", "crop", "center")
    with pytest.raises(InvalidWorkflow) as info:
        client.submit(wf)
    assert info.value.http_status == 422 and "node 7 (ImageScale)" in str(info.value)
    wf.set_input("7", "crop", "disabled")
    wf.json["99"] = {"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}}
    with pytest.raises(InvalidWorkflow, match="node 99"):
        client.submit(wf)
    del wf.json["99"]
    wf.set_input("3", "default", 4096)  # over the width input's max: validated as /generate does
    with pytest.raises(InvalidWorkflow, match=r"node 3 \(width\)"):
        client.submit(wf)
    wf.set_input("3", "default", 16)
    wf.json["1"]["inputs"]["image"] = {
        "__type": "core/ASSET",
        "info": {"id": "8c4f2a57-3b51-4e0c-9a5e-0c1d2e3f4a5b"},
    }
    with pytest.raises(MissingAsset, match="node 1"):
        client.submit(wf)


def test_any_graph_runs_a_modified_graph(services: Services, sdk: Any) -> None:
    from comfy_sdk import InvalidWorkflow

    client = sdk(services.any_graph)
    wf = client.workflows.from_file(str(ADJUST / "workflow_api.json"))
    wf.set_input(
        "1", "image", client.assets.from_bytes(png_bytes((20, 20), (0, 0, 0)), filename="black.png")
    )
    wf.set_input("9", "image", ["7", 0])  # no blur: not the served graph
    for node in ("8", "5", "6"):
        wf.remove_node(node)
    job = client.run(wf, timeout=120)
    (out,) = job.get_outputs("10")
    size, pixels = rgb(out.to_bytes())
    assert size == (64, 64) and set(pixels) == {(255, 255, 255)}
    wf.json["99"] = {"class_type": "NoSuchNodeType", "inputs": {}}
    with pytest.raises(InvalidWorkflow, match=r"node 99 \(NoSuchNodeType\)"):
        client.submit(wf)
    # the default service refuses the same graph
    with pytest.raises(InvalidWorkflow):
        sdk(services.default).submit(
            client.workflows.from_json({k: v for k, v in wf.json.items() if k != "99"})
        )


def test_cancel_interrupts_a_running_job(services: Services, sdk: Any) -> None:
    """The event stream is live: the sleep node's progress arrives while it sleeps (a buffered
    stream would only end with the job), and cancelling then interrupts it in ComfyUI."""
    import json

    from comfy_sdk import Progress

    client = sdk(services.any_graph)
    graph = json.loads((TEST_WORKFLOWS / "sleep_echo.json").read_text())
    graph["2"]["inputs"]["default"] = 60.0
    submitted = time.monotonic()
    job = client.submit(client.workflows.from_json(graph))
    for event in job.events():
        if isinstance(event, Progress) and event.current_node == "3":  # ComfyPackTestSleep started
            break
    assert time.monotonic() - submitted < 45
    assert job.refresh().status == "running"
    time.sleep(1.0)  # inside the sleep node
    started = time.monotonic()
    assert job.cancel().status in ("canceling", "canceled")
    assert job.wait(timeout=30).status == "canceled"
    assert time.monotonic() - started < 30
    assert job.outputs == []


def test_any_graph_needs_an_api_key(tmp_path: Path) -> None:
    from comfypack.comfyui.process import free_port

    env = {k: v for k, v in os.environ.items() if k != "COMFYPACK_API_KEY"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfypack.cli",
            "serve",
            str(ADJUST / "workflow_api.json"),
            "--any-graph",
            "--port",
            str(free_port()),
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "needs an API key" in done.stderr, done.stderr
