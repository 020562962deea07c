"""The pack ``NAME.cpack.zip``: write one (:func:`create_pack`), read one (:func:`read_pack`).

A pack holds::

    workflow_api.json        the API-format workflow (normalised JSON)
    workflow.json            the UI graph, when given
    comfypack.lock.json      the lock (see :mod:`comfypack.lock.create`)
    interface.json           the interface document (JSON Schema of requests and responses)
    assets/<path>            input files the workflow names (from ComfyUI's input folder)
    custom_nodes/<name>/...  custom nodes that are not git checkouts (nowhere else to get them)
    custom_nodes/<name>.py   single-file custom nodes
    patches/<name>.patch     local changes of a git custom node (applied on restore)
    models/<folder>/<path>   model weights, only with ``include_models``

Entries are written in a fixed order with a fixed timestamp and mode, so the same inputs give
the same zip bytes. Weights are never included unless asked: the lock says where to fetch them.

Reading is where a pack is checked, before anything is written anywhere: every entry name (no
absolute paths, no ``..``, no links, no duplicates), the sizes the zip directory promises
(:class:`PackLimits`: total uncompressed bytes, entry count, compression ratio — a zip bomb is
refused unread), and every entry against the lock (workflow hash, model and patch sizes, nodes the
lock lists). A refused pack is :class:`~comfypack.errors.InvalidPack` (exit 2).
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
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_file
from ..errors import FieldError, InvalidPack, LockError, WorkflowError
from ..files.hashing import sha256_file
from ..lock.trees import safe_relpath, tree_files, tree_sha256
from ..lockfile import COMFYPACK_NODES, FileSource, GitSource, Lock, TreeSource, dumps, loads

__all__ = [
    "create_pack",
    "find_assets",
    "WORKFLOW_ENTRY",
    "UI_WORKFLOW_ENTRY",
    "LOCK_ENTRY",
    "INTERFACE_ENTRY",
    "ZIP_DATE",
    "PackLimits",
    "PackContents",
    "read_pack",
    "entry_info",
]

logger = logging.getLogger(__name__)

WORKFLOW_ENTRY = "workflow_api.json"
UI_WORKFLOW_ENTRY = "workflow.json"
LOCK_ENTRY = "comfypack.lock.json"
INTERFACE_ENTRY = "interface.json"
#: every entry's timestamp (the earliest a zip can hold): packs carry no build time.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_JSON_LIMIT = 64 * 1024 * 1024  # the JSON entries of a pack are small; refuse a zip bomb
_NAME_RE = re.compile(r"^(?!\.\.?$)[^/\\\x00]+$")

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
            rel = safe_relpath(value)
            if rel is None or rel in found:
                continue
            path = input_dir / rel
            if path.is_file():
                found[rel] = path
    return sorted(found.items())


def entry_info(name: str, *, executable: bool = False, compress: bool = True) -> zipfile.ZipInfo:
    """The zip entry header every pack entry gets: fixed date, unix mode (0644 / 0755), deflated."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.create_system = 3  # unix: the mode below means what it says on every platform
    info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return info


