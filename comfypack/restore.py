"""Recreate a workflow's environment from a ``.cpack.zip``, verified: ``comfypack unpack``.

:func:`unpack` builds a *workspace*::

    DEST/comfyui/                      ComfyUI from the locked source (git commit or packaged wheel)
    DEST/comfyui/custom_nodes/<name>   each custom node at its locked commit (or from the pack)
    DEST/comfyui/models/<folder>/...   links into the content-addressed model cache
    DEST/comfyui/input/...             the pack's assets
    DEST/venv/                         the locked packages (unless ``venv=False``)
    DEST/workflow_api.json, DEST/comfypack.lock.json, DEST/.comfypack-workspace.json

Models are fetched into ``$COMFYPACK_HOME/models/sha256/<hex>`` — in parallel, resumable,
verified by size and sha256 before they enter the cache — and hard-linked (or symlinked) into
the workspace.

Safety: every zip entry name is checked before anything is written (no absolute paths, no
``..``, no links, no duplicates), and so are the pack's sizes (:class:`PackLimits`: total
uncompressed bytes, entry count, compression ratio — a zip bomb is refused unread); the lock's
sources are checked before pip or git run (pip gets ``name==version`` pins after ``--``; git
remotes must be https, ssh or git URLs — ``file://`` and paths only with
``allow_local_sources``); all models are fetched and verified before the workspace is
touched; nothing that comfypack did not create is deleted or overwritten (``force`` only lets it
*add* to a folder it did not create); a failed first restore removes the folder it created.
:func:`verify` lists every difference between a workspace and its lock, changing nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ComfyPackError, FieldError, LockError, RestoreError
from .hashing import HashCache, hash_files, sha256_file
from .lock import (
    COMFYPACK_NODES,
    _git_state,
    _safe_relpath,
    list_packages,
    tree_sha256,
    workflow_sha256,
)
from .lockfile import (
    ArchiveSource,
    GitSource,
    Lock,
    Model,
    ModelSource,
    PackagedSource,
    TreeSource,
    is_local_url,
    loads,
    requirement,
)
from .pack import INTERFACE_ENTRY, LOCK_ENTRY, UI_WORKFLOW_ENTRY, WORKFLOW_ENTRY

__all__ = [
    "PackLimits",
    "check_sources",
    "PackContents",
    "Workspace",
    "read_pack",
    "unpack",
    "verify",
    "model_cache_dir",
    "WORKSPACE_MARKER",
]

logger = logging.getLogger(__name__)

WORKSPACE_MARKER = ".comfypack-workspace.json"
_JSON_LIMIT = 64 * 1024 * 1024  # the JSON entries of a pack are small; refuse a zip bomb
_NAME_RE = re.compile(r"^(?!\.\.?$)[^/\\\x00]+$")
#: git transports a restore may use (GIT_ALLOW_PROTOCOL, which also binds submodules)
_GIT_PROTOCOLS = "https:ssh:git"


@dataclass(frozen=True)
class PackLimits:
    """What a pack may expand to, checked from its directory before anything is written:
    ``max_bytes`` uncompressed in all, ``max_entries`` entries, and ``max_ratio`` uncompressed
    per compressed byte (for the pack as a whole, and for each entry over 1 MiB). Weights carried
    with ``--include-models`` count too; raise ``max_bytes`` for such packs."""

    max_bytes: int = 32 * 1024**3
    max_entries: int = 20_000
    max_ratio: float = 200.0

    @classmethod
    def from_env(cls, env: Any = None) -> PackLimits:
        """``COMFYPACK_PACK_MAX_BYTES``, ``COMFYPACK_PACK_MAX_ENTRIES``, ``COMFYPACK_PACK_MAX_RATIO``."""
        env = os.environ if env is None else env
        try:
            return cls(max_bytes=int(env.get("COMFYPACK_PACK_MAX_BYTES") or cls.max_bytes),
                       max_entries=int(env.get("COMFYPACK_PACK_MAX_ENTRIES") or cls.max_entries),
                       max_ratio=float(env.get("COMFYPACK_PACK_MAX_RATIO") or cls.max_ratio))
        except ValueError as e:
            raise _bad_pack(f"a COMFYPACK_PACK_MAX_* setting is not a number ({e})") from e


# ----------------------------------------------------------------------------------------------
# reading a pack


@dataclass
class PackContents:
    """A validated pack: its lock and workflow, and the names of its other entries."""

    path: Path
    sha256: str
    lock: Lock
    lock_text: bytes
    workflow: dict[str, Any]
    workflow_bytes: bytes
    ui_workflow: bytes | None = None
    interface: bytes | None = None
    #: relative path under assets/ → zip entry name
    assets: dict[str, str] = field(default_factory=dict)
    #: (folder, path) → zip entry name, for weights carried in the pack
    models: dict[tuple[str, str], str] = field(default_factory=dict)
    #: custom node name → {relative path → zip entry name}
    trees: dict[str, dict[str, str]] = field(default_factory=dict)


def _bad_pack(message: str, **kw: Any) -> RestoreError:
    """A pack that is malformed, unsafe or modified: the caller's input is bad (400 / exit 2)."""
    error = RestoreError(message, **kw)
    error.status = 400
    error.exit_code = 2
    error.type = "invalid_pack"
    return error


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if not name or "\x00" in name:
        return "an empty or NUL-containing name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if "\\" in name:
        return "a backslash in the name"
    parts = name.rstrip("/").split("/")
    if any(p == ".." for p in parts):
        return "a '..' component (escapes the target)"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' component"
    if info.flag_bits & 0x1:
        return "encryption"
    mode = info.external_attr >> 16
    if mode and info.create_system == 3:
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            return "a symbolic link"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "a special file (device, fifo or socket)"
    return None


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > _JSON_LIMIT:
        raise _bad_pack(f"pack entry {info.filename} is {info.file_size} bytes; refusing it")
    with zf.open(info) as f:
        data = f.read(_JSON_LIMIT + 1)
    if len(data) > _JSON_LIMIT:
        raise _bad_pack(f"pack entry {info.filename} is larger than it claims; refusing it")
    return data


