"""Recreate a workflow's workspace from a ``.cpack.zip``: ``comfypack unpack``.

:func:`unpack` builds a *workspace*::

    DEST/comfyui/                      ComfyUI from the locked source (git, archive or packaged wheel)
    DEST/comfyui/custom_nodes/<name>   each custom node at its locked commit (+ its carried patch),
                                       or its files from the pack (folders and single .py files)
    DEST/comfyui/models/<folder>/...   reflinks / read-only links into the model cache
    DEST/comfyui/input/...             the pack's assets
    DEST/venv/                         the locked packages, with pip (unless ``venv=False``)
    DEST/workflow_api.json, DEST/comfypack.lock.json, DEST/.comfypack-workspace.json

The stages live in their own modules: reading and checking the pack (:mod:`comfypack.pack.archive`),
the model cache (:mod:`comfypack.pack.modelcache`), the venv (:mod:`comfypack.pack.venv`, uv) and the
check of a workspace (:mod:`comfypack.pack.verify`). This module puts them together, safely: the pack
and the lock's sources are checked before pip, uv or git run; all models are fetched and verified
before the workspace is touched; nothing that comfypack did not create is deleted or overwritten
(``force`` only lets it *add* to a folder it did not create); a failed first restore removes the
folder it created.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_file, atomic_write
from ..errors import ComfyPackError, InvalidPack, LockError, RestoreError
from ..files.hashing import HashCache, sha256_file
from ..lock.gitstate import apply_patch, git_state, local_patch
from ..lock.trees import tree_sha256
from ..lockfile import (
    COMFYPACK_NODES,
    FileSource,
    GitSource,
    Lock,
    check_sources,
)
from .archive import (
    INTERFACE_ENTRY,
    LOCK_ENTRY,
    UI_WORKFLOW_ENTRY,
    WORKFLOW_ENTRY,
    PackContents,
    PackLimits,
    read_pack,
)
from .modelcache import Conflicts, fetch_models, link_model, model_cache_dir
from .venv import check_platform, ensure_venv
from .verify import verify

__all__ = [
    "Workspace",
    "unpack",
    "run_node_install_scripts",
    "default_workspace",
    "copy_inputs",
    "WORKSPACE_MARKER",
]

# Kept importable from here for existing callers: read_pack, PackContents, PackLimits (comfypack.pack.archive),
# check_sources (comfypack.lockfile), model_cache_dir (comfypack.pack.modelcache), verify (comfypack.pack.verify).
_COMPAT = (read_pack, PackContents, PackLimits, check_sources, model_cache_dir, verify)

logger = logging.getLogger(__name__)

WORKSPACE_MARKER = ".comfypack-workspace.json"
#: git transports a restore may use (GIT_ALLOW_PROTOCOL, which also binds submodules)
_GIT_PROTOCOLS = "https:ssh:git"


@dataclass(frozen=True)
class Workspace:
    """A restored workspace: where ComfyUI is, which Python runs it, the workflow and its lock."""

    root: Path
    comfyui_dir: Path
    python: str
    workflow_path: Path
    lock: Lock


def _read_workspace_marker(dest: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((dest / WORKSPACE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_new(target: Path, data: bytes, conflicts: Conflicts, *, mode: int = 0o644) -> None:
    """Write ``data`` at ``target`` unless it is already there (identical: fine; else: conflict)."""
    if target.is_symlink() or target.exists():
        if (
            target.is_file()
            and not target.is_symlink()
            and target.stat().st_size == len(data)
            and target.read_bytes() == data
        ):
            return
        conflicts.add(target, "exists with other contents")
        return
    try:
        atomic_write(target, data, mode=mode, exclusive=True)
    except FileExistsError:
        conflicts.add(target, "appeared while restoring")


def _entry_sha256(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    h = hashlib.sha256()
    with zf.open(info) as src:
        while chunk := src.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _copy_at_most(src: Any, dst: Any, info: zipfile.ZipInfo) -> None:
    """Copy an entry, never writing more than the size its directory declared (which the size
    limits were checked against)."""
    left = info.file_size
    while chunk := src.read(min(1 << 20, left + 1)):
        if len(chunk) > left:
            raise InvalidPack(f"pack entry {info.filename} is larger than it claims; refusing it")
        dst.write(chunk)
        left -= len(chunk)


def _extract_new(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, conflicts: Conflicts
) -> None:
    """Stream the entry ``info`` to ``target`` unless it is already there (same bytes: fine)."""
    if target.is_symlink() or target.exists():
        if (
            target.is_file()
            and not target.is_symlink()
            and target.stat().st_size == info.file_size
            and sha256_file(target) == _entry_sha256(zf, info)
        ):
            return
        conflicts.add(target, "exists with other contents")
        return
    try:
        with atomic_file(target, mode=0o644, exclusive=True) as out, zf.open(info) as src:
            _copy_at_most(src, out, info)
    except FileExistsError:
        conflicts.add(target, "appeared while restoring")


# ----------------------------------------------------------------------------------------------
# ComfyUI and custom nodes


def _restore_git_node(
    name: str,
    url: str,
    commit: str,
    target: Path,
    conflicts: Conflicts,
    *,
    allow_local: bool = False,
    patch: bytes = b"",
) -> None:
    """Clone ``url`` at ``commit`` (and apply ``patch``, the locked local changes) into a temp
    folder beside ``target``, check it, then rename it into place."""
    if target.exists() or target.is_symlink():
        try:
            state = git_state(target) if target.is_dir() else None
        except ComfyPackError:
            state = None
        if state is None or state.commit != commit:
            conflicts.add(target, f"is not custom node {name} at {commit[:12]}")
        return
    import git

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=target.parent))
    # git (and its submodules) may use only the allowed transports
    env = {
        "GIT_ALLOW_PROTOCOL": _GIT_PROTOCOLS + (":file" if allow_local else ""),
        "GIT_TERMINAL_PROMPT": "0",
    }
    try:
        repo = git.Repo.clone_from(url, tmp, no_checkout=True, env=env)
        repo.git.update_environment(**env)
        repo.git.checkout(commit)
        if (tmp / ".gitmodules").exists():
            repo.git.submodule("update", "--init", "--recursive")
        if repo.head.commit.hexsha != commit:
            raise RestoreError(
                f"custom node {name}: {url} checked out {repo.head.commit.hexsha}, "
                f"not the locked {commit}"
            )
        repo.close()
        if patch:
            try:
                apply_patch(tmp, patch)
            except ComfyPackError as e:
                raise InvalidPack(
                    f"custom node {name}: the pack's patch does not apply to "
                    f"{commit[:12]} ({e.message})"
                ) from e
            if local_patch(tmp) != patch:
                raise InvalidPack(
                    f"custom node {name}: after the pack's patch the checkout does "
                    "not have the locked local changes; refusing the pack"
                )
        os.rename(tmp, target)
    except git.GitCommandError as e:
        why = " ".join((e.stderr or "").split()) or str(e)
        hint = (
            " — the commit is not on the remote (it was never pushed?)"
            if "reference is not a tree" in why or "did not match" in why
            else ""
        )
        raise RestoreError(
            f"cannot restore custom node {name} from {url} at {commit}: {why}{hint}"
        ) from e
    except git.exc.UnsafeProtocolError as e:  # GitPython's own refusal (ext::, …)
        raise LockError(
            f"the lock's custom node {name} source {url[:200]!r} uses a transport "
            f"comfypack does not allow: {e}"
        ) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _restore_tree_node(
    contents: PackContents, name: str, sha256: str, target: Path, conflicts: Conflicts
) -> None:
    if target.exists() or target.is_symlink():
        if not target.is_dir() or tree_sha256(target) != sha256:
            conflicts.add(target, f"is not the locked custom node {name}")
        return
    files = contents.trees.get(name)
    if not files:
        raise InvalidPack(
            f"custom node {name} is not a git repo and the pack does not carry it; "
            "re-pack it with comfypack (which includes such nodes)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=target.parent))
    try:
        with zipfile.ZipFile(contents.path) as zf:
            for rel, entry in sorted(files.items()):
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                info = zf.getinfo(entry)
                with zf.open(info) as src, open(out, "wb") as dst:
                    _copy_at_most(src, dst, info)
                os.chmod(out, 0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
        if tree_sha256(tmp) != sha256:
            raise InvalidPack(
                f"custom node {name} in the pack does not match the lock's tree "
                "sha256; the pack was modified"
            )
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _restore_file_node(
    contents: PackContents, name: str, sha256: str, target: Path, conflicts: Conflicts
) -> None:
    """A single-file custom node (``custom_nodes/NAME.py``) from the pack, checked by sha256."""
    entry = contents.files.get(name)
    if target.exists() or target.is_symlink():
        if not target.is_file() or sha256_file(target) != sha256:
            conflicts.add(target, f"is not the locked custom node {name}")
        return
    if entry is None:
        raise InvalidPack(
            f"custom node {name} is a single file and the pack does not carry it; "
            "re-pack it with this comfypack"
        )
    data = contents.read(entry)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidPack(
            f"custom node {name} in the pack does not match the lock's sha256; the "
            "pack was modified"
        )
    _write_new(target, data, conflicts)


def run_node_install_scripts(workspace: Workspace) -> list[str]:
    """Run each restored custom node's ``install.py`` with the workspace's Python (in the node's
    folder, as ComfyUI-Manager does); returns the nodes whose script ran. A failing script is a
    :class:`RestoreError` naming the node."""
    ran = []
    for node in workspace.lock.custom_nodes:
        folder = workspace.comfyui_dir / "custom_nodes" / node.name
        script = folder / "install.py"
        if node.name == COMFYPACK_NODES or not script.is_file():
            continue
        logger.info("running %s", script)
        proc = subprocess.run(
            [workspace.python, "install.py"], cwd=folder, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RestoreError(
                f"custom node {node.name}: install.py failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        ran.append(node.name)
    return ran


def default_workspace(pack: Path, home: Path | None = None) -> Path:
    """Where ``run PACK``, ``serve PACK`` and a Bento's start-up restore a pack:
    ``$COMFYPACK_HOME/workspaces/<pack sha256[:16]>`` (the same pack finds the same workspace)."""
    from ..config import comfypack_home

    return (home or comfypack_home()) / "workspaces" / sha256_file(Path(pack))[:16]


def copy_inputs(src: Path, dst: Path) -> None:
    """Copy the files under ``src`` (a workspace's ``comfyui/input``: the pack's assets) into a
    worker's input folder ``dst`` where it has none by that name."""
    if not Path(src).is_dir():
        return
    for path in sorted(Path(src).rglob("*")):
        target = Path(dst) / path.relative_to(src)
        if path.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


