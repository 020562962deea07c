"""The content-addressed model cache: ``$COMFYPACK_HOME/models/sha256/<hex>``.

:func:`fetch_models` puts every model a lock names into the cache — from the pack (carried
weights), the user's sources file or the lock's sources, in parallel, each verified by size and
sha256 *before* it enters the cache (:func:`comfypack.files.download.download`). A cached file is
checked again (size, then sha256 through the stat-and-ctime-keyed hash cache) before it is used:
a damaged one is fetched again, never linked. Cached files are read-only, and
:func:`link_model` gives a workspace a reflink (copy-on-write) where the file system has them,
else a hard link to the read-only file, or a copy when asked: a workspace cannot write into the
cache through its models.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..atomic import atomic_file
from ..errors import ComfyPackError, FieldError, InvalidPack, RestoreError
from ..files.hashing import HashCache, sha256_file
from ..lockfile import Model, ModelSource
from .archive import PackContents

__all__ = ["model_cache_dir", "fetch_models", "link_model", "Conflicts"]

logger = logging.getLogger(__name__)


def model_cache_dir(home: Path | None = None) -> Path:
    """The content-addressed model cache: ``$COMFYPACK_HOME/models/sha256``."""
    from ..config import comfypack_home

    return (home or comfypack_home()) / "models" / "sha256"


class Conflicts:
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
                + "; ".join(self.items[:5])
                + (" …" if len(self.items) > 5 else ""),
                details=[FieldError(None, i) for i in self.items],
            )


def _user_sources(sources_file: Path | None, model: Model) -> list[ModelSource]:
    if sources_file is None:
        return []
    from ..lock.sources import ModelFile, SourcesFile

    resolver = SourcesFile(Path(sources_file))
    return list(
        resolver.resolve(
            ModelFile(
                folder=model.folder,
                path=model.path,
                size=model.size,
                sha256=model.sha256,
                local_path=Path(model.path),
            )
        )
    )


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
    # verified inside the block: a mismatch raises before the file reaches the cache
    with atomic_file(target, mode=0o444) as out, zipfile.ZipFile(pack) as zf, zf.open(entry) as src:
        h = hashlib.sha256()
        n = 0
        while chunk := src.read(1 << 20):
            n += len(chunk)
            if n > model.size:
                break
            h.update(chunk)
            out.write(chunk)
        if n != model.size or h.hexdigest() != model.sha256:
            raise RestoreError(
                f"{model.folder}/{model.path} in the pack does not match the lock "
                f"(sha256 {model.sha256[:12]}…, {model.size} bytes); the pack was "
                "modified — refusing it"
            )


@contextlib.contextmanager
def _shared_progress(enabled: bool) -> Iterator[Any]:
    """The display the parallel downloads add their bars to (hashing's process-wide one);
    ``False`` when disabled."""
    if not enabled:
        yield False
        return
    from ..files.hashing import shared_progress

    with shared_progress() as prog:
        yield prog


def fetch_models(
    contents: PackContents,
    cache: Path,
    hashes: HashCache,
    *,
    sources_file: Path | None,
    progress: bool,
    hf_endpoint: str | None,
    civitai_url: str | None,
    workers: int = 4,
) -> dict[str, Path]:
    """Every locked model in the cache (fetched and verified as needed): ``sha256 → file``.
    All failures are collected into one :class:`RestoreError`."""
    from ..files.download import download

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
            logger.warning(
                "the cached model %s is damaged (size or sha256 differs); fetching it again", path
            )
            _unlink(path)
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
                download(
                    source,
                    target,
                    sha256=m.sha256,
                    size=m.size,
                    progress=shown,
                    hf_endpoint=hf_endpoint,
                    civitai_url=civitai_url,
                )
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
        with (
            _shared_progress(progress) as bars,
            ThreadPoolExecutor(
                max_workers=max(1, min(workers, len(todo))), thread_name_prefix="fetch"
            ) as pool,
        ):
            shown = bars
            list(pool.map(guarded, todo))
    hashes.save()
    if failures:
        names: dict[str, list[str]] = {}
        for m in contents.lock.models:
            names.setdefault(m.sha256, []).append(f"{m.folder}/{m.path}")
        details = [FieldError(", ".join(names[d]), why) for d, why in sorted(failures.items())]
        listed = "; ".join(
            f"{', '.join(names[d])} (sha256 {d[:12]}…): {why}"
            for d, why in sorted(failures.items())
        )
        tampered = any("the pack was modified" in why for why in failures.values())
        hint = (
            ""
            if tampered
            else (
                " — give a source with --sources FILE (a JSON object mapping each model's sha256 or file "
                f"name to a URL), or put the file at {cache}/<sha256>"
            )
        )
        if tampered:
            raise InvalidPack(f"refusing the pack: {listed}", details=details)
        raise RestoreError(f"cannot get {len(failures)} model(s): {listed}{hint}", details=details)
    return {d: cache / d for d in by_hash}


def link_model(
    cached: Path,
    target: Path,
    model: Model,
    hashes: HashCache,
    conflicts: Conflicts,
    *,
    copy: bool = False,
) -> None:
    """Put the cached model at ``target`` so that writing to ``target`` cannot change the cache:
    a reflink (copy-on-write clone) where the file system has them, else a hard link to the
    read-only cached file (``copy``: always a copy). What is already there is left alone: the
    right bytes are fine, anything else is a conflict."""
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
        if not copy and _reflink_or_link(cached, target):
            return
        with atomic_file(target, mode=0o444, exclusive=True) as out, open(cached, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
    except FileExistsError:
        conflicts.add(target, "appeared while restoring")


def _reflink_or_link(cached: Path, target: Path) -> bool:
    """A copy-on-write clone of ``cached`` at ``target`` (Linux FICLONE), else a hard link to
    it (the cached file is read-only); ``False`` when neither works here."""
    try:
        import fcntl

        with atomic_file(target, mode=0o444, exclusive=True) as out, open(cached, "rb") as src:
            fcntl.ioctl(out.fileno(), 0x40049409, src.fileno())  # FICLONE
        return True
    except (ImportError, OSError) as e:
        if isinstance(e, FileExistsError):
            raise
    try:
        os.link(cached, target)
        return True
    except FileExistsError:
        raise
    except OSError:
        return False


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