def _check_lock_paths(lock: Lock) -> None:
    """The lock names paths inside the workspace; make sure none can escape it."""
    for m in lock.models:
        if not _NAME_RE.match(m.folder) or _safe_relpath(m.path) != m.path:
            raise _bad_pack(f"the lock names model {m.folder!r}/{m.path!r}, which is not a plain "
                               "relative path; refusing the pack")
    for n in lock.custom_nodes:
        if not _NAME_RE.match(n.name):
            raise _bad_pack(f"the lock names custom node {n.name!r}, which is not a plain folder "
                               "name; refusing the pack")


def _check_sizes(pack: Path, infos: list[zipfile.ZipInfo], limits: PackLimits) -> None:
    """Refuse a pack whose directory promises more than ``limits`` allow (before any reading)."""
    if len(infos) > limits.max_entries:
        raise _bad_pack(f"{pack}: {len(infos)} entries, more than the limit of {limits.max_entries} "
                        "(COMFYPACK_PACK_MAX_ENTRIES); refusing the pack")
    total = sum(i.file_size for i in infos)
    if total > limits.max_bytes:
        raise _bad_pack(f"{pack}: expands to {total} bytes, more than the limit of {limits.max_bytes} "
                        "(COMFYPACK_PACK_MAX_BYTES); refusing the pack")
    for info in infos:
        if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(1, info.compress_size):
            raise _bad_pack(f"{pack}: entry {info.filename!r} expands {info.compress_size} bytes to "
                            f"{info.file_size} (more than {limits.max_ratio:g}:1, "
                            "COMFYPACK_PACK_MAX_RATIO); refusing a zip bomb")
    packed = sum(i.compress_size for i in infos)
    if total > 1 << 20 and total > limits.max_ratio * max(1, packed):
        raise _bad_pack(f"{pack}: expands {packed} compressed bytes to {total} (more than "
                        f"{limits.max_ratio:g}:1, COMFYPACK_PACK_MAX_RATIO); refusing a zip bomb")