# ----------------------------------------------------------------------------------------------
# unpack


def _check_dest(dest: Path, lock_sha: str, force: bool) -> bool:
    """Whether ``dest`` must be created. Refuses a foreign non-empty folder unless ``force``."""
    if not dest.exists():
        return True
    if not dest.is_dir():
        raise RestoreError(f"{dest} exists and is not a folder; choose another --dir")
    if not any(dest.iterdir()):
        return False
    marker = _read_workspace_marker(dest)
    if marker is None and not force:
        raise RestoreError(
            f"{dest} exists, is not empty and is not a comfypack workspace; choose "
            "another --dir, or pass --force to add to it (nothing there is deleted "
            "or overwritten)"
        )
    if marker is not None and marker.get("lock_sha256") != lock_sha and not force:
        raise RestoreError(
            f"{dest} is a workspace of another lock; choose another --dir, or pass "
            "--force to add to it (nothing there is deleted or overwritten)"
        )
    return False


@contextlib.contextmanager
def _cleanup_on_failure(dest: Path, created: bool, was_empty: bool) -> Iterator[None]:
    """On failure, remove what this call made when the folder was new or empty (all of it is
    ours then); a folder that held anything before keeps what it got (a rerun continues)."""
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        elif was_empty:
            for child in dest.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        child.unlink()
        raise


