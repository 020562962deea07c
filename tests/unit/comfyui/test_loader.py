"""comfypack.comfyui.loader: :func:`load_any_workflow` reads either format, converting UI format
with the node definitions (and mirroring the frontend) of the ComfyUI it is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfypack.comfyui.loader import load_any_workflow
from comfypack.errors import WorkflowError

from .._helpers import example
from ..workflow.test_uiformat import Graph, _interpreter, fake_comfyui, g_muted_current

DATA = Path(__file__).resolve().parents[1] / "data"
OBJECT_INFO: dict[str, Any] = json.loads((DATA / "object_info.json").read_text())
OBJECT_INFO_CURRENT: dict[str, Any] = json.loads((DATA / "object_info_0.28.2.json").read_text())


def test_load_any_workflow_takes_either_format(monkeypatch):
    import comfypack.comfyui.objectinfo as objectinfo

    def no_comfyui(*a: Any, **k: Any) -> None:
        raise AssertionError("object_info was given: nothing may start ComfyUI")

    monkeypatch.setattr(objectinfo, "object_info_for", no_comfyui)
    api_path = example("text_tools")
    api = json.loads(api_path.read_text())
    assert load_any_workflow(api_path) == api
    assert load_any_workflow(api_path.with_name("workflow.json"), object_info=OBJECT_INFO) == api


def test_load_any_workflow_asks_the_given_comfyui_for_definitions(monkeypatch):
    import comfypack.comfyui.objectinfo as objectinfo

    asked: list[Any] = []
    monkeypatch.setattr(
        objectinfo, "object_info_for", lambda src, **k: asked.append(src) or OBJECT_INFO
    )
    ui_path = example("text_tools").with_name("workflow.json")
    assert load_any_workflow(ui_path, comfyui_url="http://127.0.0.1:1") == json.loads(
        example("text_tools").read_text()
    )
    assert asked == ["http://127.0.0.1:1"]


def test_load_any_workflow_mirrors_the_frontend_that_comfyui_serves(
    monkeypatch, tmp_path: Path
) -> None:
    """A muted node feeding a widget: frontend 1.32.9 drops the input, newer ones keep the widget's
    value. load_any_workflow converts as the frontend of the ComfyUI it reads definitions from."""
    import comfypack.comfyui.objectinfo as objectinfo

    monkeypatch.setattr(objectinfo, "object_info_for", lambda src, **k: OBJECT_INFO_CURRENT)
    ui = g_muted_current().ui()
    for served, width in (("1.32.9", None), ("1.45.21", 64)):
        system = {
            "required_frontend_version": "1.30.0",
            "argv": ["main.py"],
            "comfy_package_versions": [{"name": "comfyui-frontend-package", "installed": served}],
        }
        with fake_comfyui(system) as url:
            assert load_any_workflow(ui, comfyui_url=url)["2"]["inputs"].get("width") == width, (
                served
            )
    # a tree: the package installed in the interpreter that runs it
    old = _interpreter(tmp_path, "python-0.3.75", "echo 1.32.9")
    assert "width" not in load_any_workflow(ui, comfyui_dir=tmp_path, python=old)["2"]["inputs"]
    new = _interpreter(tmp_path, "python-0.28.2", "echo 1.45.21")
    assert load_any_workflow(ui, comfyui_dir=tmp_path, python=new)["2"]["inputs"]["width"] == 64
    # said outright; unknown: the newest
    assert (
        "width"
        not in load_any_workflow(ui, comfyui_dir=tmp_path, python=new, frontend="1.32.9")["2"][
            "inputs"
        ]
    )
    broken = _interpreter(tmp_path, "python-broken", "exit 1")
    assert load_any_workflow(ui, comfyui_dir=tmp_path, python=broken)["2"]["inputs"]["width"] == 64


def test_load_any_workflow_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text('{"nodes": [], "links": []}')
    with pytest.raises(WorkflowError, match="empty.json: this UI-format workflow has no nodes"):
        load_any_workflow(empty)
    g = Graph()
    g.node(1, "FancyLoader", [], outputs=["IMAGE"])
    g.node(2, "SaveImage", ["x"])
    g.link(1, 0, 2, "images", "IMAGE")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(g.ui()))
    with pytest.raises(
        WorkflowError, match=r"bad.json: the workflow uses 1 node type\(s\).*FancyLoader"
    ):
        load_any_workflow(bad, object_info=OBJECT_INFO)