def check_sources(lock: Lock, *, allow_local: bool = False) -> None:
    """Refuse (:class:`LockError`, exit 2) a lock whose sources pip or git must not be given:
    package pins that are not ``name==version`` (PEP 508 / PEP 440), git remotes that are not
    https, ssh or git URLs, and — unless ``allow_local`` — ``file://`` URLs and paths (git remotes
    and ComfyUI archives) that would read this machine's files."""
    for p in lock.packages:
        requirement(p.name, p.version)
    src = lock.comfyui.source
    if isinstance(src, PackagedSource):
        requirement(src.package, src.version)
    urls = [("ComfyUI", src.url)] if isinstance(src, (GitSource, ArchiveSource)) else []
    urls += [(f"custom node {n.name}", n.source.url) for n in lock.custom_nodes
             if isinstance(n.source, GitSource) and n.name != COMFYPACK_NODES]
    for what, url in urls:
        if url.startswith("-") or "::" in url.split("/", 1)[0]:
            raise LockError(f"the lock's {what} source {url[:200]!r} is not a URL; refusing it")
        if is_local_url(url) and not allow_local:
            raise LockError(f"the lock's {what} source {url[:200]!r} is on the local file system; "
                            "restore it only from a pack you trust, with --allow-local-sources "
                            "(COMFYPACK_ALLOW_LOCAL_SOURCES=1)")


def read_pack(pack: Path, *, limits: PackLimits | None = None) -> PackContents:
    """Open and validate ``pack``. Every entry name is checked before anything is extracted:
    absolute paths, ``..``, links, special files, duplicates, encrypted entries and model or node
    entries the lock does not list are refused; the workflow must match the lock's hash and
    carried weights the lock's sizes. A refused pack raises :class:`RestoreError` with exit code 2
    (bad input); a lock from a newer comfypack raises :class:`LockError`. ``limits``: the size
    caps (default: :meth:`PackLimits.from_env`)."""
    try:
        return _read_pack(Path(pack), limits or PackLimits.from_env())
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _bad_pack(f"{pack}: a damaged entry ({e}); refusing the pack") from e


def _read_pack(pack: Path, limits: PackLimits) -> PackContents:
    pack = Path(pack)
    try:
        digest = sha256_file(pack)
        zf = zipfile.ZipFile(pack)
    except FileNotFoundError as e:
        raise _bad_pack(f"{pack}: no such file") from e
    except (OSError, zipfile.BadZipFile) as e:
        raise _bad_pack(f"{pack}: not a readable .cpack.zip ({e})") from e
    with zf:
        _check_sizes(pack, zf.infolist(), limits)
        problems: list[str] = []
        seen: dict[str, str] = {}
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            problem = _entry_problem(info)
            if problem is not None:
                problems.append(f"{info.filename!r}: {problem}")
                continue
            key = info.filename.rstrip("/").lower()
            if key in seen:
                problems.append(f"{info.filename!r}: a duplicate of {seen[key]!r}")
                continue
            seen[key] = info.filename
            if not info.is_dir():
                infos[info.filename] = info
        if problems:
            raise _bad_pack(f"{pack}: refusing an unsafe pack — " + "; ".join(problems[:5])
                               + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
                               details=[FieldError(None, p) for p in problems])
        for required in (LOCK_ENTRY, WORKFLOW_ENTRY):
            if required not in infos:
                raise _bad_pack(f"{pack}: not a comfypack pack (no {required})")
        lock_text = _read_small(zf, infos[LOCK_ENTRY])
        try:
            lock = loads(lock_text)
        except LockError as e:
            raise LockError(f"{pack}: {e.message}", details=e.details) from e
        _check_lock_paths(lock)
        workflow_bytes = _read_small(zf, infos[WORKFLOW_ENTRY])
        from .workflow import load_workflow

        try:
            workflow = load_workflow(json.loads(workflow_bytes))
        except ValueError as e:
            raise _bad_pack(f"{pack}: {WORKFLOW_ENTRY} is not valid JSON ({e})") from e
        if workflow_sha256(workflow) != lock.workflow.sha256:
            raise _bad_pack(f"{pack}: {WORKFLOW_ENTRY} does not match the lock's workflow sha256; "
                               "the pack was modified")
        contents = PackContents(path=pack, sha256=digest, lock=lock, lock_text=lock_text,
                                workflow=workflow, workflow_bytes=workflow_bytes)
        if UI_WORKFLOW_ENTRY in infos:
            contents.ui_workflow = _read_small(zf, infos[UI_WORKFLOW_ENTRY])
        if INTERFACE_ENTRY in infos:
            contents.interface = _read_small(zf, infos[INTERFACE_ENTRY])
        locked = {(m.folder, m.path): m for m in lock.models}
        trees = {n.name for n in lock.custom_nodes
                 if isinstance(n.source, TreeSource) and n.name != COMFYPACK_NODES}
        unknown = []
        for name, info in sorted(infos.items()):
            if name in (LOCK_ENTRY, WORKFLOW_ENTRY, UI_WORKFLOW_ENTRY, INTERFACE_ENTRY):
                continue
            top, _, rest = name.partition("/")
            if top == "assets" and rest:
                contents.assets[rest] = name
            elif top == "models" and "/" in rest:
                folder, _, path = rest.partition("/")
                model = locked.get((folder, path))
                if model is None:
                    raise _bad_pack(f"{pack}: entry {name} is a model the lock does not list; refusing it")
                if info.file_size != model.size:
                    raise _bad_pack(f"{pack}: {name} is {info.file_size} bytes but the lock says "
                                       f"{model.size}; the pack was modified")
                contents.models[(folder, path)] = name
            elif top == "custom_nodes" and "/" in rest:
                node, _, path = rest.partition("/")
                if node not in trees:
                    raise _bad_pack(f"{pack}: entry {name} belongs to no locked custom node; refusing it")
                contents.trees.setdefault(node, {})[path] = name
            else:
                unknown.append(name)
        if unknown:
            logger.warning("%s: ignoring entries this comfypack does not know: %s", pack,
                           ", ".join(unknown[:5]))
    return contents