def unpack(
    pack: Path,
    dest: Path,
    *,
    force: bool = False,
    venv: bool = True,
    sources_file: Path | None = None,
    progress: bool = True,
    hf_endpoint: str | None = None,
    civitai_url: str | None = None,
    home: Path | None = None,
    models: bool = True,
    allow_local_sources: bool = False,
    installer: str = "auto",
    ignore_platform: bool = False,
    run_install_scripts: bool = False,
    copy_models: bool = False,
) -> Workspace:
    """Restore ``pack`` into the workspace ``dest`` (see the module doc) and return it.

    A second call with the same pack is a quick check. ``venv=False`` skips the venv (the
    workspace then runs on this interpreter). ``sources_file``: extra model sources (sha256 or
    file name → URL), tried before the lock's. ``home``: ``$COMFYPACK_HOME`` (model cache,
    ComfyUI wheels, hash cache). ``models=False`` leaves the models out (an image build
    restores ComfyUI and nodes; a later call at start-up adds the models).
    ``allow_local_sources``: restore ``file://`` / path git remotes, package URLs and ComfyUI
    archives (only for a pack you trust: they read this machine's files). ``installer``: ``uv``,
    ``pip`` or ``auto`` (uv where it runs). ``ignore_platform``: install the venv even where the
    lock's platform or Python differs (see :func:`comfypack.pack.venv.check_platform`).
    ``run_install_scripts``: run the nodes' ``install.py`` afterwards (off by default: it runs
    the node author's code). ``copy_models``: copy models out of the cache instead of linking.
    """
    from ..config import comfypack_home

    home = home or comfypack_home()
    contents = read_pack(pack)  # everything validated before anything is written
    check_sources(contents.lock, allow_local=allow_local_sources)  # before pip or git see it
    if venv:
        check_platform(contents.lock, ignore=ignore_platform)  # before anything is fetched
    lock_sha = hashlib.sha256(contents.lock_text).hexdigest()
    dest = Path(dest).expanduser().absolute()
    created = _check_dest(dest, lock_sha, force)
    was_empty = not created and not any(dest.iterdir())
    hashes = HashCache(home / "cache" / "hashes.json")
    try:
        cached = (
            fetch_models(
                contents,
                model_cache_dir(home),
                hashes,
                sources_file=sources_file,
                progress=progress,
                hf_endpoint=hf_endpoint,
                civitai_url=civitai_url,
            )
            if models
            else None
        )
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RestoreError(f"cannot write {e.filename or home}: {e.strerror or e}") from e
    try:
        with _cleanup_on_failure(dest, created, was_empty):
            ws = _build(
                contents,
                dest,
                cached,
                hashes,
                home=home,
                venv=venv,
                lock_sha=lock_sha,
                allow_local=allow_local_sources,
                installer=installer,
                ignore_platform=ignore_platform,
                copy_models=copy_models,
            )
        if run_install_scripts:
            ran_scripts = run_node_install_scripts(ws)
            logger.info("ran install.py of %s", ", ".join(ran_scripts) or "no node")
        return ws
    except (zipfile.BadZipFile, zlib.error) as e:
        raise InvalidPack(f"{pack}: a damaged entry ({e}); refusing the pack") from e
    except OSError as e:
        raise RestoreError(
            f"restoring into {dest} failed: cannot write {e.filename or dest}: {e.strerror or e}"
        ) from e


