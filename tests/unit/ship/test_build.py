"""comfypack.ship.build: the top-level bentofile, a pack's build plan and context, the image set-up
script (run here as the image build would run it) and the service's start-up restore.

The pack comes from a fake ComfyUI that is a git clone of a local upstream repo (so the image
set-up really clones ComfyUI and the custom node from ``file://`` remotes at the locked commits);
its model is served by a local HTTP server (``file_server``) and fetched at "start-up".
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.comfyui.source import DEFAULT_PACKAGED, TORCH_PINS
from comfypack.errors import WorkflowError
from comfypack.files.hashing import HashCache
from comfypack.lock.create import create_lock
from comfypack.lock.sources import SourcesFile
from comfypack.pack.archive import create_pack
from comfypack.pack.restore import WORKSPACE_MARKER, model_cache_dir, read_pack
from comfypack.serve.bento_runtime import SETTINGS_FILE, apply_bento_settings
from comfypack.serve.workspace import restore_workspace
from comfypack.ship.bento_context import IMAGE_WORKSPACE, write_build_context
from comfypack.ship.build import BuildOptions, plan_build

from .._lock_helpers import MODEL_BYTES, fake_env, sha, sources_file

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("COMFYPACK_HOME", str(h))
    # the fixtures' ComfyUI and nodes come from file:// remotes: a trusted, local pack
    monkeypatch.setenv("COMFYPACK_ALLOW_LOCAL_SOURCES", "1")
    return h


def _pack(tmp_path, file_server=None, *, name="demo", **kw):
    env = fake_env(tmp_path / f"src-{name}")
    resolvers = []
    if file_server is not None:
        url = file_server.put(f"{name}-tiny.safetensors", MODEL_BYTES)
        resolvers = [
            SourcesFile(sources_file(tmp_path / f"{name}-sources.json", {sha(MODEL_BYTES): url}))
        ]
    lock = create_lock(
        env.workflow_path, env.comfyui, resolvers=resolvers, hash_cache=HashCache(None)
    )
    return env, create_pack(
        env.workflow_path, env.comfyui, tmp_path / f"{name}.cpack.zip", lock=lock, **kw
    )


def _files(root: Path) -> dict[str, tuple[int, float]]:
    """Every path under ``root`` with its inode and mtime; git's own index refresh (``git status``
    rewrites .git/index where it can, and skips that where it cannot) is left out."""
    return {
        str(p.relative_to(root)): (p.lstat().st_ino, p.lstat().st_mtime)
        for p in root.rglob("*")
        if ".git" not in p.relative_to(root).parts
    }


# -- the top-level bentofile.yaml ---------------------------------------------------------------


def test_top_level_bentofile_builds_a_small_bento(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYPACK_", "BENTOML_"))}
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-o", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tag = next(ln.split("__tag__:", 1)[1] for ln in proc.stdout.splitlines() if "__tag__:" in ln)
    name, version = tag.strip().split(":")
    assert name == "comfypack-example"
    bento = tmp_path / "bentoml" / "bentos" / name / version
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "service.service:ComfyPack"
    assert info["entry_service"] == "comfypack"
    assert {
        "name": "COMFYPACK_COMFYUI_DIR",
        "value": "/home/bentoml/comfyui",
        "stage": "all",
    } in info["envs"]
    assert info["labels"]["workflow"] == "image_adjust"
    route = info["schema"]["routes"][0]
    assert route["route"] == "/generate" and "image" in route["input"]["properties"]
    src = bento / "src"
    for rel in (
        "service/service.py",
        "comfypack/serve/service.py",
        "comfypack/ship/build.py",
        "comfypack/schemas/lock.schema.json",
        "custom_nodes/comfypack_nodes/__init__.py",
        "examples/workflows/image_adjust/workflow_api.json",
        "examples/workflows/image_adjust/request.json",
    ):
        assert (src / rel).is_file(), rel
    names = {p.relative_to(src).parts[0] for p in src.iterdir()}
    assert names <= {"service", "comfypack", "custom_nodes", "examples", "bentofile.yaml"}
    assert not any(p.name == "__pycache__" or p.suffix == ".pyc" for p in src.rglob("*"))
    assert list((bento / "env" / "docker").glob("script__*")), "the image set-up script is missing"
    reqs = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml" in reqs and "jsonschema" in reqs
    size = sum(p.stat().st_size for p in bento.rglob("*") if p.is_file())
    assert size < 3 * 1024 * 1024, f"the example Bento is {size} bytes"


def test_top_level_bentofile_lists_comfypacks_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    doc = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(doc["python"]["packages"]) == sorted(deps)
    assert doc["python"]["lock_packages"] is False  # no resolver run (no network) at build time
    assert (ROOT / doc["docker"]["setup_script"]).is_file()


def test_example_image_setup_pins_the_packaged_source_and_torch():
    text = (ROOT / "service" / "setup_image.sh").read_text()
    assert f"{DEFAULT_PACKAGED.package}=={DEFAULT_PACKAGED.version}" in text
    assert f"--hash=sha256:{DEFAULT_PACKAGED.sha256}" in text
    assert DEFAULT_PACKAGED.tree in text
    for pin in TORCH_PINS:
        assert pin in text
    assert os.access(ROOT / "service" / "setup_image.sh", os.X_OK)


# -- the plan -----------------------------------------------------------------------------------


def test_plan_names_settings_and_a_deterministic_version(tmp_path, home):
    _, pack = _pack(tmp_path)
    plan = plan_build(pack)
    assert plan.name == "demo" and plan.service_name == "demo"
    assert plan.settings == {
        "COMFYPACK_PACK": "pack/demo.cpack.zip",
        "COMFYPACK_SERVICE_NAME": "demo",
        "COMFYPACK_ENDPOINT": "generate",
        "COMFYPACK_TIMEOUT": "600",
        "COMFYPACK_CONCURRENCY": "2",
    }
    assert plan.envs == {**plan.settings, "COMFYPACK_WORKSPACE": IMAGE_WORKSPACE}
    assert plan.version == plan_build(pack).version and len(plan.version) == 16
    gpu = plan_build(pack, BuildOptions(gpu=2, timeout=90, workers=2))
    assert gpu.version != plan.version
    assert gpu.settings["COMFYPACK_GPU"] == "2" and gpu.settings["COMFYPACK_WORKERS"] == "2"
    assert (
        gpu.settings["COMFYPACK_TIMEOUT"] == "90" and gpu.settings["COMFYPACK_CONCURRENCY"] == "4"
    )
    named = plan_build(pack, BuildOptions(name="my-flow.v2", version="v1"))
    assert named.tag == "my-flow.v2:v1" and named.service_name == "my_flow_v2"
    with pytest.raises(WorkflowError, match="not a valid Bento name"):
        plan_build(pack, BuildOptions(name="Bad Name!"))


def test_plan_pins_the_locked_packages_and_needs_git_for_git_sources(tmp_path, home):
    _, pack = _pack(tmp_path)
    plan = plan_build(pack)
    lock = read_pack(pack).lock
    for p in lock.packages:
        assert f"{p.name}=={p.version}" in plan.requirements
    assert any(r.startswith("bentoml") for r in plan.requirements)  # comfypack's own dependencies
    assert plan.system_packages == ["git"]  # the fake ComfyUI and a node come from git
    assert plan.python_version == ".".join(lock.python.version.split(".")[:2])
    assert plan.labels["comfypack-pack-sha256"] == read_pack(pack).sha256


# -- the build context and the image set-up ----------------------------------------------------


def test_build_context_holds_service_source_nodes_pack_and_settings(tmp_path, home):
    _, pack = _pack(tmp_path, include_models=True)  # weights in the pack are not carried over
    plan = plan_build(pack)
    ctx = write_build_context(plan, tmp_path / "ctx")
    assert "from comfypack.serve.bento_service import ComfyPack" in (ctx / "service.py").read_text()
    assert (ctx / "comfypack" / "serve" / "bento_service.py").is_file()
    assert (ctx / "custom_nodes" / "comfypack_nodes" / "__init__.py").is_file()
    assert not list(ctx.rglob("__pycache__"))
    assert json.loads((ctx / SETTINGS_FILE).read_text()) == plan.settings
    with zipfile.ZipFile(ctx / "pack" / "demo.cpack.zip") as zf:
        assert not any(n.startswith("models/") for n in zf.namelist())
    assert read_pack(ctx / "pack" / "demo.cpack.zip").lock.models  # still locked, fetched at start
    assert not (ctx / "pack" / "weights").exists()
    bentofile = yaml.safe_load((ctx / "bentofile.yaml").read_text())
    assert bentofile["service"] == "service:ComfyPack" and bentofile["name"] == "demo"
    assert bentofile["python"] == {"requirements_txt": "requirements.txt", "lock_packages": False}
    assert bentofile["docker"]["setup_script"] == "setup_image.sh"
    assert bentofile["docker"]["system_packages"] == ["git"]
    assert {e["name"]: e["value"] for e in bentofile["envs"]} == plan.envs
    reqs = (ctx / "requirements.txt").read_text().splitlines()
    assert [r for r in reqs if not r.startswith("#")] == plan.requirements
    script = (ctx / "setup_image.sh").read_text()
    payload = base64.b64decode(script.split("\n__COMFYPACK_PAYLOAD__\n", 1)[1])
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        names = tar.getnames()
    assert "pack.cpack.zip" in names and "comfypack/ship/build.py" in names
    assert not any("__pycache__" in n for n in names)


def test_include_models_carries_verified_weights_next_to_the_pack(tmp_path, home):
    _, pack = _pack(tmp_path, include_models=True)
    ctx = write_build_context(plan_build(pack, BuildOptions(include_models=True)), tmp_path / "ctx")
    assert (ctx / "pack" / "weights" / sha(MODEL_BYTES)).read_bytes() == MODEL_BYTES
    # at start the weights seed the model cache: no source needed
    ws = restore_workspace(
        ctx / "pack" / "demo.cpack.zip", tmp_path / "ws", home=home, allow_local_sources=True
    )
    assert (
        ws.comfyui_dir / "models" / "upscale_models" / "tiny.safetensors"
    ).read_bytes() == MODEL_BYTES
    assert (model_cache_dir(home) / sha(MODEL_BYTES)).is_symlink()


def test_include_models_without_any_source_is_a_clear_error(tmp_path, home):
    _, pack = _pack(tmp_path)
    from comfypack.errors import RestoreError

    with pytest.raises(
        RestoreError, match="cannot include 1 model.*upscale_models/tiny.safetensors"
    ):
        write_build_context(plan_build(pack, BuildOptions(include_models=True)), tmp_path / "ctx")


def test_image_setup_restores_comfyui_and_nodes_then_start_up_only_adds_models(
    tmp_path, home, file_server
):
    env, pack = _pack(tmp_path, file_server)
    ctx = write_build_context(plan_build(pack), tmp_path / "ctx")
    workspace = tmp_path / "image" / "workspace"
    run_env = {
        **os.environ,
        "PYTHON": sys.executable,
        "COMFYPACK_WORKSPACE": str(workspace),
        "BENTO_USER": "no-such-user-here",
    }
    proc = subprocess.run(
        ["sh", str(ctx / "setup_image.sh")],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    comfy = workspace / "comfyui"
    assert (comfy / "main.py").read_text() == (env.comfyui / "main.py").read_text()
    assert (comfy / "custom_nodes" / "tiny_node" / "__init__.py").is_file()  # git, locked commit
    assert (comfy / "custom_nodes" / "plain_node" / "data" / "table.txt").is_file()  # from the pack
    assert (comfy / "input" / "in.png").is_file()
    assert (workspace / WORKSPACE_MARKER).is_file()
    assert not (comfy / "models" / "upscale_models" / "tiny.safetensors").exists()  # not baked in
    assert not (home / "models").exists()  # the image build used its own temp home

    # the service's start-up: the same pack; only the models arrive (into COMFYPACK_HOME)
    before = {k: v for k, v in _files(workspace).items() if not k.startswith("comfyui/models")}
    ws = restore_workspace(
        ctx / "pack" / "demo.cpack.zip", workspace, home=home, allow_local_sources=True
    )
    assert ws.root == workspace
    assert (comfy / "models" / "upscale_models" / "tiny.safetensors").read_bytes() == MODEL_BYTES
    assert (model_cache_dir(home) / sha(MODEL_BYTES)).is_file()
    after = {k: v for k, v in _files(workspace).items() if not k.startswith("comfyui/models")}
    assert after == before, "start-up wrote outside comfyui/models (a read-only image would fail)"


# -- inside the Bento ---------------------------------------------------------------------------


def test_bento_settings_fill_the_environment_where_it_is_unset(tmp_path, monkeypatch):
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "x.cpack.zip").write_bytes(b"zip")
    (tmp_path / SETTINGS_FILE).write_text(
        json.dumps(
            {
                "COMFYPACK_PACK": "pack/x.cpack.zip",
                "COMFYPACK_TIMEOUT": "90",
                "COMFYPACK_ENDPOINT": "run",
            }
        )
    )
    monkeypatch.setattr(os, "environ", dict(os.environ))  # whatever it sets goes with the test
    os.environ.pop("COMFYPACK_PACK", None)
    os.environ.pop("COMFYPACK_TIMEOUT", None)
    os.environ["COMFYPACK_ENDPOINT"] = "mine"
    assert apply_bento_settings(tmp_path) is True
    assert os.environ["COMFYPACK_PACK"] == str(tmp_path / "pack" / "x.cpack.zip")
    assert os.environ["COMFYPACK_TIMEOUT"] == "90"
    assert os.environ["COMFYPACK_ENDPOINT"] == "mine"  # the environment wins
    assert apply_bento_settings(tmp_path / "elsewhere") is False


def test_serve_config_from_a_pack(tmp_path, home, monkeypatch):
    from comfypack.serve.service import ServeConfig

    _, pack = _pack(tmp_path)
    for key in ("COMFYPACK_WORKFLOW", "COMFYPACK_COMFYUI_URL", "COMFYPACK_COMFYUI_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COMFYPACK_PACK", str(pack))
    monkeypatch.setenv("COMFYPACK_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("COMFYPACK_GPU", "1")
    monkeypatch.setenv("COMFYPACK_CONCURRENCY", "3")
    config = ServeConfig.from_env()
    assert config.pack == pack and config.workflow == pack
    assert config.comfyui_dir is None and config.comfyui_url is None  # the pack brings its ComfyUI
    assert config.workspace == tmp_path / "ws"
    assert (config.gpu, config.concurrency) == (1, 3)


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_build_refuses_a_workflow_file(tmp_path):
    wf = tmp_path / "workflow_api.json"
    wf.write_text("{}")
    result = CliRunner().invoke(cli, ["build", str(wf)])
    assert result.exit_code == 2
    assert "not a .cpack.zip" in result.output


def test_build_flags_are_spelled_once_and_round_trip_through_the_cli(tmp_path):
    """deploy's README prints the `comfypack build` line from BuildOptions.to_args(): parsing it
    with the real command gives the same options back (a renamed flag fails here)."""
    from dataclasses import fields

    from comfypack.cli._bento import _options
    from comfypack.cli.build import build_cmd
    from comfypack.ship.build import BUILD_FLAGS

    assert {f.name for f in fields(BuildOptions)} == set(BUILD_FLAGS)
    assert BuildOptions().to_args() == []
    opts = BuildOptions(
        name="my_flow",
        version="v1",
        gpu=2,
        timeout=90.5,
        concurrency=3,
        workers=2,
        endpoint="run",
        include_models=True,
    )
    pack = tmp_path / "my_flow.cpack.zip"
    pack.write_bytes(b"PK")
    p = build_cmd.make_context("build", [str(pack), *opts.to_args()]).params
    assert (
        _options(
            p["bento_name"],
            p["bento_version"],
            p["gpu"],
            p["timeout"],
            p["concurrency"],
            p["workers"],
            p["endpoint"],
            p["include_models"],
        )
        == opts
    )


def test_a_bento_gets_the_s3_extra_but_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 (the ``s3`` extra) goes into a Bento: its service may be given a bucket at deploy
    time; the ``dev`` extra's tools do not."""
    from importlib import metadata

    from comfypack.ship.build import _own_requirements

    monkeypatch.setattr(
        metadata,
        "requires",
        lambda name: [
            "bentoml<1.5,>=1.4.30",
            'boto3>=1.34; extra == "s3"',
            'boto3>=1.34; extra == "dev"',
            'moto[server]>=5; extra == "dev"',
            "pytest>=8; extra == 'dev'",
        ],
    )
    assert _own_requirements() == ["bentoml<1.5,>=1.4.30", "boto3>=1.34"]
