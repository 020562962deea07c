"""Serving straight from a UI-format workflow (what ComfyUI's Save writes): `comfypack serve
workflow.json` converts it once with the node definitions of the ComfyUI it will run on, and
serves the result like the API-format file."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, bentoml_serve

pytestmark = pytest.mark.e2e


def test_serve_an_example_from_its_ui_workflow(tmp_path: Path) -> None:
    ui = EXAMPLES / "text_tools" / "workflow.json"
    assert '"links"' in ui.read_text()  # really the UI format
    with bentoml_serve(ui, tmp_path, env={"COMFYPACK_HOME": str(tmp_path / "home")}) as served:
        r = httpx.post(
            f"{served.url}/generate",
            timeout=120,
            json={
                "text": "Hello",
                "suffix": " comfypack",
                "case": "Title Case",
                "needle": "Comfy",
                "case_sensitive": True,
            },
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"text": "Hello Comfypack", "length": 15, "contains": True}
        schema = httpx.get(f"{served.url}/docs.json", timeout=30).json()
        assert "/generate" in schema["paths"]
    converted = list((tmp_path / "home" / "converted").glob("*/text_tools/workflow_api.json"))
    assert len(converted) == 1
    assert list((tmp_path / "home" / "cache").glob("object_info-*.json")), "node definitions cached"
