"""comfypack.cli accepts either format: a UI-format workflow is converted (with the definitions of
the ComfyUI it names) before ``inspect`` reads it or ``serve`` hands it to the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .._helpers import EXAMPLE_NAMES, example

OBJECT_INFO: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "object_info.json").read_text()
)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_cli_inspect_takes_a_ui_workflow(monkeypatch, name):
    from click.testing import CliRunner

    import comfypack.comfyui.objectinfo as objectinfo
    from comfypack.cli import cli

    monkeypatch.setattr(objectinfo, "object_info_for", lambda src, **k: OBJECT_INFO)
    runner = CliRunner()
    api = runner.invoke(cli, ["inspect", "--json", str(example(name))], catch_exceptions=False)
    ui = runner.invoke(
        cli,
        ["inspect", "--json", str(example(name).with_name("workflow.json"))],
        catch_exceptions=False,
    )
    assert ui.exit_code == 0, ui.output
    assert json.loads(ui.stdout) == json.loads(api.stdout)


def test_cli_serve_hands_the_service_the_converted_api_file(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import comfypack.cli.serve as cli_module
    import comfypack.comfyui.objectinfo as objectinfo

    monkeypatch.setattr(objectinfo, "object_info_for", lambda src, **k: OBJECT_INFO)
    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))
    seen: dict[str, Any] = {}

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        seen.update(argv=argv, env=env)

    monkeypatch.setattr(cli_module.os, "execve", fake_execve)
    ui_path = example("image_adjust").with_name("workflow.json")
    result = CliRunner().invoke(
        cli_module.cli,
        ["serve", str(ui_path), "--comfyui-url", "http://127.0.0.1:1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    served = Path(seen["env"]["COMFYPACK_WORKFLOW"])
    assert served.name == "workflow_api.json" and served.parent.name == "image_adjust"
    assert served.is_relative_to(tmp_path / "home" / "converted")
    assert json.loads(served.read_text()) == json.loads(example("image_adjust").read_text())