# ----------------------------------------------------------------------------------------------
# workspace


@dataclass(frozen=True)
class Workspace:
    """A restored workspace: where ComfyUI is, which Python runs it, the workflow and its lock."""

    root: Path
    comfyui_dir: Path
    python: str
    workflow_path: Path
    lock: Lock


def model_cache_dir(home: Path | None = None) -> Path:
    """The content-addressed model cache: ``$COMFYPACK_HOME/models/sha256``."""
    from .config import comfypack_home

    return (home or comfypack_home()) / "models" / "sha256"


def _read_workspace_marker(dest: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((dest / WORKSPACE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class _Conflicts:
    """Files in the way: collected, then reported together (never overwritten)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: Path, why: str) -> None:
        self.items.append(f"{path}: {why}")

    def raise_if_any(self) -> None:
        if self.items:
            raise RestoreError(
                f"{len(self.items)} file(s) already exist with other contents; comfypack never "
                "overwrites what it did not create — move them aside or restore into another --dir: "
                + "; ".join(self.items[:5]) + (" …" if len(self.items) > 5 else ""),
                details=[FieldError(None, i) for i in self.items])


def _into_place(tmp: str, target: Path) -> None:
    """Move the finished temp file ``tmp`` to ``target``, never replacing anything there
    (``FileExistsError`` if something is)."""
    try:
        os.link(tmp, target)  # fails if something appeared meanwhile: never replaces
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        if target.exists() or target.is_symlink():
            raise FileExistsError(str(target)) from None
        os.replace(tmp, target)


def _write_new(target: Path, data: bytes, conflicts: _Conflicts, *, mode: int = 0o644) -> None:
    """Write ``data`` at ``target`` unless it is already there (identical: fine; else: conflict)."""
    if target.is_symlink() or target.exists():
        if target.is_file() and not target.is_symlink() and target.stat().st_size == len(data) \
                and target.read_bytes() == data:
            return
        conflicts.add(target, "exists with other contents")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        _into_place(tmp, target)
    except FileExistsError:
        conflicts.add(target, "appeared while restoring")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


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
            raise _bad_pack(f"pack entry {info.filename} is larger than it claims; refusing it")
        dst.write(chunk)
        left -= len(chunk)


def _extract_new(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, conflicts: _Conflicts) -> None:
    """Stream the entry ``info`` to ``target`` unless it is already there (same bytes: fine)."""
    if target.is_symlink() or target.exists():
        if target.is_file() and not target.is_symlink() and target.stat().st_size == info.file_size \
                and sha256_file(target) == _entry_sha256(zf, info):
            return
        conflicts.add(target, "exists with other contents")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            _copy_at_most(src, out, info)
        os.chmod(tmp, 0o644)
        _into_place(tmp, target)
    except FileExistsError:
        conflicts.add(target, "appeared while restoring")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ----------------------------------------------------------------------------------------------
# models


def _user_sources(sources_file: Path | None, model: Model) -> list[ModelSource]:
    if sources_file is None:
        return []
    from .sources import ModelFile, SourcesFile

    resolver = SourcesFile(Path(sources_file))
    return list(resolver.resolve(ModelFile(folder=model.folder, path=model.path, size=model.size,
                                           sha256=model.sha256, local_path=Path(model.path))))


def _cached_ok(path: Path, model: Model, hashes: HashCache) -> bool:
    try:
        if path.stat().st_size != model.size:
            return False
    except OSError:
        return False
    digest = hashes.get(path)
    if digest is None:
        digest = sha256_file(path)
        hashes.put(path, digest)
    return digest == model.sha256


def _from_pack(pack: Path, entry: str, model: Model, target: Path) -> None:
    """Extract a weight carried in the pack into the cache, verified before it gets there."""
    fd, tmp = tempfile.mkstemp(prefix=f".{model.sha256}.", suffix=".partial", dir=target.parent)
    try:
        h = hashlib.sha256()
        n = 0
        with zipfile.ZipFile(pack) as zf, zf.open(entry) as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                n += len(chunk)
                if n > model.size:
                    break
                h.update(chunk)
                out.write(chunk)
        if n != model.size or h.hexdigest() != model.sha256:
            raise RestoreError(f"{model.folder}/{model.path} in the pack does not match the lock "
                               f"(sha256 {model.sha256[:12]}…, {model.size} bytes); the pack was "
                               "modified — refusing it")
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def _shared_progress(enabled: bool) -> Iterator[Any]:
    """The display the parallel downloads add their bars to (hashing's process-wide one);
    ``False`` when disabled."""
    if not enabled:
        yield False
        return
    from .hashing import shared_progress

    with shared_progress() as prog:
        yield prog


def _fetch_models(contents: PackContents, cache: Path, hashes: HashCache, *, sources_file: Path | None,
                  progress: bool, hf_endpoint: str | None, civitai_url: str | None,
                  workers: int = 4) -> dict[str, Path]:
    """Every locked model in the cache (fetched and verified as needed): ``sha256 → file``.
    All failures are collected into one :class:`RestoreError`."""
    from .sources import download

    cache.mkdir(parents=True, exist_ok=True)
    by_hash: dict[str, Model] = {}
    for m in contents.lock.models:
        by_hash.setdefault(m.sha256, m)
    pack_entries: dict[str, str] = {}
    for m in contents.lock.models:
        entry = contents.models.get((m.folder, m.path))
        if entry is not None:
            pack_entries.setdefault(m.sha256, entry)

    todo: list[Model] = []
    for digest, m in sorted(by_hash.items()):
        path = cache / digest
        if path.exists() or path.is_symlink():
            if _cached_ok(path, m, hashes):
                continue
            logger.warning("the cached model %s is damaged (size or sha256 differs); fetching it again", path)
            path.unlink()
        todo.append(m)

    failures: dict[str, str] = {}
    shown: Any = False  # one rich display for every parallel download

    def fetch(m: Model) -> None:
        target = cache / m.sha256
        entry = pack_entries.get(m.sha256)
        if entry is not None:
            _from_pack(contents.path, entry, m, target)
            return
        candidates = _user_sources(sources_file, m) + list(m.sources)
        if not candidates:
            failures[m.sha256] = "no download source is known"
            return
        errors = []
        for source in candidates:
            try:
                download(source, target, sha256=m.sha256, size=m.size, progress=shown,
                         hf_endpoint=hf_endpoint, civitai_url=civitai_url)
            except ComfyPackError as e:
                errors.append(e.message)
                continue
            except OSError as e:
                errors.append(f"{source.url}: {e}")
                continue
            with contextlib.suppress(OSError):
                os.chmod(target, 0o444)
            return
        failures[m.sha256] = "; ".join(errors)

    def guarded(m: Model) -> None:
        try:
            fetch(m)
        except ComfyPackError as e:
            failures[m.sha256] = e.message
        except (zipfile.BadZipFile, zlib.error) as e:
            failures[m.sha256] = f"a damaged entry in the pack ({e}); the pack was modified"
        except OSError as e:
            failures[m.sha256] = f"{type(e).__name__}: {e}"

    if todo:
        with _shared_progress(progress) as bars, ThreadPoolExecutor(
                max_workers=max(1, min(workers, len(todo))), thread_name_prefix="fetch") as pool:
            shown = bars
            list(pool.map(guarded, todo))
    hashes.save()
    if failures:
        names: dict[str, list[str]] = {}
        for m in contents.lock.models:
            names.setdefault(m.sha256, []).append(f"{m.folder}/{m.path}")
        details = [FieldError(", ".join(names[d]), why) for d, why in sorted(failures.items())]
        listed = "; ".join(f"{', '.join(names[d])} (sha256 {d[:12]}…): {why}"
                           for d, why in sorted(failures.items()))
        tampered = any("the pack was modified" in why for why in failures.values())
        hint = "" if tampered else (
            " — give a source with --sources FILE (a JSON object mapping each model's sha256 or file "
            f"name to a URL), or put the file at {cache}/<sha256>")
        if tampered:
            raise _bad_pack(f"refusing the pack: {listed}", details=details)
        raise RestoreError(f"cannot get {len(failures)} model(s): {listed}{hint}", details=details)
    return {d: cache / d for d in by_hash}


def _link_model(cached: Path, target: Path, model: Model, hashes: HashCache,
                conflicts: _Conflicts) -> None:
    if target.is_symlink() or target.exists():
        with contextlib.suppress(OSError):
            if os.path.samefile(target, cached):
                return
        if target.is_file() and _cached_ok(target, model, hashes):
            return  # the right bytes are already there (someone else's copy: left alone)
        conflicts.add(target, f"is not the locked model (sha256 {model.sha256[:12]}…)")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(cached, target)
    except OSError:
        os.symlink(cached, target)


# ----------------------------------------------------------------------------------------------
# ComfyUI, custom nodes, venv


def _comfyui_source(lock: Lock) -> Any:
    from .comfyui import source as src

    s = lock.comfyui.source
    if isinstance(s, GitSource):
        return src.GitSource(s.url, s.commit)
    if isinstance(s, ArchiveSource):
        return src.ArchiveSource(url=s.url, sha256=s.sha256, size=s.size, root=s.root)
    return src.PackagedSource(package=s.package, version=s.version, sha256=s.sha256, tree=s.tree)


def _restore_git_node(name: str, url: str, commit: str, target: Path, conflicts: _Conflicts, *,
                      allow_local: bool = False) -> None:
    if target.exists() or target.is_symlink():
        state = _git_state(target) if target.is_dir() else None
        if state is None or state[1] != commit:
            conflicts.add(target, f"is not custom node {name} at {commit[:12]}")
        return
    import git

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=target.parent))
    # git (and its submodules) may use only the allowed transports
    env = {"GIT_ALLOW_PROTOCOL": _GIT_PROTOCOLS + (":file" if allow_local else ""),
           "GIT_TERMINAL_PROMPT": "0"}
    try:
        repo = git.Repo.clone_from(url, tmp, no_checkout=True, env=env)
        repo.git.update_environment(**env)
        repo.git.checkout(commit)
        if (tmp / ".gitmodules").exists():
            repo.git.submodule("update", "--init", "--recursive")
        if repo.head.commit.hexsha != commit:
            raise RestoreError(f"custom node {name}: {url} checked out {repo.head.commit.hexsha}, "
                               f"not the locked {commit}")
        repo.close()
        os.rename(tmp, target)
    except git.GitCommandError as e:
        raise RestoreError(f"cannot restore custom node {name} from {url} at {commit}: "
                           f"{' '.join((e.stderr or '').split()) or e}") from e
    except git.exc.UnsafeProtocolError as e:  # GitPython's own refusal (ext::, …)
        raise LockError(f"the lock's custom node {name} source {url[:200]!r} uses a transport "
                        f"comfypack does not allow: {e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _restore_tree_node(contents: PackContents, name: str, sha256: str, target: Path,
                       conflicts: _Conflicts) -> None:
    if target.exists() or target.is_symlink():
        if not target.is_dir() or tree_sha256(target) != sha256:
            conflicts.add(target, f"is not the locked custom node {name}")
        return
    files = contents.trees.get(name)
    if not files:
        raise _bad_pack(f"custom node {name} is not a git repo and the pack does not carry it; "
                           "re-pack it with comfypack (which includes such nodes)")
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
            raise _bad_pack(f"custom node {name} in the pack does not match the lock's tree "
                               "sha256; the pack was modified")
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _installed(python: Path) -> dict[str, str]:
    return {p.name: p.version for p in list_packages(str(python))}


def _ensure_venv(venv: Path, lock: Lock, conflicts: _Conflicts) -> Path:
    """``venv`` with exactly the locked versions of the locked packages (``pip --no-deps``: the
    lock is complete, nothing is re-resolved). Returns its python."""
    python = _venv_python(venv)
    if venv.exists() and not (venv / "pyvenv.cfg").is_file():
        conflicts.add(venv, "exists and is not a virtual environment")
        return python
    want = lock.python.version.split(".")[:2]
    have = [str(sys.version_info.major), str(sys.version_info.minor)]
    if want != have:
        logger.warning("the lock was made with Python %s; this venv gets Python %s",
                       lock.python.version, ".".join(have))
    if not venv.exists():
        proc = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RestoreError(f"cannot create the venv {venv}: {proc.stderr.strip()[-500:]}")
    installed = _installed(python)
    todo = [requirement(p.name, p.version) for p in lock.packages if installed.get(p.name) != p.version]
    if todo:
        logger.info("installing %d locked package(s) into %s", len(todo), venv)
        # "--": whatever follows is a requirement, never an option
        cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
               "--disable-pip-version-check", "--no-input", "--", *todo]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RestoreError(f"pip could not install the locked packages into {venv} (exit "
                               f"{proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")
    return python


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
        raise RestoreError(f"{dest} exists, is not empty and is not a comfypack workspace; choose "
                           "another --dir, or pass --force to add to it (nothing there is deleted "
                           "or overwritten)")
    if marker is not None and marker.get("lock_sha256") != lock_sha and not force:
        raise RestoreError(f"{dest} is a workspace of another lock; choose another --dir, or pass "
                           "--force to add to it (nothing there is deleted or overwritten)")
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


def unpack(pack: Path, dest: Path, *, force: bool = False, venv: bool = True,
           sources_file: Path | None = None, progress: bool = True, hf_endpoint: str | None = None,
           civitai_url: str | None = None, home: Path | None = None, models: bool = True,
           allow_local_sources: bool = False) -> Workspace:
    """Restore ``pack`` into the workspace ``dest`` (see the module doc) and return it.

    A second call with the same pack is a quick check. ``venv=False`` skips the venv (the
    workspace then runs on this interpreter). ``sources_file``: extra model sources (sha256 or
    file name → URL), tried before the lock's. ``home``: ``$COMFYPACK_HOME`` (model cache,
    ComfyUI wheels, hash cache). ``models=False`` leaves the models out (an image build
    restores ComfyUI and nodes; a later call at start-up adds the models).
    ``allow_local_sources``: restore ``file://`` / path git remotes and ComfyUI archives (only for
    a pack you trust: they read this machine's files).
    """
    from .config import comfypack_home

    home = home or comfypack_home()
    contents = read_pack(pack)  # everything validated before anything is written
    check_sources(contents.lock, allow_local=allow_local_sources)  # before pip or git see it
    lock_sha = hashlib.sha256(contents.lock_text).hexdigest()
    dest = Path(dest).expanduser().absolute()
    created = _check_dest(dest, lock_sha, force)
    was_empty = not created and not any(dest.iterdir())
    hashes = HashCache(home / "cache" / "hashes.json")
    try:
        cached = _fetch_models(contents, model_cache_dir(home), hashes, sources_file=sources_file,
                               progress=progress, hf_endpoint=hf_endpoint,
                               civitai_url=civitai_url) if models else None
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RestoreError(f"cannot write {e.filename or home}: {e.strerror or e}") from e
    try:
        with _cleanup_on_failure(dest, created, was_empty):
            return _build(contents, dest, cached, hashes, home=home, venv=venv, lock_sha=lock_sha,
                          allow_local=allow_local_sources)
    except (zipfile.BadZipFile, zlib.error) as e:
        raise _bad_pack(f"{pack}: a damaged entry ({e}); refusing the pack") from e
    except OSError as e:
        raise RestoreError(f"restoring into {dest} failed: cannot write {e.filename or dest}: "
                           f"{e.strerror or e}") from e


def _build(contents: PackContents, dest: Path, cached: dict[str, Path] | None, hashes: HashCache, *,
           home: Path, venv: bool, lock_sha: str, allow_local: bool = False) -> Workspace:
    from .comfyui.source import install

    lock = contents.lock
    conflicts = _Conflicts()
    # the marker first: an interrupted restore is then continued by a rerun, not refused
    marker = _read_workspace_marker(dest) or {}
    want = {"lock_sha256": lock_sha, "pack_sha256": contents.sha256,
            "venv": bool(venv or marker.get("venv"))}
    if {k: marker.get(k) for k in want} != want:
        from . import __version__

        text = json.dumps({**want, "created_by": f"comfypack {__version__}"}, indent=2,
                          sort_keys=True) + "\n"
        tmp = dest / (WORKSPACE_MARKER + ".partial")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest / WORKSPACE_MARKER)
    comfyui_dir = dest / "comfyui"
    install(_comfyui_source(lock), comfyui_dir, cache_dir=home)
    for node in lock.custom_nodes:
        if node.name == COMFYPACK_NODES:
            continue  # comfypack itself provides its node package
        target = comfyui_dir / "custom_nodes" / node.name
        if isinstance(node.source, GitSource):
            if node.dirty:
                logger.warning("custom node %s had local changes when it was locked; restoring "
                               "the clean commit", node.name)
            _restore_git_node(node.name, node.source.url, node.source.commit, target, conflicts,
                              allow_local=allow_local)
        else:
            _restore_tree_node(contents, node.name, node.source.sha256, target, conflicts)
    if cached is not None:  # None: models left out
        for m in lock.models:
            _link_model(cached[m.sha256], comfyui_dir / "models" / m.folder / m.path, m, hashes,
                        conflicts)
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
        python = str(_ensure_venv(dest / "venv", lock, conflicts))
        conflicts.raise_if_any()
    return Workspace(root=dest, comfyui_dir=comfyui_dir, python=python,
                     workflow_path=dest / WORKFLOW_ENTRY, lock=lock)


# ----------------------------------------------------------------------------------------------
# verify


def verify(dest: Path, lock: Lock | None = None, *, progress: bool = False) -> list[str]:
    """Every difference between the workspace ``dest`` and ``lock`` (default: the workspace's own
    ``comfypack.lock.json``): workflow, ComfyUI version and source, custom node commits and trees,
    models (present, size, sha256 — all re-hashed), and package versions if it has a venv.
    Changes nothing; an empty list means it matches."""
    from .comfyui.process import node_package_dir
    from .comfyui.source import comfyui_version, read_marker
    from .lockfile import read_lock
    from .workflow import load_workflow

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
            state = _git_state(comfyui_dir)
            if state is None or state[1] != src.commit:
                say(f"comfyui: at {state[1] if state else 'no git commit'}, locked {src.commit}")
            elif state[2]:
                say("comfyui: the git work tree has local changes")
        elif isinstance(src, (PackagedSource, ArchiveSource)):
            marker = (read_marker(comfyui_dir) or {}).get("source")
            if marker != src.model_dump(mode="json"):
                locked = (f"{src.package}=={src.version}" if isinstance(src, PackagedSource)
                          else f"archive {src.url} ({src.sha256[:12]}…)")
                say(f"comfyui: installed from {marker}, locked {locked}")

    for node in lock.custom_nodes:
        if node.name == COMFYPACK_NODES:
            if isinstance(node.source, TreeSource):
                try:
                    own = tree_sha256(node_package_dir() / COMFYPACK_NODES)
                except ComfyPackError:
                    own = None
                if own != node.source.sha256:
                    say(f"custom node {COMFYPACK_NODES}: this comfypack's node package differs from "
                        "the locked one (another comfypack version?)")
            continue
        target = comfyui_dir / "custom_nodes" / node.name
        if not target.is_dir():
            say(f"custom node {node.name}: missing")
        elif isinstance(node.source, GitSource):
            state = _git_state(target)
            if state is None:
                say(f"custom node {node.name}: not a git checkout")
            elif state[1] != node.source.commit:
                say(f"custom node {node.name}: at commit {state[1]}, locked {node.source.commit}")
            elif state[2]:
                say(f"custom node {node.name}: the git work tree has local changes")
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

    venv_python = _venv_python(dest / "venv")
    if venv_python.exists():
        installed = _installed(venv_python)
        locked = {p.name: p.version for p in lock.packages}
        for name, version in sorted(locked.items()):
            have = installed.get(name)
            if have is None:
                say(f"package {name}: missing, locked {version}")
            elif have != version:
                say(f"package {name}: {have} installed, locked {version}")
        for name in sorted(set(installed) - set(locked)):
            say(f"package {name}: {installed[name]} installed, not in the lock")
    return diffs
