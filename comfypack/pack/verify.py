"""Check a workspace against its lock, changing nothing: ``comfypack unpack --verify``.

:func:`verify` lists every difference: the workflow, ComfyUI's version and source, each custom
node (commit, local changes against the carried patch, tree or file content), every model (present,
size, sha256 — all re-hashed) and, where the workspace has a venv, every package version. A
checkout that git cannot read is listed, not raised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ..errors import ComfyPackError, RestoreError
from ..files.hashing import hash_files, sha256_file
from ..lock.gitstate import GitState, git_state, local_patch
from ..lock.trees import tree_sha256
from ..lockfile import (
    COMFYPACK_NODES,
    ArchiveSource,
    CustomNode,
    FileSource,
    GitSource,
    Lock,
    Model,
    PackagedSource,
    TreeSource,
)
from .archive import LOCK_ENTRY, WORKFLOW_ENTRY
from .venv import SEED_PACKAGES, installed_packages, venv_python

__all__ = ["verify"]


def _state(path: Path, what: str, say: Callable[[str], None]) -> GitState | None | bool:
    """The checkout's state; ``False`` (and said) when git cannot read it."""
    try:
        return git_state(path)
    except ComfyPackError as e:
        say(f"{what}: not a readable git checkout ({e.message})")
        return False


def _check_git_node(
    node: CustomNode, source: GitSource, target: Path, say: Callable[[str], None]
) -> None:
    state = _state(target, f"custom node {node.name}", say)
    if state is False:
        return
    if state is None or not isinstance(state, GitState):
        say(f"custom node {node.name}: not a git checkout")
    elif state.commit != source.commit:
        say(f"custom node {node.name}: at commit {state.commit}, locked {source.commit}")
    elif node.patch is not None:
        try:
            diff = local_patch(target)
        except ComfyPackError as e:
            say(f"custom node {node.name}: cannot read its local changes ({e.message})")
            return
        if not diff:
            say(f"custom node {node.name}: the locked local changes (patch) are missing")
        elif hashlib.sha256(diff).hexdigest() != node.patch.sha256:
            say(f"custom node {node.name}: its local changes differ from the locked patch")
    elif state.dirty:
        say(f"custom node {node.name}: the git work tree has local changes")
    elif node.dirty:
        say(
            f"custom node {node.name}: it was locked with local changes that the lock does not carry "
            "(lock it again with this comfypack: they become a patch)"
        )


def verify(dest: Path, lock: Lock | None = None, *, progress: bool = False) -> list[str]:
    """Every difference between the workspace ``dest`` and ``lock`` (default: the workspace's own
    ``comfypack.lock.json``): workflow, ComfyUI version and source, custom node commits and trees,
    models (present, size, sha256 — all re-hashed), and package versions if it has a venv.
    Changes nothing; an empty list means it matches."""
    from ..comfyui.process import node_package_dir
    from ..comfyui.source import comfyui_version, read_marker
    from ..lock.create import workflow_sha256
    from ..lockfile import read_lock
    from ..workflow.interface import load_workflow

    dest = Path(dest)
    if lock is None:
        if not (dest / LOCK_ENTRY).is_file():
            raise RestoreError(f"{dest} is not a comfypack workspace (no {LOCK_ENTRY})")
        lock = read_lock(dest / LOCK_ENTRY)
    diffs: list[str] = []
    say: Callable[[str], None] = diffs.append

    wf = dest / WORKFLOW_ENTRY
    try:
        if workflow_sha256(load_workflow(wf)) != lock.workflow.sha256:
            say(f"workflow: {wf} differs from the locked workflow")
    except ComfyPackError:
        say(f"workflow: {wf} is missing or not a valid workflow")

    comfyui_dir = dest / "comfyui"
    version = comfyui_version(comfyui_dir)
    if version is None:
        say(f"comfyui: missing ({comfyui_dir} has no comfyui_version.py)")
    else:
        if lock.comfyui.version is not None and version != lock.comfyui.version:
            say(f"comfyui: version {version}, locked {lock.comfyui.version}")
        src = lock.comfyui.source
        if isinstance(src, GitSource):
            state = _state(comfyui_dir, "comfyui", say)
            if state is False:
                pass
            elif not isinstance(state, GitState) or state.commit != src.commit:
                at = state.commit if isinstance(state, GitState) else "no git commit"
                say(f"comfyui: at {at}, locked {src.commit}")
            elif state.dirty:
                say("comfyui: the git work tree has local changes")
        elif isinstance(src, (PackagedSource, ArchiveSource)):
            marker = (read_marker(comfyui_dir) or {}).get("source")
            if marker != src.model_dump(mode="json"):
                locked = (
                    f"{src.package}=={src.version}"
                    if isinstance(src, PackagedSource)
                    else f"archive {src.url} ({src.sha256[:12]}…)"
                )
                say(f"comfyui: installed from {marker}, locked {locked}")

    for node in lock.custom_nodes:
        if node.name == COMFYPACK_NODES:
            if isinstance(node.source, TreeSource):
                try:
                    own = tree_sha256(node_package_dir() / COMFYPACK_NODES)
                except ComfyPackError:
                    own = None
                if own != node.source.sha256:
                    say(
                        f"custom node {COMFYPACK_NODES}: this comfypack's node package differs from "
                        "the locked one (another comfypack version?)"
                    )
            continue
        target = comfyui_dir / "custom_nodes" / node.name
        if isinstance(node.source, FileSource):
            if not target.is_file():
                say(f"custom node {node.name}: missing")
            elif sha256_file(target) != node.source.sha256:
                say(f"custom node {node.name}: the file differs from the locked one")
        elif not target.is_dir():
            say(f"custom node {node.name}: missing")
        elif isinstance(node.source, GitSource):
            _check_git_node(node, node.source, target, say)
        elif tree_sha256(target) != node.source.sha256:
            say(f"custom node {node.name}: its files differ from the locked tree")

    present: list[tuple[Model, Path]] = []
    for m in lock.models:
        path = comfyui_dir / "models" / m.folder / m.path
        if not path.is_file():
            say(f"model {m.folder}/{m.path}: missing")
        elif path.stat().st_size != m.size:
            say(f"model {m.folder}/{m.path}: {path.stat().st_size} bytes, locked {m.size}")
        else:
            present.append((m, path))
    digests = hash_files([p for _, p in present], progress=progress)
    for m, path in present:
        if digests[path] != m.sha256:
            say(f"model {m.folder}/{m.path}: sha256 {digests[path]}, locked {m.sha256}")

    python = venv_python(dest / "venv")
    if python.exists():
        installed = installed_packages(python)
        pins = {p.name: p.version for p in lock.packages}
        for name, version in sorted(pins.items()):
            have = installed.get(name)
            if have is None:
                say(f"package {name}: missing, locked {version}")
            elif have != version:
                say(f"package {name}: {have} installed, locked {version}")
        for name in sorted(set(installed) - set(pins) - SEED_PACKAGES):
            say(f"package {name}: {installed[name]} installed, not in the lock")
    return diffs
