"""The README's quick-start curl line, run as written (port swapped) against a served example.

The command and its expected answer are parsed from README.md, so the docs cannot rot.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator

import pytest
from conftest import EXAMPLES, ROOT, Served, bentoml_serve

pytestmark = pytest.mark.e2e


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no block after <!-- {marker} -->"
    return m.group(1).strip()


@pytest.fixture(scope="module")
def served_text_tools(comfyui: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with bentoml_serve(EXAMPLES / "text_tools" / "workflow_api.json", tmp_path_factory.mktemp("logs"),
                       env={"COMFYPACK_COMFYUI_URL": comfyui.url}) as served:  # type: ignore[attr-defined]
        yield served


def test_readme_quickstart_curl(served_text_tools: Served) -> None:
    command = readme_block("readme-example: text_tools")
    expected = json.loads(readme_block("readme-expected: text_tools"))
    assert command.startswith("curl ") and "http://127.0.0.1:3000/generate" in command
    argv = shlex.split(command.replace("http://127.0.0.1:3000", served_text_tools.url))
    out = subprocess.run([*argv, "--silent", "--show-error", "--fail-with-body"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    assert json.loads(out.stdout) == expected
