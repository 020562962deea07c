"""comfypack.pack.archive: what a .cpack.zip holds, deterministic bytes, weights only when asked."""

from __future__ import annotations

import json
import zipfile

import pytest
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.errors import LockError
from comfypack.files.hashing import HashCache
from comfypack.lock.create import create_lock
from comfypack.lockfile import dumps, loads
from comfypack.pack.archive import ZIP_DATE, create_pack, find_assets
from comfypack.workflow.interface import parse_interface
from comfypack.workflow.schema import interface_document

from .._lock_helpers import MODEL_BYTES, fake_env


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))


def _lock(env):
    return create_lock(env.workflow_path, env.comfyui, resolvers=[], hash_cache=HashCache(None))


def test_pack_holds_workflow_lock_interface_assets_and_plain_nodes(tmp_path):
    env = fake_env(tmp_path)
    lock = _lock(env)
    out = create_pack(env.workflow_path, env.comfyui, tmp_path / "p.cpack.zip", lock=lock)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names == [
            "workflow_api.json",
            "comfypack.lock.json",
            "interface.json",
            "assets/in.png",
            "custom_nodes/plain_node/__init__.py",
            "custom_nodes/plain_node/data/table.txt",
        ]
        assert json.loads(zf.read("workflow_api.json")) == env.workflow
        assert zf.read("comfypack.lock.json").decode() == dumps(lock)
        assert json.loads(zf.read("interface.json")) == json.loads(
            json.dumps(interface_document(parse_interface(env.workflow)))
        )
        assert zf.read("assets/in.png") == (env.comfyui / "input/in.png").read_bytes()
        for info in zf.infolist():
            assert info.date_time == ZIP_DATE
            assert (info.external_attr >> 16) & 0o170000 == 0o100000  # regular files only
    # never weights unless asked; never git nodes (fetched at their commit) or comfypack's own
    assert not any(n.startswith("models/") for n in names)
    assert not any("tiny_node" in n or "comfypack_nodes" in n for n in names)


def test_same_inputs_give_the_same_zip_bytes(tmp_path):
    env = fake_env(tmp_path)
    a = create_pack(
        env.workflow_path,
        env.comfyui,
        tmp_path / "a.cpack.zip",
        resolvers=[],
        hash_cache=HashCache(None),
    )
    b = create_pack(
        env.workflow_path,
        env.comfyui,
        tmp_path / "b.cpack.zip",
        resolvers=[],
        hash_cache=HashCache(None),
    )
    assert a.read_bytes() == b.read_bytes()


def test_include_models_carries_verified_weights_uncompressed(tmp_path):
    env = fake_env(tmp_path)
    out = create_pack(
        env.workflow_path,
        env.comfyui,
        tmp_path / "p.cpack.zip",
        lock=_lock(env),
        include_models=True,
    )
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("models/upscale_models/tiny.safetensors")
        assert info.compress_type == zipfile.ZIP_STORED
        assert zf.read(info) == MODEL_BYTES


def test_include_models_refuses_a_model_changed_since_the_lock(tmp_path):
    env = fake_env(tmp_path)
    lock = _lock(env)
    (env.comfyui / "models/upscale_models/tiny.safetensors").write_bytes(MODEL_BYTES[::-1])
    with pytest.raises(LockError, match="changed since it was locked"):
        create_pack(
            env.workflow_path, env.comfyui, tmp_path / "p.cpack.zip", lock=lock, include_models=True
        )
    assert list(tmp_path.glob("*.cpack.zip*")) == []  # no partial file left


def test_a_lock_for_another_workflow_is_refused(tmp_path):
    env = fake_env(tmp_path)
    lock = _lock(env)
    env.workflow_path.write_text(
        json.dumps({**env.workflow, "9": {"class_type": "Note", "inputs": {}}})
    )
    with pytest.raises(LockError, match="another workflow"):
        create_pack(env.workflow_path, env.comfyui, tmp_path / "p.cpack.zip", lock=lock)


def test_changed_plain_node_since_the_lock_is_refused(tmp_path):
    env = fake_env(tmp_path)
    lock = _lock(env)
    (env.comfyui / "custom_nodes/plain_node/__init__.py").write_text("changed\n")
    with pytest.raises(LockError, match="plain_node changed"):
        create_pack(env.workflow_path, env.comfyui, tmp_path / "p.cpack.zip", lock=lock)


def test_ui_workflow_is_included_when_given(tmp_path):
    env = fake_env(tmp_path)
    ui = tmp_path / "ui.json"
    ui.write_text('{"nodes": [], "links": []}')
    out = create_pack(
        env.workflow_path, env.comfyui, tmp_path / "p.cpack.zip", lock=_lock(env), ui_workflow=ui
    )
    with zipfile.ZipFile(out) as zf:
        assert zf.read("workflow.json") == ui.read_bytes()


def test_find_assets_names_input_files_only(tmp_path):
    inp = tmp_path / "input"
    (inp / "sub").mkdir(parents=True)
    (inp / "a.png").write_bytes(b"a")
    (inp / "sub" / "b.wav").write_bytes(b"b")
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png [input]"}},
        "2": {
            "class_type": "X",
            "inputs": {
                "f": "sub/b.wav",
                "g": "../a.png",
                "h": "a.png [output]",
                "i": ["1", 0],
                "j": "missing.png",
            },
        },
    }
    assert find_assets(wf, inp) == [("a.png", inp / "a.png"), ("sub/b.wav", inp / "sub/b.wav")]


def test_cli_pack_default_name_and_existing_lock(tmp_path, monkeypatch):
    env = fake_env(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        cli, ["pack", str(env.workflow_path), "--comfyui", str(env.comfyui), "--offline"]
    )
    assert res.exit_code == 0, res.output
    made = tmp_path / "wf.cpack.zip"  # workflow_api.json in folder "wf"
    with zipfile.ZipFile(made) as zf:
        lock = loads(zf.read("comfypack.lock.json"))
    assert "no download source" in res.output
    lock_file = tmp_path / "l.json"
    lock_file.write_text(dumps(lock))
    res = CliRunner().invoke(
        cli,
        [
            "pack",
            str(env.workflow_path),
            "--comfyui",
            str(env.comfyui),
            "--lock",
            str(lock_file),
            "-o",
            str(tmp_path / "x.cpack.zip"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.cpack.zip").read_bytes() == made.read_bytes()