def _add_file(zf: zipfile.ZipFile, name: str, path: Path, *, compress: bool = True) -> None:
    info = entry_info(name, executable=bool(path.stat().st_mode & 0o111), compress=compress)
    info.file_size = path.stat().st_size
    with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _add_bytes(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    zf.writestr(entry_info(name), data)


@contextlib.contextmanager
def _atomic_zip(out: Path) -> Iterator[zipfile.ZipFile]:
    with atomic_file(out) as f, zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        yield zf


def create_pack(
    workflow_path: Path,
    comfyui_dir: Path,
    out: Path,
    *,
    lock: Lock | None = None,
    ui_workflow: Path | None = None,
    include_models: bool = False,
    input_dir: Path | None = None,
    **lock_kwargs: Any,
) -> Path:
    """Write ``out`` (a ``.cpack.zip``) for ``workflow_path`` on ``comfyui_dir``; returns ``out``.

    ``lock``: use this lock (it must be for this workflow) instead of locking now with
    ``lock_kwargs`` (see :func:`comfypack.lock.create.create_lock`). ``input_dir``: where the workflow's
    input files are (default: ``comfyui_dir/input``). ``include_models``: also carry the weights
    (each checked against the lock's sha256 first).
    """
    from ..lock.create import create_lock, workflow_sha256
    from ..lock.gitstate import local_patch
    from ..lock.models import find_models
    from ..workflow.interface import load_workflow, parse_interface
    from ..workflow.schema import interface_document

    comfyui_dir = Path(comfyui_dir)
    workflow = load_workflow(workflow_path)
    interface = parse_interface(workflow)
    if lock is None:
        lock = create_lock(Path(workflow_path), comfyui_dir, **lock_kwargs)
    elif lock.workflow.sha256 != workflow_sha256(workflow):
        raise LockError(
            f"the lock is for another workflow (its workflow sha256 differs from "
            f"{workflow_path}'s); lock this workflow again"
        )

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
            raise LockError(
                f"custom node {node.name} changed since it was locked (or is missing "
                f"from {folder.parent}); lock again"
            )
        files = tree_files(folder)
        links = [rel for rel, p in files if p.is_symlink()]
        if links:
            raise LockError(
                f"custom node {node.name} contains symbolic links ({', '.join(links[:3])}); "
                "a pack carries plain files only — make it a git repo with a remote"
            )
        trees.append((node.name, files))

    singles: list[tuple[str, Path]] = []
    patches: list[tuple[str, bytes]] = []
    for node in lock.custom_nodes:
        node_path = comfyui_dir / "custom_nodes" / node.name
        if isinstance(node.source, FileSource):
            if not node_path.is_file() or sha256_file(node_path) != node.source.sha256:
                raise LockError(
                    f"custom node {node.name} changed since it was locked (or is missing "
                    f"from {node_path.parent}); lock again"
                )
            singles.append((node.name, node_path))
        elif node.patch is not None and isinstance(node.source, GitSource):
            diff = local_patch(node_path) if node_path.is_dir() else b""
            if hashlib.sha256(diff).hexdigest() != node.patch.sha256:
                raise LockError(
                    f"custom node {node.name}: its local changes differ from the locked "
                    "ones; lock again"
                )
            patches.append((node.name, diff))

    models: list[tuple[str, Path]] = []
    if include_models:
        local = {(folder, rel): path for folder, rel, path in find_models(workflow, comfyui_dir)}
        from ..files.hashing import hash_files

        wanted = []
        for m in lock.models:
            path = local.get((m.folder, m.path))
            if path is None:
                raise LockError(
                    f"model {m.folder}/{m.path} is in the lock but not in {comfyui_dir}"
                )
            wanted.append((m, path))
        digests = hash_files([p for _, p in wanted], progress=False)
        for m, path in wanted:
            if digests[path] != m.sha256:
                raise LockError(
                    f"model {m.folder}/{m.path} changed since it was locked; lock again"
                )
            models.append((f"models/{m.folder}/{m.path}", path))

    out = Path(out)
    with _atomic_zip(out) as zf:
        _add_bytes(
            zf,
            WORKFLOW_ENTRY,
            (json.dumps(workflow, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        )
        if ui_bytes is not None:
            _add_bytes(zf, UI_WORKFLOW_ENTRY, ui_bytes)
        _add_bytes(zf, LOCK_ENTRY, dumps(lock).encode("utf-8"))
        _add_bytes(
            zf,
            INTERFACE_ENTRY,
            (json.dumps(interface_document(interface), indent=2, sort_keys=True) + "\n").encode(
                "utf-8"
            ),
        )
        for rel, path in assets:
            _add_file(zf, f"assets/{rel}", path)
        for name, files in trees:
            for rel, path in files:
                _add_file(zf, f"custom_nodes/{name}/{rel}", path)
        for name, path in singles:
            _add_file(zf, f"custom_nodes/{name}", path)
        for name, diff in patches:
            _add_bytes(zf, f"patches/{name}.patch", diff)
        for name, path in sorted(models):
            _add_file(zf, name, path, compress=False)
    logger.info("wrote %s (%d asset(s), %d model(s) included)", out, len(assets), len(models))
    return out


# ----------------------------------------------------------------------------------------------
# reading a pack


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
            return cls(
                max_bytes=int(env.get("COMFYPACK_PACK_MAX_BYTES") or cls.max_bytes),
                max_entries=int(env.get("COMFYPACK_PACK_MAX_ENTRIES") or cls.max_entries),
                max_ratio=float(env.get("COMFYPACK_PACK_MAX_RATIO") or cls.max_ratio),
            )
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
    #: single-file custom node name (``x.py``) → zip entry name
    files: dict[str, str] = field(default_factory=dict)
    #: custom node name → zip entry name of its local changes (``patches/<name>.patch``)
    patches: dict[str, str] = field(default_factory=dict)

    def read(self, entry: str) -> bytes:
        """The bytes of a (small) entry: a patch, a single-file node."""
        with zipfile.ZipFile(self.path) as zf:
            return _read_small(zf, zf.getinfo(entry))


def _bad_pack(message: str, **kw: Any) -> InvalidPack:
    return InvalidPack(message, **kw)


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
        if not _NAME_RE.match(m.folder) or safe_relpath(m.path) != m.path:
            raise _bad_pack(
                f"the lock names model {m.folder!r}/{m.path!r}, which is not a plain "
                "relative path; refusing the pack"
            )
    for n in lock.custom_nodes:
        if not _NAME_RE.match(n.name):
            raise _bad_pack(
                f"the lock names custom node {n.name!r}, which is not a plain folder "
                "name; refusing the pack"
            )


def _check_sizes(pack: Path, infos: list[zipfile.ZipInfo], limits: PackLimits) -> None:
    """Refuse a pack whose directory promises more than ``limits`` allow (before any reading)."""
    if len(infos) > limits.max_entries:
        raise _bad_pack(
            f"{pack}: {len(infos)} entries, more than the limit of {limits.max_entries} "
            "(COMFYPACK_PACK_MAX_ENTRIES); refusing the pack"
        )
    total = sum(i.file_size for i in infos)
    if total > limits.max_bytes:
        raise _bad_pack(
            f"{pack}: expands to {total} bytes, more than the limit of {limits.max_bytes} "
            "(COMFYPACK_PACK_MAX_BYTES); refusing the pack"
        )
    for info in infos:
        if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(
            1, info.compress_size
        ):
            raise _bad_pack(
                f"{pack}: entry {info.filename!r} expands {info.compress_size} bytes to "
                f"{info.file_size} (more than {limits.max_ratio:g}:1, "
                "COMFYPACK_PACK_MAX_RATIO); refusing a zip bomb"
            )
    packed = sum(i.compress_size for i in infos)
    if total > 1 << 20 and total > limits.max_ratio * max(1, packed):
        raise _bad_pack(
            f"{pack}: expands {packed} compressed bytes to {total} (more than "
            f"{limits.max_ratio:g}:1, COMFYPACK_PACK_MAX_RATIO); refusing a zip bomb"
        )


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
            raise _bad_pack(
                f"{pack}: refusing an unsafe pack — "
                + "; ".join(problems[:5])
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
                details=[FieldError(None, p) for p in problems],
            )
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
        from ..lock.create import workflow_sha256
        from ..workflow.interface import load_workflow

        try:
            workflow = load_workflow(json.loads(workflow_bytes))
        except ValueError as e:
            raise _bad_pack(f"{pack}: {WORKFLOW_ENTRY} is not valid JSON ({e})") from e
        if workflow_sha256(workflow) != lock.workflow.sha256:
            raise _bad_pack(
                f"{pack}: {WORKFLOW_ENTRY} does not match the lock's workflow sha256; "
                "the pack was modified"
            )
        contents = PackContents(
            path=pack,
            sha256=digest,
            lock=lock,
            lock_text=lock_text,
            workflow=workflow,
            workflow_bytes=workflow_bytes,
        )
        if UI_WORKFLOW_ENTRY in infos:
            contents.ui_workflow = _read_small(zf, infos[UI_WORKFLOW_ENTRY])
        if INTERFACE_ENTRY in infos:
            contents.interface = _read_small(zf, infos[INTERFACE_ENTRY])
        locked = {(m.folder, m.path): m for m in lock.models}
        trees = {
            n.name
            for n in lock.custom_nodes
            if isinstance(n.source, TreeSource) and n.name != COMFYPACK_NODES
        }
        singles = {n.name: n for n in lock.custom_nodes if isinstance(n.source, FileSource)}
        patched = {n.name: n.patch for n in lock.custom_nodes if n.patch is not None}
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
                    raise _bad_pack(
                        f"{pack}: entry {name} is a model the lock does not list; refusing it"
                    )
                if info.file_size != model.size:
                    raise _bad_pack(
                        f"{pack}: {name} is {info.file_size} bytes but the lock says "
                        f"{model.size}; the pack was modified"
                    )
                contents.models[(folder, path)] = name
            elif top == "custom_nodes" and rest in singles:
                contents.files[rest] = name
            elif top == "patches" and rest.endswith(".patch") and rest[:-6] in patched:
                patch = patched[rest[:-6]]
                assert patch is not None
                if info.file_size != patch.size:
                    raise _bad_pack(
                        f"{pack}: {name} is {info.file_size} bytes but the lock says "
                        f"{patch.size}; the pack was modified"
                    )
                contents.patches[rest[:-6]] = name
            elif top == "custom_nodes" and "/" in rest:
                node, _, path = rest.partition("/")
                if node not in trees:
                    raise _bad_pack(
                        f"{pack}: entry {name} belongs to no locked custom node; refusing it"
                    )
                contents.trees.setdefault(node, {})[path] = name
            else:
                unknown.append(name)
        if unknown:
            logger.warning(
                "%s: ignoring entries this comfypack does not know: %s",
                pack,
                ", ".join(unknown[:5]),
            )
    return contents
