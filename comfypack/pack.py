"""Bundle a workflow with its lock: ``NAME.cpack.zip``.

A pack holds::

    workflow_api.json        the API-format workflow (normalised JSON)
    workflow.json            the UI graph, when given
    comfypack.lock.json      the lock (see :mod:`comfypack.lock`)
    interface.json           the interface document (JSON Schema of requests and responses)
    assets/<path>            input files the workflow names (from ComfyUI's input folder)
    custom_nodes/<name>/...  custom nodes that are not git checkouts (nowhere else to get them)
    models/<folder>/<path>   model weights, only with ``include_models``

Entries are written in a fixed order with a fixed timestamp and mode, so the same inputs give
the same zip bytes. Weights are never included unless asked: the lock says where to fetch them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import LockError, WorkflowError
from .lock import (
    COMFYPACK_NODES,
    _safe_relpath,
    _tree_files,
    create_lock,
    find_models,
    tree_sha256,
    workflow_sha256,
)
from .lockfile import Lock, TreeSource, dumps

__all__ = [
    "create_pack",
    "find_assets",
    "WORKFLOW_ENTRY",
    "UI_WORKFLOW_ENTRY",
    "LOCK_ENTRY",
    "INTERFACE_ENTRY",
    "ZIP_DATE",
]

logger = logging.getLogger(__name__)

WORKFLOW_ENTRY = "workflow_api.json"
UI_WORKFLOW_ENTRY = "workflow.json"
LOCK_ENTRY = "comfypack.lock.json"
INTERFACE_ENTRY = "interface.json"
#: every entry's timestamp (the earliest a zip can hold): packs carry no build time.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_OTHER_ANNOTATIONS = (" [output]", " [temp]")


def find_assets(workflow: Mapping[str, Any], input_dir: Path) -> list[tuple[str, Path]]:
    """Input files the workflow names, as ``(relative path, file)``: every string input value
    that is a file under ``input_dir`` (an ``" [input]"`` annotation is allowed)."""
    found: dict[str, Path] = {}
    for node in workflow.values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for value in inputs.values():
            if not isinstance(value, str):
                continue
            if value.endswith(" [input]"):
                value = value[: -len(" [input]")]
            elif value.endswith(_OTHER_ANNOTATIONS):
                continue
            rel = _safe_relpath(value)
            if rel is None or rel in found:
                continue
            path = input_dir / rel
            if path.is_file():
                found[rel] = path
    return sorted(found.items())


def _info(name: str, *, executable: bool = False, compress: bool = True) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.create_system = 3  # unix: the mode below means what it says on every platform
    info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return info


def _add_file(zf: zipfile.ZipFile, name: str, path: Path, *, compress: bool = True) -> None:
    info = _info(name, executable=bool(path.stat().st_mode & 0o111), compress=compress)
    info.file_size = path.stat().st_size
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _add_bytes(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    zf.writestr(_info(name), data)


@contextlib.contextmanager
def _atomic_zip(out: Path) -> Iterator[zipfile.ZipFile]:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            yield zf
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_pack(workflow_path: Path, comfyui_dir: Path, out: Path, *, lock: Lock | None = None,
                ui_workflow: Path | None = None, include_models: bool = False,
                input_dir: Path | None = None, **lock_kwargs: Any) -> Path:
    """Write ``out`` (a ``.cpack.zip``) for ``workflow_path`` on ``comfyui_dir``; returns ``out``.

    ``lock``: use this lock (it must be for this workflow) instead of locking now with
    ``lock_kwargs`` (see :func:`comfypack.lock.create_lock`). ``input_dir``: where the workflow's
    input files are (default: ``comfyui_dir/input``). ``include_models``: also carry the weights
    (each checked against the lock's sha256 first).
    """
    from .schema import interface_document
    from .workflow import load_workflow, parse_interface

    comfyui_dir = Path(comfyui_dir)
    workflow = load_workflow(workflow_path)
    interface = parse_interface(workflow)
    if lock is None:
        lock = create_lock(Path(workflow_path), comfyui_dir, **lock_kwargs)
    elif lock.workflow.sha256 != workflow_sha256(workflow):
        raise LockError(f"the lock is for another workflow (its workflow sha256 differs from "
                        f"{workflow_path}'s); lock this workflow again")

    ui_bytes: bytes | None = None
    if ui_workflow is not None:
        try:
            ui_bytes = Path(ui_workflow).read_bytes()
            json.loads(ui_bytes)
        except (OSError, ValueError) as e:
            raise WorkflowError(f"{ui_workflow}: not a readable JSON workflow ({e})") from e

    assets = find_assets(workflow, Path(input_dir) if input_dir else comfyui_dir / "input")

    trees: list[tuple[str, list[tuple[str, Path]]]] = []
    for node in lock.custom_nodes:
        if not isinstance(node.source, TreeSource) or node.name == COMFYPACK_NODES:
            continue
        folder = comfyui_dir / "custom_nodes" / node.name
        if not folder.is_dir() or tree_sha256(folder) != node.source.sha256:
            raise LockError(f"custom node {node.name} changed since it was locked (or is missing "
                            f"from {folder.parent}); lock again")
        files = _tree_files(folder)
        links = [rel for rel, p in files if p.is_symlink()]
        if links:
            raise LockError(f"custom node {node.name} contains symbolic links ({', '.join(links[:3])}); "
                            "a pack carries plain files only — make it a git repo with a remote")
        trees.append((node.name, files))

    models: list[tuple[str, Path]] = []
    if include_models:
        local = {(folder, rel): path for folder, rel, path in find_models(workflow, comfyui_dir)}
        from .hashing import hash_files

        wanted = []
        for m in lock.models:
            path = local.get((m.folder, m.path))
            if path is None:
                raise LockError(f"model {m.folder}/{m.path} is in the lock but not in {comfyui_dir}")
            wanted.append((m, path))
        digests = hash_files([p for _, p in wanted], progress=False)
        for m, path in wanted:
            if digests[path] != m.sha256:
                raise LockError(f"model {m.folder}/{m.path} changed since it was locked; lock again")
            models.append((f"models/{m.folder}/{m.path}", path))

    out = Path(out)
    with _atomic_zip(out) as zf:
        _add_bytes(zf, WORKFLOW_ENTRY,
                   (json.dumps(workflow, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        if ui_bytes is not None:
            _add_bytes(zf, UI_WORKFLOW_ENTRY, ui_bytes)
        _add_bytes(zf, LOCK_ENTRY, dumps(lock).encode("utf-8"))
        _add_bytes(zf, INTERFACE_ENTRY, (json.dumps(interface_document(interface), indent=2,
                                                    sort_keys=True) + "\n").encode("utf-8"))
        for rel, path in assets:
            _add_file(zf, f"assets/{rel}", path)
        for name, files in trees:
            for rel, path in files:
                _add_file(zf, f"custom_nodes/{name}/{rel}", path)
        for name, path in sorted(models):
            _add_file(zf, name, path, compress=False)
    logger.info("wrote %s (%d asset(s), %d model(s) included)", out, len(assets), len(models))
    return out