def _build(
    contents: PackContents,
    dest: Path,
    cached: dict[str, Path] | None,
    hashes: HashCache,
    *,
    home: Path,
    venv: bool,
    lock_sha: str,
    allow_local: bool = False,
    installer: str = "auto",
    ignore_platform: bool = False,
    copy_models: bool = False,
) -> Workspace:
    from ..comfyui.source import from_lock, install

    lock = contents.lock
    conflicts = Conflicts()
    # the marker first: an interrupted restore is then continued by a rerun, not refused
    marker = _read_workspace_marker(dest) or {}
    want = {
        "lock_sha256": lock_sha,
        "pack_sha256": contents.sha256,
        "venv": bool(venv or marker.get("venv")),
    }
    if {k: marker.get(k) for k in want} != want:
        from .._version import __version__

        text = (
            json.dumps({**want, "created_by": f"comfypack {__version__}"}, indent=2, sort_keys=True)
            + "\n"
        )
        atomic_write(dest / WORKSPACE_MARKER, text)
    comfyui_dir = dest / "comfyui"
    install(from_lock(lock.comfyui.source), comfyui_dir, cache_dir=home)
    for node in lock.custom_nodes:
        if node.name == COMFYPACK_NODES:
            continue  # comfypack itself provides its node package
        target = comfyui_dir / "custom_nodes" / node.name
        if isinstance(node.source, GitSource):
            patch = b""
            if node.patch is not None:
                entry = contents.patches.get(node.name)
                if entry is None:
                    raise InvalidPack(
                        f"the lock says custom node {node.name} has local changes, but "
                        "the pack does not carry its patch; refusing the pack"
                    )
                patch = contents.read(entry)
                if hashlib.sha256(patch).hexdigest() != node.patch.sha256:
                    raise InvalidPack(
                        f"custom node {node.name}: the pack's patch does not match the "
                        "lock's sha256; the pack was modified"
                    )
            elif node.dirty:
                logger.warning(
                    "custom node %s had local changes when it was locked that the pack "
                    "does not carry; restoring the clean commit",
                    node.name,
                )
            _restore_git_node(
                node.name,
                node.source.url,
                node.source.commit,
                target,
                conflicts,
                allow_local=allow_local,
                patch=patch,
            )
        elif isinstance(node.source, FileSource):
            _restore_file_node(contents, node.name, node.source.sha256, target, conflicts)
        else:
            _restore_tree_node(contents, node.name, node.source.sha256, target, conflicts)
    if cached is not None:  # None: models left out
        for m in lock.models:
            link_model(
                cached[m.sha256],
                comfyui_dir / "models" / m.folder / m.path,
                m,
                hashes,
                conflicts,
                copy=copy_models,
            )
    hashes.save()
    if contents.assets:
        with zipfile.ZipFile(contents.path) as zf:
            for rel, entry in sorted(contents.assets.items()):
                _extract_new(zf, zf.getinfo(entry), comfyui_dir / "input" / rel, conflicts)
    _write_new(dest / WORKFLOW_ENTRY, contents.workflow_bytes, conflicts)
    _write_new(dest / LOCK_ENTRY, contents.lock_text, conflicts)
    if contents.ui_workflow is not None:
        _write_new(dest / UI_WORKFLOW_ENTRY, contents.ui_workflow, conflicts)
    if contents.interface is not None:
        _write_new(dest / INTERFACE_ENTRY, contents.interface, conflicts)
    conflicts.raise_if_any()
    python = sys.executable
    if venv:
        py, used = ensure_venv(
            dest / "venv",
            lock,
            installer=installer,
            ignore_platform=ignore_platform,
            allow_local_sources=allow_local,
        )
        python = str(py)
        logger.info("venv %s ready (%s)", dest / "venv", used)
    return Workspace(
        root=dest,
        comfyui_dir=comfyui_dir,
        python=python,
        workflow_path=dest / WORKFLOW_ENTRY,
        lock=lock,
    )
