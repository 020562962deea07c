"""The v2 app (comfypack.serve.v2) over the service's real WorkflowEngine (its pool attached to a real headless ComfyUI, served by
a real uvicorn on 127.0.0.1 and driven by the real ``comfy-sdk`` (and plain HTTP for the edges).

The service wiring (BentoML mount, auth, `comfypack serve`) is covered by tests/e2e/test_comfy_v2.py.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES, png_bytes

pytestmark = pytest.mark.integration

ADJUST = EXAMPLES / "image_adjust" / "workflow_api.json"


@contextlib.contextmanager
def v2_server(
    comfyui_url: str, workflow: Path, state: Path, *, any_graph: bool = False
) -> Iterator[str]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from comfypack.comfyui.process import free_port
    from comfypack.serve.engine import ServeConfig, WorkflowEngine, load_served
    from comfypack.serve.v2 import V2Settings, create_app

    config = ServeConfig(workflow=workflow, comfyui_url=comfyui_url, timeout=120)
    engine = WorkflowEngine(config, *load_served(config))  # the service's own engine, attached

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await engine.start()
        yield
        await engine.stop()

    v2 = create_app(
        V2Settings(state_dir=state, any_graph=any_graph, has_api_key=any_graph),
        lambda: engine,
        ready=engine.readiness,
    )
    app = Starlette(routes=[Mount("/api/v2", app=v2)], lifespan=lifespan)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture()
def sdk(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(base: str) -> Any:
        from comfy_sdk import Comfy

        monkeypatch.setenv("COMFY_BASE_URL", base)
        monkeypatch.delenv("COMFY_API_KEY", raising=False)
        return Comfy()

    return make


def _pixels(data: bytes) -> tuple[tuple[int, int], list[tuple[int, ...]]]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size, list(im.convert("RGB").getdata())


def test_sdk_runs_the_served_workflow(comfyui: Any, tmp_path: Path, sdk: Any) -> None:
    from comfy_sdk import Progress, StatusChange

    with v2_server(comfyui.url, ADJUST, tmp_path) as base:
        client = sdk(base)
        wf = client.workflows.from_file(str(ADJUST))
        src = tmp_path / "in.png"
        src.write_bytes(png_bytes((40, 40), (10, 100, 200)))
        asset = client.assets.from_file(str(src))
        wf.set_input("1", "image", asset)
        wf.set_input("3", "default", 24)
        wf.set_input("4", "default", 16)
        job = client.submit(wf)
        seen = [ev for ev in job.events()]
        assert any(isinstance(e, Progress) for e in seen)
        assert isinstance(seen[-1], StatusChange) and seen[-1].status == "succeeded"
        job = job.result()
        (out,) = job.get_outputs("10")
        assert (
            out.type == "image"
            and out.content_type == "image/png"
            and out.name == "image_00001_.png"
        )
        size, px = _pixels(out.to_bytes())
        assert size == (24, 16)
        # blur of a flat colour is the colour; inverted
        assert all(max(abs(a - b) for a, b in zip(p, (245, 155, 55), strict=True)) <= 2 for p in px)
        # the same bytes again: a dedup hit, the same asset
        again = client.assets.from_file(str(src))
        assert again.commit() == asset.id and again.created_new is False


def test_modified_graph_refused_by_default(comfyui: Any, tmp_path: Path, sdk: Any) -> None:
    from comfy_sdk import ComfyError

    with v2_server(comfyui.url, ADJUST, tmp_path) as base:
        client = sdk(base)
        wf = client.workflows.from_file(str(ADJUST))
        wf.set_input("8", "sigma", 3.0)  # a setting off comfypack's input nodes... linked: refused
        with pytest.raises(ComfyError) as info:
            client.submit(wf)
        assert info.value.http_status == 422 and "node 8" in str(info.value)
        wf = client.workflows.from_file(str(ADJUST))
        wf.set_input("3", "default", 4096)  # over the input's max
        r = httpx.post(f"{base}/api/v2/jobs", json={"workflow": wf.json}, timeout=30)
        assert r.status_code == 422
        fields = {f["node_id"]: f for f in r.json()["error"]["details"]["fields"]}
        # the width over its max, and the image input left as served (a file input is required)
        assert set(fields) == {"1", "3"} and fields["3"]["input"] == "width"
        assert "node 3 (width)" in r.json()["error"]["message"]


def test_any_graph_runs_and_unknown_types_refused(comfyui: Any, tmp_path: Path, sdk: Any) -> None:
    from comfy_sdk import InvalidWorkflow

    with v2_server(comfyui.url, ADJUST, tmp_path, any_graph=True) as base:
        client = sdk(base)
        wf = client.workflows.from_file(str(ADJUST))
        src = tmp_path / "in.png"
        src.write_bytes(png_bytes((20, 20), (0, 0, 0)))
        wf.set_input("1", "image", client.assets.from_file(str(src)))
        wf.set_input("9", "image", ["7", 0])  # skip the blur: not the served graph
        wf.json.pop("8")
        wf.json.pop("5")
        wf.json.pop("6")
        job = client.run(wf)
        (out,) = job.get_outputs("10")
        size, px = _pixels(out.to_bytes())
        assert size == (64, 64) and set(px) == {(255, 255, 255)}
        wf.json["99"] = {"class_type": "NoSuchNode", "inputs": {}}
        with pytest.raises(InvalidWorkflow) as info:
            client.submit(wf)
        assert info.value.http_status == 422 and "node 99 (NoSuchNode)" in str(info.value)
