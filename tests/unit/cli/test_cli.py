"""comfypack.cli with click's CliRunner: inspect, run (caller errors before ComfyUI starts), serve."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.workflow.interface import load_workflow, parse_interface
from comfypack.workflow.schema import interface_document

from .._helpers import EXAMPLE_NAMES, example, inp


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result) -> str:
    """The CLI's error: exactly one non-empty line on stderr, and no traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_inspect_json_prints_the_interface_document(runner, name):
    result = invoke(runner, "inspect", "--json", str(example(name)))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads(
        json.dumps(interface_document(parse_interface(load_workflow(example(name)))))
    )
    assert set(doc) == {"input_schema", "output_schema", "inputs", "outputs"}


def test_inspect_table(runner):
    result = invoke(runner, "inspect", str(example("image_adjust")))
    assert result.exit_code == 0, result.output
    for text in ("upscale_method", "8 .. 2048", "bilinear", "outputs", "GenerateInput"):
        assert text in result.stdout, text


def test_inspect_bad_workflow_exits_2_with_one_line(runner, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"1": inp("Int", "width", default=1), "2": inp("Int", "width", default=2)})
    )
    result = invoke(runner, "inspect", str(path))
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "input name 'width' is already used" in line
    assert result.stdout == ""


def test_inspect_several_problems_lists_each(runner, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"1": inp("Int", "a", default=9, max=1), "2": inp("Int", "class", default=0)})
    )
    result = invoke(runner, "inspect", "--json", str(path))
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: the workflow's interface is invalid")
    assert lines[1].startswith("  - a: ") and lines[2].startswith("  - class: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"nodes": [], "links": []}', "UI-format"),
        ("[1, 2]", "JSON object of nodes"),
    ],
)
def test_inspect_unusable_files(runner, tmp_path, content, needle):
    path = tmp_path / "wf.json"
    path.write_text(content)
    result = invoke(runner, "inspect", str(path))
    assert result.exit_code == 2
    assert needle in one_line_error(result)


def test_inspect_missing_file(runner, tmp_path):
    result = invoke(runner, "inspect", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "no such file" in one_line_error(result)


# -- run: every caller error is found before any ComfyUI is started ------------------------------
# `--comfyui /nonexistent` would fail (exit 1, "not a ComfyUI tree") if it got that far.


def test_run_with_valid_inputs_would_start_comfyui(runner, tmp_path):
    """The control: valid inputs do get as far as starting ComfyUI (and fail there, exit 1)."""
    result = invoke(
        runner,
        "run",
        str(example("text_tools")),
        "--input",
        "text=hi",
        "--comfyui",
        "/nonexistent",
        "-o",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 1
    assert "not a ComfyUI tree" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--input", "nope=1"], "nope: unknown field"),
        (["--input", "case=shout"], "case: must be one of"),
        (["--input", "case_sensitive=maybe"], "case_sensitive: must be of type boolean"),
        (["--input", "suffix=" + "x" * 65], "suffix"),
        (["--input", "text"], "use NAME=VALUE"),
    ],
)
def test_run_bad_input_exits_2_before_starting_comfyui(runner, tmp_path, args, needle):
    result = invoke(
        runner,
        "run",
        str(example("text_tools")),
        *args,
        "--comfyui",
        "/nonexistent",
        "-o",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "not a ComfyUI tree" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "image: is required"),
        (["--input", "image=/no/such/file.png"], "no such file"),
        (["--input", "width=abc"], "width: must be of type integer"),
        (["--input", "width=4096"], "width"),
    ],
)
def test_run_bad_image_inputs_exit_2(runner, tmp_path, args, needle):
    result = invoke(
        runner,
        "run",
        str(example("image_adjust")),
        *args,
        "--comfyui",
        "/nonexistent",
        "-o",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert "not a ComfyUI tree" not in result.stderr


def test_run_unreadable_image_file_exits_2(runner, tmp_path):
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"this is not a png")
    result = invoke(
        runner,
        "run",
        str(example("image_adjust")),
        "--input",
        f"image=@{bogus}",
        "--comfyui",
        "/nonexistent",
        "-o",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 2
    assert "image: is not a readable image" in result.stderr


# -- serve ----------------------------------------------------------------------------------------


def test_serve_a_missing_pack_exits_with_a_clear_message(runner, tmp_path):
    result = invoke(runner, "serve", str(tmp_path / "my.cpack.zip"))
    assert result.exit_code == 2
    assert "my.cpack.zip: no such file" in one_line_error(result)


def test_serve_a_bad_workflow_fails_before_bentoml(runner, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"1": inp("Choice", "mode", options="", default="")}))
    result = invoke(runner, "serve", str(path), "--comfyui", "/nonexistent")
    assert result.exit_code == 2
    assert "Choice has no options" in one_line_error(result)


