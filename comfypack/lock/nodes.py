"""The custom nodes of a ComfyUI tree as lock entries: git checkouts (commit, portable remote, local
changes as a patch), plain folders and single files (content hash), registry installs (id +
version) — :func:`custom_nodes`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..errors import LockError
from ..files.hashing import sha256_file
from ..lockfile import (
    COMFYPACK_NODES,
    CustomNode,
    FileSource,
    GitSource,
    PatchInfo,
    RegistryInfo,
    TreeSource,
    is_local_url,
)
from .gitstate import git_state, local_patch
from .trees import SKIP_NAMES, tree_sha256

__all__ = ["custom_nodes"]

logger = logging.getLogger(__name__)


def _registry(path: Path) -> RegistryInfo | None:
    """The ComfyUI registry id and version of a node installed from the registry (it carries a
    ``.tracking`` file and its ``pyproject.toml`` names it), else ``None``."""
    if not (path / ".tracking").is_file() or not (path / "pyproject.toml").is_file():
        return None
    import tomllib

    try:
        project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8")).get(
            "project", {}
        )
        return RegistryInfo(id=str(project["name"]), version=str(project["version"]))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _problem(message: str, strict: bool, fix: str) -> None:
    """A loss the lock cannot repair: a warning, or (``strict``) a :class:`LockError`."""
    if strict:
        raise LockError(f"{message} (--strict); {fix}")
    logger.warning("%s; %s", message, fix)


def _node_entry(name: str, path: Path, *, strict: bool = False) -> CustomNode:
    state = git_state(path)
    registry = _registry(path)
    if state is not None:
        if state.url:
            source = GitSource(type="git", url=state.url, commit=state.commit)
            if is_local_url(state.url):
                _problem(
                    f"custom node {name}: its remote {state.url} can be reached only from this "
                    "machine",
                    strict,
                    "push it to a shared remote (git remote set-url origin URL)",
                )
            if not state.pushed:
                _problem(
                    f"custom node {name}: commit {state.commit[:12]} is on no branch of its "
                    f"remote {state.url}",
                    strict,
                    "push it (git push) so a restore can fetch it",
                )
            patch = None
            if state.dirty:
                diff = local_patch(path)
                if diff:
                    patch = PatchInfo(sha256=hashlib.sha256(diff).hexdigest(), size=len(diff))
                    logger.info(
                        "custom node %s has local changes: the pack carries them as a patch", name
                    )
            return CustomNode(
                name=name, source=source, dirty=state.dirty, patch=patch, registry=registry
            )
        logger.warning(
            "custom node %s is a git repo without a remote; recording its content instead", name
        )
    return CustomNode(
        name=name,
        source=TreeSource(type="tree", sha256=tree_sha256(path)),
        dirty=False,
        registry=registry,
    )


def custom_nodes(comfyui_dir: Path, *, strict: bool = False) -> list[CustomNode]:
    """Every custom node in ``custom_nodes/``: folders (git: remote, commit, local changes as a
    patch; otherwise a content hash) and single ``.py`` files (content hash), plus comfypack's
    own node package, sorted by name. ``strict``: an unpushed commit or a remote only this machine
    reaches is an error, not a warning.

    ``comfypack_nodes`` is always *this* comfypack's package — the one its workers load, even
    where the tree holds another copy (see :meth:`ComfyUIProcess._node_setup`)."""
    from ..comfyui.process import node_package_copies, node_package_dir

    nodes: dict[str, CustomNode] = {}
    folder = Path(comfyui_dir) / "custom_nodes"
    own = node_package_dir() / COMFYPACK_NODES
    copies = {c.name for c in node_package_copies(folder)}  # `comfypack_nodes`, registry installs
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or entry.name in SKIP_NAMES:
                continue
            if entry.is_file() and entry.name.endswith(".py"):  # ComfyUI loads single .py files too
                nodes[entry.name] = CustomNode(
                    name=entry.name,
                    source=FileSource(type="file", sha256=sha256_file(entry)),
                    dirty=False,
                )
                continue
            if not entry.is_dir():
                continue
            if entry.name in copies:
                if entry.resolve() != own.resolve():
                    logger.warning(
                        "%s is another copy of comfypack's node package; the lock records "
                        "this comfypack's (the one its workers load)",
                        entry,
                    )
                continue
            nodes[entry.name] = _node_entry(entry.name, entry, strict=strict)
    nodes[COMFYPACK_NODES] = CustomNode(
        name=COMFYPACK_NODES, source=TreeSource(type="tree", sha256=tree_sha256(own)), dirty=False
    )
    return [nodes[k] for k in sorted(nodes)]
