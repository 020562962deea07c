"""comfypack.pack.restore: unpack a pack into a verified workspace, safely.

The fake ComfyUI is a git clone of a local upstream repo, so the restore really clones ComfyUI
and the custom node from ``file://`` remotes at the locked commits; models come from a local
HTTP server on 127.0.0.1 (``file_server`` in tests/conftest.py) into a model cache in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.errors import LockError, RestoreError
from comfypack.files.hashing import HashCache
from comfypack.lock.create import COMFYPACK_NODES, create_lock
from comfypack.lock.sources import SourcesFile
from comfypack.lockfile import Package, dumps
from comfypack.pack.archive import create_pack
from comfypack.pack.restore import WORKSPACE_MARKER, model_cache_dir, read_pack, unpack, verify

from .._lock_helpers import MODEL_BYTES, fake_env, git, rewrite_zip, sha, sources_file


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("COMFYPACK_HOME", str(h))
    # the fixtures' ComfyUI and nodes come from file:// remotes: a trusted, local pack
    monkeypatch.setenv("COMFYPACK_ALLOW_LOCAL_SOURCES", "1")
    return h


def _served_pack(tmp_path, file_server, *, name="p", lock_update=None, **kw):
    """A fake env, its model served at a local URL recorded in the lock, and its pack."""
    env = fake_env(tmp_path / f"src-{name}")
    url = file_server.put(f"{name}-tiny.safetensors", MODEL_BYTES)
    sf = sources_file(tmp_path / f"{name}-sources.json", {sha(MODEL_BYTES): url})
    lock = create_lock(
        env.workflow_path, env.comfyui, resolvers=[SourcesFile(sf)], hash_cache=HashCache(None)
    )
    if lock_update:
        lock = lock.model_copy(update=lock_update)
    pack = create_pack(
        env.workflow_path, env.comfyui, tmp_path / f"{name}.cpack.zip", lock=lock, **kw
    )
    return env, pack, lock


def _files(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.lstat().st_mtime
        for p in root.rglob("*")
        if ".git" not in p.relative_to(root).parts
    }


# -- round trip -------------------------------------------------------------------------------


def test_unpack_restores_comfyui_nodes_models_and_assets_at_the_locked_state(
    tmp_path, home, file_server
):
    env, pack, lock = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    ws = unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)

    assert ws.root == dest and ws.comfyui_dir == dest / "comfyui"
    assert ws.python == sys.executable
    assert ws.workflow_path.read_text() == json.dumps(env.workflow, indent=2) + "\n"
    assert (dest / "comfypack.lock.json").read_text() == dumps(lock)
    assert git(dest / "comfyui", "rev-parse", "HEAD") == env.comfyui_commit
    # the custom node at its FIRST commit, although its remote's HEAD is the second
    node = dest / "comfyui/custom_nodes/tiny_node"
    assert git(node, "rev-parse", "HEAD") == env.node_commits[0]
    assert "# v1" in (node / "__init__.py").read_text() and not (node / "extra.py").exists()
    assert (dest / "comfyui/custom_nodes/plain_node/data/table.txt").read_text() == "1 2 3\n"
    assert not (dest / "comfyui/custom_nodes" / COMFYPACK_NODES).exists()  # comfypack provides it
    assert (dest / "comfyui/input/in.png").read_bytes() == b"\x89PNG fake"
    # the model: fetched into the content-addressed cache, verified, linked into the workspace
    cached = model_cache_dir(home) / sha(MODEL_BYTES)
    target = dest / "comfyui/models/upscale_models/tiny.safetensors"
    assert cached.read_bytes() == MODEL_BYTES
    assert os.path.samefile(cached, target)
    assert not stat.S_IMODE(cached.stat().st_mode) & 0o222  # the cache is read-only
    assert not list(model_cache_dir(home).glob("*.partial"))
    assert json.loads((dest / WORKSPACE_MARKER).read_text())["lock_sha256"]
    assert verify(dest) == []


def test_a_second_unpack_is_a_quick_no_op(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    before = _files(dest)
    (file_server.root / "p-tiny.safetensors").unlink()  # the cache serves it now
    ws = unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert _files(dest) == before
    assert verify(ws.root) == []


def test_included_weights_restore_without_any_source(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server, include_models=True)
    (file_server.root / "p-tiny.safetensors").unlink()
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert (dest / "comfyui/models/upscale_models/tiny.safetensors").read_bytes() == MODEL_BYTES


# -- verify -----------------------------------------------------------------------------------


def test_verify_lists_every_difference_and_changes_nothing(tmp_path, home, file_server):
    env, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    model = dest / "comfyui/models/upscale_models/tiny.safetensors"
    data = bytearray(MODEL_BYTES)
    data[3] ^= 1
    model.unlink()  # break the link to the cache, then change one byte
    model.write_bytes(bytes(data))
    git(dest / "comfyui/custom_nodes/tiny_node", "checkout", "-q", env.node_commits[1])
    (dest / "comfyui/custom_nodes/plain_node/__init__.py").write_text("edited\n")
    before = _files(dest)
    diffs = verify(dest)
    assert _files(dest) == before
    text = "\n".join(diffs)
    assert f"model upscale_models/tiny.safetensors: sha256 {sha(bytes(data))}" in text
    assert f"custom node tiny_node: at commit {env.node_commits[1]}" in text
    assert "custom node plain_node: its files differ" in text
    assert len(diffs) == 3
    model.unlink()
    assert "model upscale_models/tiny.safetensors: missing" in verify(dest)


def test_cli_unpack_verify_reports_and_exits_1(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    runner = CliRunner()
    res = runner.invoke(cli, ["unpack", str(pack), "--dir", str(dest), "--no-venv"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["unpack", str(pack), "--dir", str(dest), "--verify"])
    assert res.exit_code == 0 and "matches" in res.output
    model = dest / "comfyui/models/upscale_models/tiny.safetensors"
    model.unlink()
    model.write_bytes(MODEL_BYTES[:-1] + b"!")
    res = runner.invoke(cli, ["unpack", str(pack), "--dir", str(dest), "--verify"])
    assert res.exit_code == 1
    assert (
        "1 difference(s)" in res.output and "upscale_models/tiny.safetensors: sha256" in res.output
    )
    res = runner.invoke(cli, ["unpack", str(pack), "--dir", str(tmp_path / "none"), "--verify"])
    assert res.exit_code == 2 and "no such workspace" in res.output


# -- sources ----------------------------------------------------------------------------------


def test_models_without_sources_are_one_error_naming_each(tmp_path, home, file_server):
    env = fake_env(tmp_path / "src")
    other = env.comfyui / "models/checkpoints/big.ckpt"
    other.write_bytes(b"checkpoint bytes")
    wf = {
        **env.workflow,
        "9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "big.ckpt"}},
    }
    env.workflow_path.write_text(json.dumps(wf))
    pack = create_pack(
        env.workflow_path,
        env.comfyui,
        tmp_path / "p.cpack.zip",
        resolvers=[],
        hash_cache=HashCache(None),
    )
    dest = tmp_path / "ws"
    with pytest.raises(RestoreError) as e:
        unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    msg = e.value.message
    assert "2 model(s)" in msg
    assert "checkpoints/big.ckpt" in msg and "upscale_models/tiny.safetensors" in msg
    assert "--sources FILE" in msg
    assert not dest.exists()
    # supplying them by sha256 and by file name makes it work
    sf = sources_file(
        tmp_path / "s.json",
        {
            sha(b"checkpoint bytes"): file_server.put("big.ckpt", b"checkpoint bytes"),
            "tiny.safetensors": file_server.put("tiny-by-name", MODEL_BYTES),
        },
    )
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True, sources_file=sf)
    assert verify(dest) == []


def test_a_source_with_wrong_bytes_is_refused_and_never_cached(tmp_path, home, file_server):
    bad = bytes(reversed(MODEL_BYTES))  # same size, other bytes
    _, pack, _ = _served_pack(tmp_path, file_server)
    (file_server.root / "p-tiny.safetensors").write_bytes(bad)
    dest = tmp_path / "ws"
    with pytest.raises(RestoreError, match="not the locked file"):
        unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert not dest.exists()
    assert list(model_cache_dir(home).iterdir()) == []  # neither the file nor a .partial


def test_a_second_source_is_tried_when_the_first_fails(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    (file_server.root / "p-tiny.safetensors").unlink()  # the lock's source: 404
    sf = sources_file(
        tmp_path / "s.json",
        {
            sha(MODEL_BYTES): [
                "http://127.0.0.1:1/unreachable",
                file_server.put("mirror", MODEL_BYTES),
            ]
        },
    )
    unpack(
        pack, tmp_path / "ws", venv=False, progress=False, allow_local_sources=True, sources_file=sf
    )
    assert (
        tmp_path / "ws/comfyui/models/upscale_models/tiny.safetensors"
    ).read_bytes() == MODEL_BYTES


# -- tampered packs ---------------------------------------------------------------------------


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "entry",
    [
        "../evil",
        "assets/../../evil",
        "/tmp/comfypack-abs-evil",
        "C:/evil",
        "assets\\..\\..\\evil",
        "symlink",
        "duplicate",
    ],
)
def test_unsafe_entries_are_refused_before_anything_is_written(tmp_path, home, file_server, entry):
    _, pack, _ = _served_pack(tmp_path, file_server)
    if entry == "symlink":
        add = [(_symlink_info("assets/link.png"), b"/etc/passwd")]
    elif entry == "duplicate":
        add = [("assets/IN.png", b"x")]
    else:
        add = [(entry, b"evil")]
    bad = rewrite_zip(pack, tmp_path / "bad.cpack.zip", add=add)
    dest = tmp_path / "a" / "b" / "ws"
    with pytest.raises(RestoreError, match="unsafe pack"):
        unpack(bad, dest, venv=False, progress=False, allow_local_sources=True)
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "evil").exists() and not Path("/tmp/comfypack-abs-evil").exists()
    assert not model_cache_dir(home).exists()  # refused before fetching anything


def test_a_carried_weight_that_does_not_match_the_lock_is_refused(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server, include_models=True)
    name = "models/upscale_models/tiny.safetensors"
    bad = rewrite_zip(
        pack, tmp_path / "bad.cpack.zip", replace={name: bytes(reversed(MODEL_BYTES))}
    )
    dest = tmp_path / "ws"
    with pytest.raises(RestoreError, match="pack was modified"):
        unpack(bad, dest, venv=False, progress=False, allow_local_sources=True)
    assert not dest.exists()
    assert list(model_cache_dir(home).iterdir()) == []


def test_modified_workflow_newer_lock_and_escaping_lock_paths_are_refused(
    tmp_path, home, file_server
):
    env, pack, lock = _served_pack(tmp_path, file_server)
    wf = {**env.workflow, "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x"}}}
    bad = rewrite_zip(
        pack, tmp_path / "b1.zip", replace={"workflow_api.json": json.dumps(wf).encode()}
    )
    with pytest.raises(RestoreError, match="does not match the lock's workflow"):
        read_pack(bad)
    data = json.loads(dumps(lock))
    data["lock_version"] = 2
    bad = rewrite_zip(
        pack, tmp_path / "b2.zip", replace={"comfypack.lock.json": json.dumps(data).encode()}
    )
    with pytest.raises(LockError, match="newer comfypack"):
        read_pack(bad)
    data = json.loads(dumps(lock))
    data["models"][0]["path"] = "../../../escape.safetensors"
    bad = rewrite_zip(
        pack, tmp_path / "b3.zip", replace={"comfypack.lock.json": json.dumps(data).encode()}
    )
    with pytest.raises(LockError):
        read_pack(bad)
    with pytest.raises(RestoreError, match="no comfypack.lock.json"):
        read_pack(rewrite_zip(pack, tmp_path / "b4.zip", drop=("comfypack.lock.json",)))
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(RestoreError, match="not a readable"):
        read_pack(tmp_path / "junk.zip")


def test_cli_refuses_a_tampered_pack_with_one_line_and_exit_2(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    bad = rewrite_zip(pack, tmp_path / "bad.cpack.zip", add=[("../evil", b"x")])
    res = CliRunner().invoke(cli, ["unpack", str(bad), "--dir", str(tmp_path / "ws"), "--no-venv"])
    assert res.exit_code == 2  # a bad pack is bad input
    assert "'../evil'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "ws").exists() and not (tmp_path / "evil").exists()


# -- never delete or overwrite ----------------------------------------------------------------


def test_a_foreign_folder_needs_force_and_force_only_adds(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(RestoreError, match="--force"):
        unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True, force=True)
    assert (dest / "notes.txt").read_text() == "mine"
    assert verify(dest) == []


def test_files_in_the_way_are_never_overwritten(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    model = dest / "comfyui/models/upscale_models/tiny.safetensors"
    model.unlink()
    model.write_bytes(b"someone else's weights")
    (dest / "comfyui/input/in.png").write_bytes(b"someone else's picture")
    with pytest.raises(RestoreError, match="never overwrites") as e:
        unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert "tiny.safetensors" in e.value.message and "in.png" in e.value.message
    assert model.read_bytes() == b"someone else's weights"
    assert (dest / "comfyui/input/in.png").read_bytes() == b"someone else's picture"


def test_a_workspace_of_another_lock_is_refused(tmp_path, home, file_server):
    _, pack_a, _ = _served_pack(tmp_path, file_server, name="a")
    _, pack_b, _ = _served_pack(tmp_path, file_server, name="b")  # other upstream commits
    dest = tmp_path / "ws"
    unpack(pack_a, dest, venv=False, progress=False, allow_local_sources=True)
    with pytest.raises(RestoreError, match="another lock"):
        unpack(pack_b, dest, venv=False, progress=False, allow_local_sources=True)


def test_a_failed_first_restore_removes_only_what_it_created(tmp_path, home, file_server):
    env, pack, _ = _served_pack(tmp_path, file_server)
    git(env.root / "upstream" / "tiny_node", "commit", "-q", "--allow-empty", "-m", "x")
    # the node's commit becomes unreachable: rewrite the upstream history
    upstream = env.root / "upstream" / "tiny_node"
    subprocess.run(["rm", "-rf", str(upstream / ".git")], check=True)
    git(upstream, "init", "-q")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "rewritten")
    parent = tmp_path / "keep"
    parent.mkdir()
    (parent / "other.txt").write_text("untouched")
    dest = parent / "ws"
    with pytest.raises(RestoreError, match="tiny_node"):
        unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert not dest.exists()
    assert sorted(p.name for p in parent.iterdir()) == ["other.txt"]
    assert (model_cache_dir(home) / sha(MODEL_BYTES)).is_file()  # the verified cache stays


def test_a_plain_node_missing_from_the_pack_is_an_error(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    bad = rewrite_zip(
        pack,
        tmp_path / "bad.cpack.zip",
        drop=("custom_nodes/plain_node/__init__.py", "custom_nodes/plain_node/data/table.txt"),
    )
    with pytest.raises(RestoreError, match="plain_node"):
        unpack(bad, tmp_path / "ws", venv=False, progress=False, allow_local_sources=True)
    assert not (tmp_path / "ws").exists()


# -- venv -------------------------------------------------------------------------------------


def test_the_venv_gets_exactly_the_locked_packages(tmp_path, home, file_server):
    _, pack, _ = _served_pack(
        tmp_path, file_server, lock_update={"packages": [Package(name="six", version="1.16.0")]}
    )
    dest = tmp_path / "ws"
    ws = unpack(pack, dest, venv=True, progress=False, allow_local_sources=True)
    assert ws.python == str(dest / "venv" / "bin" / "python")
    out = subprocess.run(
        [ws.python, "-c", "import six; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1.16.0"
    assert verify(dest) == []
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            ws.python,
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "six==1.17.0",
        ],
        check=True,
        capture_output=True,
    )
    assert verify(dest) == ["package six: 1.17.0 installed, locked 1.16.0"]
    unpack(
        pack, dest, venv=True, progress=False, allow_local_sources=True
    )  # puts the locked version back
    assert verify(dest) == []


# -- run / serve with a pack ------------------------------------------------------------------


def test_run_restores_a_pack_into_its_workspace(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    res = CliRunner().invoke(
        cli,
        [
            "run",
            str(pack),
            "--comfyui-url",
            "http://127.0.0.1:1",
            "-o",
            str(tmp_path / "out"),
            "--timeout",
            "5",
        ],
    )
    assert res.exit_code == 1, res.output  # nothing listens there: but the pack was restored
    digest = hashlib.sha256(pack.read_bytes()).hexdigest()[:16]
    ws = home / "workspaces" / digest
    assert verify(ws) == []
    res = CliRunner().invoke(cli, ["run", str(pack), "--comfyui", str(tmp_path)])
    assert res.exit_code == 2 and "--comfyui cannot be used with a pack" in res.output
    res = CliRunner().invoke(cli, ["run", str(tmp_path / "missing.cpack.zip")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_serve_restores_a_pack_and_serves_its_workflow_on_its_comfyui(
    tmp_path, home, file_server, monkeypatch
):
    import comfypack.cli.serve as cli_module

    _, pack, _ = _served_pack(tmp_path, file_server)
    seen: dict = {}

    def fake_execve(path, args, env):
        seen.update(path=path, args=args, env=env)
        raise SystemExit(0)

    monkeypatch.setattr(cli_module.os, "execve", fake_execve)
    res = CliRunner().invoke(cli, ["serve", str(pack), "--port", "3999"])
    assert res.exit_code == 0, res.output
    ws = home / "workspaces" / hashlib.sha256(pack.read_bytes()).hexdigest()[:16]
    assert seen["env"]["COMFYPACK_WORKFLOW"] == str(ws / "workflow_api.json")
    assert seen["env"]["COMFYPACK_COMFYUI_DIR"] == str(ws / "comfyui")
    assert verify(ws) == []


def test_a_damaged_entry_is_refused_and_leaves_nothing(tmp_path, home, file_server):
    _, pack, _ = _served_pack(tmp_path, file_server)
    stored = tmp_path / "stored.cpack.zip"
    with zipfile.ZipFile(pack) as zin, zipfile.ZipFile(stored, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_STORED)
    with zipfile.ZipFile(stored) as zf:
        info = zf.getinfo("assets/in.png")
        raw = bytearray(stored.read_bytes())
    import struct

    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    raw[info.header_offset + 30 + name_len + extra_len + 2] ^= 0xFF  # no longer matches its CRC
    stored.write_bytes(bytes(raw))
    dest = tmp_path / "ws"
    res = CliRunner().invoke(cli, ["unpack", str(stored), "--dir", str(dest), "--no-venv"])
    assert res.exit_code == 2, res.output
    assert "damaged entry" in res.output and "Traceback" not in res.output
    assert not dest.exists()


# -- what a lock now carries: single-file nodes, local changes, install scripts, the cache ------


def _rich_pack(tmp_path, file_server):
    """A fake env whose git node has local changes (an edit and a new file) and which holds a
    single-file node and an install script; its lock and pack."""
    env = fake_env(tmp_path / "src-rich")
    node = env.comfyui / "custom_nodes" / "tiny_node"
    (node / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}  # v1, edited locally\n")
    (node / "local.py").write_text("LOCAL = True\n")
    (node / "install.py").write_text("open('installed.txt', 'w').write('ran')\n")
    (env.comfyui / "custom_nodes" / "single_node.py").write_text(
        "NODE_CLASS_MAPPINGS = {}  # one file\n"
    )
    url = file_server.put("rich-tiny.safetensors", MODEL_BYTES)
    sf = sources_file(tmp_path / "rich-sources.json", {sha(MODEL_BYTES): url})
    lock = create_lock(
        env.workflow_path, env.comfyui, resolvers=[SourcesFile(sf)], hash_cache=HashCache(None)
    )
    pack = create_pack(env.workflow_path, env.comfyui, tmp_path / "rich.cpack.zip", lock=lock)
    return env, pack, lock


def test_single_file_nodes_and_local_changes_are_carried_and_verified(tmp_path, home, file_server):
    from comfypack.lock.gitstate import local_patch

    env, pack, lock = _rich_pack(tmp_path, file_server)
    nodes = {n.name: n for n in lock.custom_nodes}
    assert nodes["single_node.py"].source.type == "file"
    assert nodes["tiny_node"].patch is not None
    with zipfile.ZipFile(pack) as zf:
        assert zf.read("custom_nodes/single_node.py") == b"NODE_CLASS_MAPPINGS = {}  # one file\n"
        assert sha(zf.read("patches/tiny_node.patch")) == nodes["tiny_node"].patch.sha256

    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    restored = dest / "comfyui" / "custom_nodes"
    assert (restored / "single_node.py").read_text() == "NODE_CLASS_MAPPINGS = {}  # one file\n"
    node = restored / "tiny_node"
    assert git(node, "rev-parse", "HEAD") == env.node_commits[0]  # the locked commit …
    assert "edited locally" in (node / "__init__.py").read_text()  # … with the local changes
    assert (node / "local.py").read_text() == "LOCAL = True\n"
    assert local_patch(node) == local_patch(env.comfyui / "custom_nodes" / "tiny_node")
    assert not (node / "installed.txt").exists()  # install scripts: off by default
    assert verify(dest) == []

    (restored / "single_node.py").write_text("changed\n")
    git(node, "checkout", "--", "__init__.py")  # the local edit lost
    assert verify(dest) == [
        "custom node single_node.py: the file differs from the locked one",
        "custom node tiny_node: its local changes differ from the locked patch",
    ]
    (node / "local.py").unlink()
    (node / "install.py").unlink()  # untracked when locked: part of the patch too
    (restored / "single_node.py").unlink()
    assert verify(dest) == [
        "custom node single_node.py: missing",
        "custom node tiny_node: the locked local changes (patch) are missing",
    ]


def test_a_tampered_patch_or_single_file_node_is_refused(tmp_path, home, file_server):
    _, pack, _ = _rich_pack(tmp_path, file_server)
    with zipfile.ZipFile(pack) as zf:
        patch = zf.read("patches/tiny_node.patch")
    evil = patch.replace(b"LOCAL = True", b"LOCAL = 666!")
    bad = rewrite_zip(pack, tmp_path / "bad.cpack.zip", replace={"patches/tiny_node.patch": evil})
    res = CliRunner().invoke(cli, ["unpack", str(bad), "--dir", str(tmp_path / "w1"), "--no-venv"])
    assert res.exit_code == 2 and "patch does not match the lock" in res.output, res.output
    assert not (tmp_path / "w1").exists()
    bad = rewrite_zip(pack, tmp_path / "bad2.cpack.zip", drop=("patches/tiny_node.patch",))
    res = CliRunner().invoke(cli, ["unpack", str(bad), "--dir", str(tmp_path / "w2"), "--no-venv"])
    assert res.exit_code == 2 and "does not carry its patch" in res.output, res.output
    bad = rewrite_zip(
        pack, tmp_path / "bad3.cpack.zip", replace={"custom_nodes/single_node.py": b"import os\n"}
    )
    res = CliRunner().invoke(cli, ["unpack", str(bad), "--dir", str(tmp_path / "w3"), "--no-venv"])
    assert res.exit_code == 2 and "single_node.py in the pack does not match" in res.output, (
        res.output
    )


def test_run_install_scripts_runs_the_nodes_install_py_when_asked(tmp_path, home, file_server):
    _, pack, _ = _rich_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    res = CliRunner().invoke(
        cli, ["unpack", str(pack), "--dir", str(dest), "--no-venv", "--run-install-scripts"]
    )
    assert res.exit_code == 0, res.output
    assert (dest / "comfyui/custom_nodes/tiny_node/installed.txt").read_text() == "ran"


def test_the_model_cache_cannot_be_written_through_a_workspace_and_damage_is_refetched(
    tmp_path, home, file_server
):
    _, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    cached = model_cache_dir(home) / sha(MODEL_BYTES)
    linked = dest / "comfyui/models/upscale_models/tiny.safetensors"
    assert cached.stat().st_mode & 0o222 == 0  # the cache's file is read-only …
    if os.path.samefile(cached, linked):  # … and a hard link shares that (a reflink is a copy)
        assert linked.stat().st_mode & 0o222 == 0
    # damage the cached file in place, keeping size and mtime (root can write a read-only file)
    st = cached.stat()
    os.chmod(cached, 0o644)
    with open(cached, "r+b") as f:
        f.write(b"X")
    os.chmod(cached, 0o444)
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    other = tmp_path / "ws2"
    unpack(
        pack, other, venv=False, progress=False, allow_local_sources=True
    )  # refetched, not linked
    assert cached.read_bytes() == MODEL_BYTES
    assert (other / "comfyui/models/upscale_models/tiny.safetensors").read_bytes() == MODEL_BYTES
    copies = tmp_path / "ws3"
    res = CliRunner().invoke(
        cli, ["unpack", str(pack), "--dir", str(copies), "--no-venv", "--copy-models"]
    )
    assert res.exit_code == 0, res.output
    assert not os.path.samefile(copies / "comfyui/models/upscale_models/tiny.safetensors", cached)


def test_verify_lists_a_broken_checkout_instead_of_aborting(tmp_path, home, file_server):
    """Issue 17: a broken .git made ``unpack --verify`` raise; it is now one of the differences."""
    _, pack, _ = _served_pack(tmp_path, file_server)
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    head = dest / "comfyui/custom_nodes/tiny_node/.git/HEAD"
    head.write_text("garbage\n")
    diffs = verify(dest)
    assert len(diffs) == 1 and diffs[0].startswith(
        "custom node tiny_node: not a readable git checkout"
    )
    res = CliRunner().invoke(cli, ["unpack", str(pack), "--dir", str(dest), "--verify"])
    assert (
        res.exit_code == 1
        and "not a readable git checkout" in res.output
        and "Traceback" not in res.output
    )


def test_verify_says_when_a_lock_recorded_local_changes_it_does_not_carry(
    tmp_path, home, file_server
):
    """An older lock: ``dirty`` without a patch. The clean restore does not "match" silently."""
    env = fake_env(tmp_path / "src-old")
    url = file_server.put("old-tiny.safetensors", MODEL_BYTES)
    sf = sources_file(tmp_path / "old-sources.json", {sha(MODEL_BYTES): url})
    lock = create_lock(
        env.workflow_path, env.comfyui, resolvers=[SourcesFile(sf)], hash_cache=HashCache(None)
    )
    nodes = [
        n.model_copy(update={"dirty": True}) if n.name == "tiny_node" else n
        for n in lock.custom_nodes
    ]
    old = lock.model_copy(update={"custom_nodes": nodes})
    pack = create_pack(env.workflow_path, env.comfyui, tmp_path / "old.cpack.zip", lock=old)
    dest = tmp_path / "ws"
    unpack(pack, dest, venv=False, progress=False, allow_local_sources=True)
    assert verify(dest) == [
        "custom node tiny_node: it was locked with local changes that the lock does "
        "not carry (lock it again with this comfypack: they become a patch)"
    ]
