"""The README's curl lines, run as written (port swapped) against served examples: the quick
start (with its expected answer) and one line per example ("curl every example").

The commands and the expected answers are parsed from README.md, so the docs cannot rot.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES, ROOT, Served, bentoml_serve

pytestmark = pytest.mark.e2e


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no block after <!-- {marker} -->"
    return m.group(1).strip()


@pytest.fixture(scope="module")
def served_text_tools(
    comfyui: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with bentoml_serve(
        EXAMPLES / "text_tools" / "workflow_api.json",
        tmp_path_factory.mktemp("logs"),
        env={"COMFYPACK_COMFYUI_URL": comfyui.url},
    ) as served:  # type: ignore[attr-defined]
        yield served


def test_readme_quickstart_curl(served_text_tools: Served) -> None:
    command = readme_block("readme-example: text_tools")
    expected = json.loads(readme_block("readme-expected: text_tools"))
    assert command.startswith("curl ") and "http://127.0.0.1:3000/generate" in command
    argv = shlex.split(command.replace("http://127.0.0.1:3000", served_text_tools.url))
    out = subprocess.run(
        [*argv, "--silent", "--show-error", "--fail-with-body"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert json.loads(out.stdout) == expected


# -- "curl every example" -----------------------------------------------------------------------

CURL_MARKER = "readme-curl"
EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "workflow_api.json").is_file())


def readme_curls() -> dict[str, str]:
    """``{example: command}`` for every ``<!-- readme-curl: NAME -->`` block of README.md."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(rf"<!-- {CURL_MARKER}: (\w+) -->\s*```bash\n(.*?)```", text, re.S)
    return {name: body.replace("\\\n", " ").strip() for name, body in found}


def _without_output_flags(argv: list[str]) -> list[str]:
    """The command without its ``-o FILE`` (the test writes the answer where it can read it)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-o", "--output"):
            skip = True
        else:
            out.append(arg)
    return out


@pytest.fixture(scope="module")
def serve_example(comfyui: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``serve_example(name)``: that example served by `comfypack serve` (attached to the session's
    ComfyUI, so each costs only a `bentoml serve` start); each stops when the module ends."""
    logs = tmp_path_factory.mktemp("curl-logs")
    served: dict[str, Served] = {}
    with contextlib.ExitStack() as stack:

        def get(name: str) -> Served:
            if name not in served:
                served[name] = stack.enter_context(
                    bentoml_serve(
                        EXAMPLES / name / "workflow_api.json",
                        logs,
                        env={"COMFYPACK_COMFYUI_URL": comfyui.url},
                    )
                )  # type: ignore[attr-defined]
            return served[name]

        yield get


def test_readme_has_a_curl_line_for_every_example() -> None:
    curls = readme_curls()
    assert sorted(curls) == EXAMPLE_NAMES
    for name, command in curls.items():
        assert command.startswith("curl ") and "\n" not in command, name
        assert "http://127.0.0.1:3000/generate" in command, name


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_readme_curl_runs_against_the_served_example(
    name: str, serve_example: Any, tmp_path: Path
) -> None:
    from comfypack.workflow.interface import FILE_KINDS, load_workflow, parse_interface

    served = serve_example(name)
    # the OpenAPI document carries the example's request.json as the request body's example
    docs = httpx.get(f"{served.url}/docs.json", timeout=10).json()
    body = docs["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"] == json.loads((EXAMPLES / name / "request.json").read_text())

    command = readme_curls()[name]
    argv = _without_output_flags(shlex.split(command.replace("http://127.0.0.1:3000", served.url)))
    answer = tmp_path / "answer"
    out = subprocess.run(
        [
            *argv,
            "--silent",
            "--show-error",
            "--fail-with-body",
            "-o",
            str(answer),
            "-w",
            "%{http_code} %{content_type}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    status, _, content_type = out.stdout.partition(" ")
    assert out.returncode == 0 and status == "200", (
        out.stderr,
        out.stdout,
        answer.read_bytes()[:500],
    )

    outputs = parse_interface(load_workflow(EXAMPLES / name / "workflow_api.json")).outputs
    if len(outputs) == 1 and outputs[0].kind in FILE_KINDS:  # one file: the file itself
        if outputs[0].kind != "file":
            assert content_type.startswith(f"{outputs[0].kind}/"), content_type
        assert answer.stat().st_size > 100
    else:  # JSON with every named output
        assert content_type.startswith("application/json"), content_type
        data = json.loads(answer.read_text())
        assert {o.name for o in outputs} <= set(data), data.keys()
