"""comfypack.comfyui.objectinfo: node definitions from a running ComfyUI, or from a tree (started once,
then cached by what decides the node set)."""

from __future__ import annotations

import http.server
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import http_server

import comfypack.comfyui.process as process
from comfypack.comfyui import objectinfo
from comfypack.errors import ComfyUIUnavailable

INFO = {"EmptyImage": {"input": {"required": {}}, "output": ["IMAGE"], "name": "EmptyImage"}}


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(INFO).encode()
            self.send_response(200 if self.path == "/object_info" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    with http_server(Handler) as url:
        yield url


def test_a_url_is_asked_directly(server: str) -> None:
    assert objectinfo.object_info_for(server) == INFO


def test_an_unreachable_url_says_so() -> None:
    with pytest.raises(ComfyUIUnavailable, match="is ComfyUI running there"):
        objectinfo.fetch_object_info("http://127.0.0.1:9", timeout=2)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str) -> dict[str, Any]:
    """A fake ComfyUI tree whose 'process' is the local server; counts starts."""
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes" / "pack").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "custom_nodes" / "pack" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    starts: list[Path] = []

    class FakeProcess:
        def __init__(self, comfyui_dir: Path, **kw: Any) -> None:
            self.url = server
            starts.append(Path(comfyui_dir))

        def __enter__(self) -> FakeProcess:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(process, "ComfyUIProcess", FakeProcess)
    monkeypatch.delenv("COMFYPACK_EXTRA_NODES_DIRS", raising=False)
    return {"dir": comfy, "starts": starts, "cache": tmp_path / "cache"}


def test_a_tree_is_started_once_then_cached(tree: dict[str, Any]) -> None:
    assert objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"]) == INFO
    assert objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"]) == INFO
    assert len(tree["starts"]) == 1
    assert len(list(tree["cache"].glob("object_info-*.json"))) == 1


def test_changed_custom_nodes_invalidate_the_cache(tree: dict[str, Any]) -> None:
    objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"])
    init = tree["dir"] / "custom_nodes" / "pack" / "__init__.py"
    stat = init.stat()
    os.utime(init, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"])
    (tree["dir"] / "custom_nodes" / "other").mkdir()
    (tree["dir"] / "custom_nodes" / "other" / "nodes.py").write_text("x = 1\n")
    objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"])
    assert len(tree["starts"]) == 3


def test_refresh_ignores_the_cache(tree: dict[str, Any]) -> None:
    objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"])
    objectinfo.object_info_for(tree["dir"], cache_dir=tree["cache"], refresh=True)
    assert len(tree["starts"]) == 2