def test_help_lists_the_commands(runner):
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("comfyui", "inspect", "run", "serve"):
        assert command in result.stdout


def test_run_file_input_given_as_a_path_keeps_its_extension(tmp_path):
    import asyncio

    from comfypack.cli.run import _parse_inputs
    from comfypack.comfyui.runner import WorkflowRunner

    from .._helpers import png_bytes

    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "pic.png").write_bytes(png_bytes())
    wf = load_workflow(example("image_mask_text"))
    interface = parse_interface(wf)
    body = _parse_inputs(
        interface, (f"attachment=@{tmp_path / 'notes.txt'}", f"image={tmp_path / 'pic.png'}")
    )
    request = asyncio.run(WorkflowRunner(wf, interface).prepare(body))
    assert request.files["image"].filename == "image.png"
    assert request.files["attachment"].filename == "attachment.txt"


# -- serve: start-up problems are one line and exit 2, before bentoml runs ------------------------


def _fake_comfyui(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    return comfy


def test_serve_refuses_a_folder_that_is_not_comfyui(runner, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"1": inp("Int", "n", default=1)}))
    (tmp_path / "empty").mkdir()
    result = invoke(runner, "serve", str(path), "--comfyui", str(tmp_path / "empty"), "--port", "0")
    assert result.exit_code == 2
    assert "is not a ComfyUI tree" in one_line_error(result)


def test_serve_names_a_missing_model_before_starting(runner, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(
        json.dumps(
            {
                "1": inp("Int", "n", default=1),
                "4": {
                    "class_type": "CheckpointLoaderSimple",
                    "inputs": {"ckpt_name": "sd15.safetensors"},
                },
            }
        )
    )
    result = invoke(
        runner, "serve", str(path), "--comfyui", str(_fake_comfyui(tmp_path)), "--port", "0"
    )
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "sd15.safetensors (node 4 CheckpointLoaderSimple, input ckpt_name)" in line
    assert "Searched" in line


def test_serve_refuses_a_port_in_use(runner, tmp_path):
    import socket

    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"1": inp("Int", "n", default=1)}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke(
            runner,
            "serve",
            str(path),
            "--comfyui",
            str(_fake_comfyui(tmp_path)),
            "--port",
            str(port),
        )
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--api-key-env", "COMFYPACK_TEST_UNSET_KEY"], "is empty or unset"),
        (["--api-key-file", "/nonexistent/key"], "cannot read it"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_serve_flag_problems(runner, tmp_path, args, message):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"1": inp("Int", "n", default=1)}))
    result = invoke(
        runner, "serve", str(path), "--comfyui", str(_fake_comfyui(tmp_path)), "--port", "0", *args
    )
    assert result.exit_code == 2
    assert message in (result.stderr or result.output)


def test_serve_settings_from_flags():
    from comfypack.cli.serve import _serve_settings

    assert _serve_settings(
        timeout=30.0,
        workers=2,
        pipeline=None,
        max_queue=0,
        warmup=False,
        max_upload_bytes=None,
        api_key="k",
    ) == {
        "COMFYPACK_TIMEOUT": "30",
        "COMFYPACK_WORKERS": "2",
        "COMFYPACK_MAX_QUEUE": "0",
        "COMFYPACK_WARMUP": "0",
        "COMFYPACK_API_KEY": "k",
    }


def test_service_state_dirs_are_per_address(monkeypatch, tmp_path):
    from comfypack.config import service_state_dir

    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path))
    assert service_state_dir("127.0.0.1", 3000) == tmp_path / "services" / "127.0.0.1-3000"
    assert service_state_dir("127.0.0.1", 3001) != service_state_dir("127.0.0.1", 3000)
    assert service_state_dir("::1", 3000).parent == tmp_path / "services"


def test_version_json_lists_commands_and_their_options(runner):
    from comfypack import __version__

    plain = runner.invoke(cli, ["version"])
    assert plain.exit_code == 0 and plain.output.strip() == __version__
    result = runner.invoke(cli, ["version", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["version"] == __version__
    commands = data["commands"]
    assert "--json" in commands["build"] and "--json" in commands["deploy"]
    assert "--dry-run" in commands["deploy"] and "--comfyui" in commands["nodes install"]
    assert "comfyui install" in commands and "nodes" not in commands  # groups are walked
