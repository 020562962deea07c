"""Builders for the lock / pack / restore unit tests: small fake ComfyUI trees, git repos, packs.

A fake ComfyUI is a folder with ``main.py`` and ``comfyui_version.py`` — as a clone of a local
"upstream" git repo (so a restore can fetch it from a ``file://`` remote), or with the marker
``comfypack comfyui install`` writes for the packaged source.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

MODEL_BYTES = b"fake upscale weights " * 50
CKPT_BYTES = b"fake checkpoint " * 40


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_repo(path: Path, commits: list[dict[str, str]]) -> list[str]:
    """A git repo at ``path`` with one commit per dict of files; returns the commit ids."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    ids = []
    for i, files in enumerate(commits):
        for rel, text in files.items():
            f = path / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {i}")
        ids.append(git(path, "rev-parse", "HEAD"))
    return ids


def clone(url: str, dest: Path, commit: str | None = None) -> None:
    git(dest.parent, "clone", "-q", url, str(dest))
    if commit:
        git(dest, "checkout", "-q", commit)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


COMFYUI_FILES = {
    "main.py": "print('a fake ComfyUI')\n",
    "comfyui_version.py": '__version__ = "0.3.75"\n',
    ".gitignore": "/models/\n/custom_nodes/\n/input/\n/output/\n/extra_model_paths.yaml\n",
}

NODE_V1 = {"__init__.py": "NODE_CLASS_MAPPINGS = {}  # v1\n"}
NODE_V2 = {"__init__.py": "NODE_CLASS_MAPPINGS = {}  # v2\n", "extra.py": "X = 2\n"}


@dataclass
class FakeEnv:
    root: Path
    comfyui: Path
    comfyui_commit: str | None
    node_commits: list[str]
    workflow_path: Path
    workflow: dict[str, Any]


def workflow_doc(model: str = "tiny.safetensors") -> dict[str, Any]:
    return {
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "3": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }


def fake_env(
    root: Path, *, as_git: bool = True, git_node: bool = True, tree_node: bool = True
) -> FakeEnv:
    """A fake ComfyUI at ``root/comfyui`` with one model, one input file, a git custom node at
    the first of its two commits and a plain-folder custom node, plus a workflow using them."""
    root.mkdir(parents=True, exist_ok=True)
    comfy = root / "comfyui"
    commit = None
    if as_git:
        (commit,) = make_repo(root / "upstream" / "comfyui", [COMFYUI_FILES])
        clone((root / "upstream" / "comfyui").as_uri(), comfy)
    else:
        from comfypack.comfyui.source import DEFAULT_PACKAGED

        comfy.mkdir()
        for rel, text in COMFYUI_FILES.items():
            (comfy / rel).write_text(text)
        (comfy / ".comfypack-source.json").write_text(
            json.dumps({"source": DEFAULT_PACKAGED.describe(), "comfyui_version": "0.3.75"})
        )
    (comfy / "models" / "upscale_models").mkdir(parents=True)
    (comfy / "models" / "upscale_models" / "tiny.safetensors").write_bytes(MODEL_BYTES)
    (comfy / "models" / "checkpoints").mkdir()
    (comfy / "models" / "configs").mkdir()
    (comfy / "models" / "configs" / "v1-inference.yaml").write_text("model: {}\n")
    (comfy / "input").mkdir()
    (comfy / "input" / "in.png").write_bytes(b"\x89PNG fake")
    (comfy / "custom_nodes").mkdir()
    node_commits: list[str] = []
    if git_node:
        node_commits = make_repo(root / "upstream" / "tiny_node", [NODE_V1, NODE_V2])
        clone(
            (root / "upstream" / "tiny_node").as_uri(),
            comfy / "custom_nodes" / "tiny_node",
            node_commits[0],
        )
    if tree_node:
        plain = comfy / "custom_nodes" / "plain_node"
        plain.mkdir()
        (plain / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
        (plain / "data").mkdir()
        (plain / "data" / "table.txt").write_text("1 2 3\n")
    wf = workflow_doc()
    wf_path = root / "wf" / "workflow_api.json"
    wf_path.parent.mkdir()
    wf_path.write_text(json.dumps(wf, indent=2))
    return FakeEnv(root, comfy, commit, node_commits, wf_path, wf)


def sources_file(path: Path, mapping: dict[str, str]) -> Path:
    path.write_text(json.dumps(mapping))
    return path


def rewrite_zip(
    src: Path,
    dest: Path,
    *,
    drop: tuple[str, ...] = (),
    replace: dict[str, bytes] | None = None,
    add: Sequence[tuple[zipfile.ZipInfo | str, bytes]] = (),
) -> Path:
    """A copy of the zip ``src`` with entries dropped, replaced or added (for tampering)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = replace.get(info.filename, zin.read(info))
            zout.writestr(info, data)
        for info, data in add:
            zout.writestr(info, data)
    return dest
