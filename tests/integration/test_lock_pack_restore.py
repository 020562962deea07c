"""Lock → pack → unpack → run on the real ComfyUI: the same workflow, reproduced byte for byte.

The acceptance round trip of issue 3. A small random-weight upscale model (spandrel's compact
ESRGAN, "SRVGGNetCompact") is written as .safetensors into ``models/upscale_models/`` of a
*copy* of the provisioned ComfyUI (the provisioned tree is never written to), and used by
ComfyPackInputImage → UpscaleModelLoader → ImageUpscaleWithModel → ComfyPackOutputImage. The
workflow runs once there; then it is locked and packed with the model served by a local HTTP
"hub" on 127.0.0.1 (it stands in for the internet: a sources file maps the model's sha256 to its
URL there), unpacked into a fresh folder with a fresh COMFYPACK_HOME (the model is fetched from
the hub and verified), and the pack is run with ``comfypack run PACK``: the output is the same
bytes. A tiny custom node in a git repo with two commits is locked at the first and restored at
exactly that commit from its ``file://`` remote. Tampered packs are refused without writing
anything. The lock's package list is the real environment (torch …): restored with --no-venv.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FileServer, require_comfyui

from comfypack.cli import cli
from comfypack.comfyui.source import comfyui_version
from comfypack.lockfile import ArchiveSource, GitSource, PackagedSource, loads

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny_compact_x2.safetensors"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}

WORKFLOW = {
    "1": {"class_type": "ComfyPackInputImage",
          "inputs": {"name": "image", "description": "The picture to upscale.", "image": "in.png"}},
    "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": MODEL}},
    "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
    "4": {"class_type": "ComfyPackOutputImage",
          "inputs": {"images": ["3", 0], "name": "upscaled", "format": "png", "quality": 95,
                     "filename_prefix": "upscaled"}},
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_comfyui(dest: Path) -> Path:
    """Our own copy of the provisioned ComfyUI (hard links where possible: we only add files)."""
    shutil.copytree(require_comfyui(), dest, copy_function=_link_or_copy, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "output", "temp", "user"))
    return dest


def _seed_wheels(home: Path) -> None:
    """Give a fresh COMFYPACK_HOME the (sha256-pinned, cached) ComfyUI source wheel, so restoring
    the packaged ComfyUI does not download it again."""
    from comfypack.comfyui.source import DEFAULT_PACKAGED
    from comfypack.config import comfypack_home

    (home / "wheels").mkdir(parents=True, exist_ok=True)
    name = f"{DEFAULT_PACKAGED.package.replace('-', '_')}-{DEFAULT_PACKAGED.version}-*.whl"
    for folder in (comfypack_home() / "wheels", require_comfyui().parent / "wheels", ROOT / ".cache" / "wheels"):
        for wheel in sorted(folder.glob(name)):
            _link_or_copy(str(wheel), str(home / "wheels" / wheel.name))
            return


def _tiny_upscale_model(path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1234)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def _noise_png(path: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)


def _tiny_node(upstream: Path) -> list[str]:
    """A git repo of a tiny custom node with two commits; returns both commit ids."""
    upstream.mkdir(parents=True)
    _git(upstream, "init", "-q")
    commits = []
    for version in (1, 2):
        (upstream / "__init__.py").write_text(
            f"# tiny custom node, version {version}\nNODE_CLASS_MAPPINGS = {{}}\nVERSION = {version}\n")
        _git(upstream, "add", "-A")
        _git(upstream, "commit", "-q", "-m", f"version {version}")
        commits.append(_git(upstream, "rev-parse", "HEAD"))
    return commits


def _comfypack(*args: str, home: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # the tiny node comes from a file:// remote: this test's packs are trusted, local ones
    env = {**os.environ, "COMFYPACK_HOME": str(home), "COMFYPACK_ALLOW_LOCAL_SOURCES": "1"}
    env.pop("COMFYPACK_COMFYUI_DIR", None)
    return subprocess.run([sys.executable, "-m", "comfypack.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def _invoke(monkeypatch: pytest.MonkeyPatch, home: Path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("COMFYPACK_HOME", str(home))
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def test_lock_pack_unpack_run_reproduces_the_output(tmp_path: Path, file_server: FileServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # -- the author's environment: a ComfyUI copy with a model, an input file and a custom node
    comfy = _copy_comfyui(tmp_path / "author" / "comfyui")
    model = comfy / "models" / "upscale_models" / MODEL
    _tiny_upscale_model(model)
    image = tmp_path / "in.png"
    _noise_png(image)
    shutil.copy(image, comfy / "input" / "in.png")  # the node's default: carried as a pack asset
    commits = _tiny_node(tmp_path / "upstream" / "tiny_node")
    node = comfy / "custom_nodes" / "tiny_node"
    _git(comfy / "custom_nodes", "clone", "-q", (tmp_path / "upstream" / "tiny_node").as_uri(), "tiny_node")
    _git(node, "checkout", "-q", commits[0])
    wf = tmp_path / "upscale" / "workflow_api.json"
    wf.parent.mkdir()
    wf.write_text(json.dumps(WORKFLOW, indent=2))
    home1 = tmp_path / "home-author"

    # -- the original run, on the author's ComfyUI
    r = _comfypack("run", str(wf), "--comfyui", str(comfy), "-i", f"image={image}",
                   "-o", str(tmp_path / "out1"), home=home1)
    assert r.returncode == 0, r.stderr[-3000:]
    original = (tmp_path / "out1" / "upscaled.png").read_bytes()
    from PIL import Image

    assert Image.open(tmp_path / "out1" / "upscaled.png").size == (64, 48)  # really upscaled ×2

    # -- lock twice: byte-identical; the model's source is the local hub
    import hashlib

    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    url = file_server.put(f"{digest}.safetensors", model.read_bytes())
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({digest: url}))
    lock_args = ["lock", str(wf), "--comfyui", str(comfy), "--sources", str(sources), "--offline"]
    code, out = _invoke(monkeypatch, home1, *lock_args, "-o", str(tmp_path / "lock1.json"))
    assert code == 0, out
    code, out = _invoke(monkeypatch, home1, *lock_args, "-o", str(tmp_path / "lock2.json"))
    assert code == 0, out
    lock_text = (tmp_path / "lock1.json").read_text()
    assert (tmp_path / "lock2.json").read_text() == lock_text
    lock = loads(lock_text)
    # make setup's ComfyUI comes from the packaged wheel, the current line from its release archive
    assert isinstance(lock.comfyui.source, (PackagedSource, ArchiveSource))
    assert lock.comfyui.version == comfyui_version(comfy)
    (m,) = lock.models
    assert (m.folder, m.path, m.sha256, m.size) == ("upscale_models", MODEL, digest, model.stat().st_size)
    assert [s.url for s in m.sources] == [url]
    tiny = {n.name: n for n in lock.custom_nodes}["tiny_node"]
    assert isinstance(tiny.source, GitSource) and tiny.source.commit == commits[0] and not tiny.dirty
    assert any(p.name == "torch" for p in lock.packages)

    # -- pack
    pack = tmp_path / "upscale.cpack.zip"
    code, out = _invoke(monkeypatch, home1, "pack", str(wf), "--comfyui", str(comfy), "--sources",
                        str(sources), "--offline", "-o", str(pack))
    assert code == 0, out
    with zipfile.ZipFile(pack) as zf:
        assert zf.read("comfypack.lock.json").decode() == lock_text
        assert "assets/in.png" in zf.namelist()
        assert not any(n.startswith("models/") for n in zf.namelist())

    # -- unpack into a fresh folder, with a fresh COMFYPACK_HOME: the model comes from the hub
    home2 = tmp_path / "home-elsewhere"
    _seed_wheels(home2)
    fresh = tmp_path / "elsewhere" / "ws"
    # the node's remote is a file:// URL: refused (one line, exit 2, nothing written) unless allowed
    code, out = _invoke(monkeypatch, home2, "unpack", str(pack), "--dir", str(fresh), "--no-venv")
    assert code == 2 and "--allow-local-sources" in out and len(out.strip().splitlines()) == 1, out
    assert not fresh.exists()
    code, out = _invoke(monkeypatch, home2, "unpack", str(pack), "--dir", str(fresh), "--no-venv",
                        "--allow-local-sources")
    assert code == 0, out
    cached = home2 / "models" / "sha256" / digest
    assert cached.read_bytes() == model.read_bytes()
    restored_model = fresh / "comfyui" / "models" / "upscale_models" / MODEL
    assert os.path.samefile(restored_model, cached)
    assert _git(fresh / "comfyui" / "custom_nodes" / "tiny_node", "rev-parse", "HEAD") == commits[0]
    assert "version 1" in (fresh / "comfyui" / "custom_nodes" / "tiny_node" / "__init__.py").read_text()
    assert (fresh / "comfyui" / "main.py").is_file() and not (fresh / "comfyui").samefile(comfy)
    code, out = _invoke(monkeypatch, home2, "unpack", str(pack), "--dir", str(fresh), "--verify")
    assert code == 0 and "matches" in out, out

    # -- run the pack: restored into $COMFYPACK_HOME/workspaces/<sha>, same output bytes
    r = _comfypack("run", str(pack), "-i", f"image={image}", "-o", str(tmp_path / "out2"), home=home2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out2" / "upscaled.png").read_bytes() == original
    workspaces = list((home2 / "workspaces").iterdir())
    assert len(workspaces) == 1
    assert _git(workspaces[0] / "comfyui" / "custom_nodes" / "tiny_node", "rev-parse", "HEAD") == commits[0]

    # -- one byte of the model changed: the lock differs, and --verify reports it
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.unlink()
    model.write_bytes(bytes(data))
    code, out = _invoke(monkeypatch, home1, *lock_args, "-o", str(tmp_path / "lock3.json"))
    assert code == 0, out
    assert (tmp_path / "lock3.json").read_text() != lock_text
    restored_model.unlink()  # a new file, not the cache's
    restored_model.write_bytes(bytes(data))
    code, out = _invoke(monkeypatch, home2, "unpack", str(pack), "--dir", str(fresh), "--verify")
    assert code == 1
    assert f"model upscale_models/{MODEL}: sha256" in out
    assert cached.read_bytes() != bytes(data)  # the cache was not touched


def _symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_tampered_packs_are_refused_without_writing_anything(tmp_path: Path, file_server: FileServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    comfy = _copy_comfyui(tmp_path / "comfyui")
    model = comfy / "models" / "upscale_models" / MODEL
    _tiny_upscale_model(model)
    wf = tmp_path / "workflow_api.json"
    wf.write_text(json.dumps(WORKFLOW))
    home = tmp_path / "home"
    _seed_wheels(home)
    good = tmp_path / "good.cpack.zip"
    code, out = _invoke(monkeypatch, home, "pack", str(wf), "--comfyui", str(comfy), "--offline",
                        "--include-models", "-o", str(good))
    assert code == 0, out
    entry = f"models/upscale_models/{MODEL}"

    def tampered(name: str, *, replace: dict[str, bytes] | None = None,
                 add: tuple[zipfile.ZipInfo | str, bytes] | None = None) -> Path:
        bad = tmp_path / f"{name}.cpack.zip"
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info, (replace or {}).get(info.filename, zin.read(info)))
            if add:
                zout.writestr(*add)
        return bad

    with zipfile.ZipFile(good) as zf:
        weights = zf.read(entry)
    flipped = bytearray(weights)
    flipped[len(flipped) // 2] ^= 1
    outside = tmp_path / "outside"
    cases = {
        "bad-model": (tampered("bad-model", replace={entry: bytes(flipped)}), "does not match the lock"),
        "dotdot": (tampered("dotdot", add=("../../outside/evil", b"x")), "escapes the target"),
        "absolute": (tampered("absolute", add=(str(outside / "abs-evil"), b"x")), "absolute path"),
        "symlink": (tampered("symlink", add=(_symlink_entry("assets/evil.png"), str(outside))),
                    "symbolic link"),
    }
    for name, (bad, why) in cases.items():
        dest = tmp_path / "targets" / name
        code, out = _invoke(monkeypatch, home, "unpack", str(bad), "--dir", str(dest), "--no-venv",
                            "--allow-local-sources")  # the current ComfyUI line is a file:// archive
        assert code == 2, (name, out)  # a bad pack is bad input
        assert why in out and "Traceback" not in out, (name, out)
        assert not dest.exists(), name
    assert not outside.exists()
    assert not (tmp_path / "targets").exists() or not any((tmp_path / "targets").iterdir())
    cache = home / "models" / "sha256"
    assert not cache.exists() or list(cache.iterdir()) == []  # the bad weights never got cached

    # the untampered pack restores (weights carried in it: no source needed)
    dest = tmp_path / "targets" / "good"
    code, out = _invoke(monkeypatch, home, "unpack", str(good), "--dir", str(dest), "--no-venv",
                        "--allow-local-sources")
    assert code == 0, out
    assert (dest / "comfyui" / "models" / "upscale_models" / MODEL).read_bytes() == weights
