"""Record the environment a workflow runs in: ``comfypack.lock.json``.

:func:`create_lock` gathers, for one workflow and one ComfyUI tree:

- the Python that runs ComfyUI (version, platform), its packages (:func:`list_packages` asks
  *that* interpreter, which need not be the one running comfypack) — ``name==version``, or the
  PEP 610 direct reference a package was installed from (an archive URL with its sha256, git at
  its commit, a local path: warned) — and the package indexes (:func:`index_urls`);
- ComfyUI's version and source (git URL + commit for a checkout, else the source that
  ``comfypack comfyui install`` recorded);
- every custom node (:func:`custom_nodes`): git remote + commit, with local changes as a patch the
  pack carries, a warning for an unpushed commit or a remote only this machine reaches (errors
  with ``strict``); plain folders and single ``.py`` files by content hash; the ComfyUI registry id
  and version where the node came from the registry; and comfypack's own node package;
- every model the workflow names (:func:`find_models`: candidate paths in ComfyUI's model folders
  and ``extra_model_paths.yaml``, never a scan), with size, sha256 and download sources — a
  model file the workflow names that is not there is an error unless allowed;
- the workflow's own hash.

The file format (schema, deterministic serialisation) lives in :mod:`comfypack.lockfile`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LockError, ModelsMissing
from ..files.hashing import HashCache, hash_files
from ..lockfile import (
    COMFYPACK_NODES,
    ComfyUIInfo,
    GitSource,
    Lock,
    Model,
    PythonInfo,
    WorkflowInfo,
)
from .gitstate import git_state
from .models import find_models, missing_models
from .nodes import _problem, custom_nodes
from .packages import _packages, _probe, index_urls
from .resolve import default_resolvers, resolve_sources
from .sources import ModelFile, Resolver
from .trees import tree_sha256

__all__ = [
    "comfyui_info",
    "tree_sha256",
    "workflow_sha256",
    "create_lock",
    "missing_sources",
    "COMFYPACK_NODES",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# models


# ----------------------------------------------------------------------------------------------
# trees and custom nodes


# ----------------------------------------------------------------------------------------------
# Python


# ----------------------------------------------------------------------------------------------
# ComfyUI and workflow


def comfyui_info(comfyui_dir: Path, *, strict: bool = False) -> ComfyUIInfo:
    """ComfyUI's version and where the tree came from (a git checkout, or the source recorded by
    ``comfypack comfyui install``)."""
    from ..comfyui.source import MARKER, comfyui_version, read_marker, to_lock

    comfyui_dir = Path(comfyui_dir)
    version = comfyui_version(comfyui_dir)
    if not (comfyui_dir / "main.py").is_file() or version is None:
        raise LockError(
            f"{comfyui_dir} is not a ComfyUI tree (no main.py / comfyui_version.py); "
            "pass --comfyui DIR"
        )
    state = git_state(comfyui_dir)
    if state is not None:
        url, commit, dirty = state.url, state.commit, state.dirty
        if not url:
            raise LockError(
                f"{comfyui_dir} is a git checkout without a remote; add one (git remote add "
                "origin URL) so the lock can say where ComfyUI comes from"
            )
        if dirty:
            _problem(
                f"ComfyUI at {comfyui_dir} has local changes the lock does not capture",
                strict,
                "commit or stash them",
            )
        return ComfyUIInfo(version=version, source=GitSource(type="git", url=url, commit=commit))
    marker = read_marker(comfyui_dir)
    source = (marker or {}).get("source")
    if isinstance(source, dict):
        try:
            return ComfyUIInfo(version=version, source=to_lock(source))
        except LockError as e:
            raise LockError(f"{comfyui_dir / MARKER}: {e.message}") from e
    raise LockError(
        f"cannot tell where the ComfyUI at {comfyui_dir} came from: it is neither a git checkout nor "
        "installed by `comfypack comfyui install`. Use a git clone of ComfyUI or install one with "
        "`comfypack comfyui install`"
    )


def workflow_sha256(workflow: Mapping[str, Any]) -> str:
    """sha256 of the workflow's canonical JSON (sorted keys, compact, UTF-8)."""
    text = json.dumps(workflow, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# the lock


def create_lock(
    workflow_path: Path,
    comfyui_dir: Path,
    *,
    python: str | None = None,
    resolvers: list[Resolver] | None = None,
    hash_cache: HashCache | None = None,
    strict: bool = False,
    progress: bool = False,
    sources_cache: Path | None = None,
    allow_missing_models: bool = False,
    indexes: list[str] | None = None,
    fetch_archive_hashes: bool = True,
) -> Lock:
    """Lock the environment of ``workflow_path`` running on ``comfyui_dir`` (see the module doc).

    ``python``: the interpreter that runs ComfyUI (default: this one). ``resolvers``: where to
    look for model download sources, in order (default: the offline ones of
    :func:`comfypack.lock.resolve.default_resolvers`). ``sources_cache``: the lookup cache (default
    ``$COMFYPACK_HOME/cache/sources.json``). ``hash_cache``: a stat-keyed cache of file hashes
    (default: in memory). ``strict``: what a restore elsewhere cannot reproduce is an error, not a
    warning — local changes in ComfyUI, a custom node commit that was never pushed, a remote or a
    package source only this machine reaches. A model file the workflow names that no model folder
    holds is an error (:class:`ModelsMissing`, exit 2) unless ``allow_missing_models``.
    ``indexes``: the package index URLs (default: :func:`index_urls` of ``python``).
    ``fetch_archive_hashes``: fetch a package archive whose installer recorded no hash, to pin it.
    """
    from .._version import __version__
    from ..workflow.interface import load_workflow

    workflow = load_workflow(workflow_path)
    comfyui_dir = Path(comfyui_dir)
    comfy = comfyui_info(comfyui_dir, strict=strict)

    absent = missing_models(workflow, comfyui_dir)
    if absent is not None:
        if not allow_missing_models:
            raise ModelsMissing(
                f"{absent.message} — or lock without them: --allow-missing-models",
                details=absent.details,
            )
        logger.warning("%s", absent.message)

    nodes = custom_nodes(comfyui_dir, strict=strict)

    python = python or sys.executable
    probe = _probe(python)
    py = PythonInfo(version=probe["version"], platform=probe["platform"])
    packages = _packages(probe, strict=strict, fetch_hashes=fetch_archive_hashes)

    found = find_models(workflow, comfyui_dir)
    cache = hash_cache if hash_cache is not None else HashCache(None)
    digests = hash_files([p for _, _, p in found], cache=cache, progress=progress)
    if hash_cache is not None:
        hash_cache.save()
    files = [
        ModelFile(
            folder=folder, path=rel, size=path.stat().st_size, sha256=digests[path], local_path=path
        )
        for folder, rel, path in found
    ]
    if resolvers is None:
        resolvers = default_resolvers(None, offline=True)
    sources = resolve_sources(files, resolvers, cache_path=sources_cache) if files else {}
    models = [
        Model(
            folder=f.folder,
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            sources=list(sources.get(f.sha256, [])),
        )
        for f in files
    ]
    missing = [f"{m.folder}/{m.path}" for m in models if not m.sources]
    if missing:
        logger.warning(
            "no download source found for %s; a restore will need --sources FILE "
            "(sha256 or file name → URL)",
            ", ".join(missing),
        )

    return Lock(
        created_by=f"comfypack {__version__}",
        python=py,
        comfyui=comfy,
        custom_nodes=nodes,
        packages=packages,
        indexes=indexes if indexes is not None else index_urls(python),
        models=models,
        workflow=WorkflowInfo(sha256=workflow_sha256(workflow)),
    )


def missing_sources(lock: Lock) -> list[str]:
    """``folder/path`` of every locked model without a download source."""
    return [f"{m.folder}/{m.path}" for m in lock.models if not m.sources]
