"""sha256 of (big) files: parallel, cached by stat, with progress.

- :func:`sha256_file` reads in 1 MiB chunks into one reused buffer; hashlib releases the GIL
  for buffers that large, so :func:`hash_files` gets real parallelism from a thread pool.
- :class:`HashCache` maps a file's identity — ``(realpath, size, mtime_ns, ctime_ns, inode)`` — to its
  sha256, so re-locking an unchanged environment hashes nothing. It is a JSON file written
  atomically (temp file + ``os.replace``). A file modified within :attr:`HashCache.racy_ns` of
  being hashed is not cached: a later write in the same timestamp tick would go unnoticed
  (git's "racy clean" problem).
- ``progress=True`` shows a rich progress bar by bytes (on stderr); pass a
  :class:`rich.progress.Progress` instead to add a task to one you already display.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write
from ..config import comfypack_home

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "sha256_file",
    "HashCache",
    "default_hash_cache",
    "hash_files",
    "shared_progress",
    "progress_bar",
]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 2


def sha256_file(
    path: Path, *, chunk: int = 1 << 20, on_bytes: Callable[[int], None] | None = None
) -> str:
    """The hex sha256 of ``path``'s bytes. ``on_bytes(n)`` is called after every chunk read."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
    return h.hexdigest()


def _identity(path: Path) -> tuple[str, dict[str, int]]:
    real = os.path.realpath(path)
    st = os.stat(real)
    # ctime too: a write that puts the old mtime back (os.utime) still changes the ctime
    return real, {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }


class HashCache:
    """``(realpath, size, mtime_ns, ctime_ns, inode) -> sha256``; ``path=None`` keeps it in memory only.

    One entry per real path (a changed file replaces its entry), safe to use from threads.
    :meth:`save` merges with what another process may have written meanwhile.
    """

    #: a file whose mtime is this close to "now" when it is put is not cached (racy clean).
    racy_ns: int = 2_000_000_000

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        if self.path is not None:
            self._entries = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            logger.warning("ignoring the hash cache %s (%s); files will be hashed again", path, e)
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        entries = data.get("entries")
        return (
            {k: v for k, v in entries.items() if isinstance(v, dict)}
            if isinstance(entries, dict)
            else {}
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: Path) -> str | None:
        """The cached sha256 of ``path`` if the file is unchanged since it was put, else ``None``."""
        try:
            real, ident = _identity(path)
        except OSError:
            return None
        with self._lock:
            entry = self._entries.get(real)
        if entry is None or any(entry.get(k) != v for k, v in ident.items()):
            return None
        digest = entry.get("sha256")
        return digest if isinstance(digest, str) else None

    def put(self, path: Path, digest: str) -> None:
        """Record ``digest`` for ``path`` as it is now (skipped if it was modified just now)."""
        try:
            real, ident = _identity(path)
        except OSError:
            return
        if ident["mtime_ns"] >= time.time_ns() - self.racy_ns:
            logger.debug(
                "not caching the hash of %s: modified less than %.0f s ago",
                path,
                self.racy_ns / 1e9,
            )
            return
        with self._lock:
            self._entries[real] = {**ident, "sha256": digest}
            self._dirty.add(real)

    def save(self) -> None:
        """Write the cache (no-op in memory or when nothing changed), atomically."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            merged = self._read(self.path)
            merged.update({k: self._entries[k] for k in self._dirty})
            self._entries = merged
            self._dirty.clear()
            text = json.dumps(
                {"version": _CACHE_VERSION, "entries": merged},
                sort_keys=True,
                separators=(",", ":"),
            )
        try:
            atomic_write(self.path, text)
        except OSError as e:
            logger.warning("cannot write the hash cache %s: %s", self.path, e)


def default_hash_cache() -> HashCache:
    """The user's persistent cache: ``$COMFYPACK_HOME/cache/hashes.json``."""
    return HashCache(comfypack_home() / "cache" / "hashes.json")


def _default_workers() -> int:
    return max(1, min(32, os.cpu_count() or 1))


def hash_files(
    paths: Iterable[Path],
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    progress: bool | Progress = False,
) -> dict[Path, str]:
    """sha256 of every file in ``paths`` (keyed by the paths as given).

    Files already in ``cache`` (unchanged) are not read; the others are hashed in parallel on
    ``workers`` threads (default: one per CPU) and put in the cache, which is saved at the end.
    Two paths to the same file are hashed once. A missing or unreadable file raises ``OSError``.
    """
    paths = list(paths)
    result: dict[Path, str] = {}
    todo: dict[str, list[Path]] = {}  # realpath -> the given paths naming it
    for p in paths:
        digest = cache.get(p) if cache is not None else None
        if digest is not None:
            result[p] = digest
        else:
            todo.setdefault(os.path.realpath(p), []).append(p)
    if not todo:
        return result

    sizes = {real: os.stat(real).st_size for real in todo}
    # Big files first: the pool stays busy to the end instead of waiting on one late giant.
    order = sorted(todo, key=lambda r: (-sizes[r], r))
    n_workers = max(1, min(workers or _default_workers(), len(order)))

    label = f"sha256 ({len(order)} file{'s' * (len(order) != 1)})"
    with progress_bar(progress, label, sum(sizes.values())) as bar:
        advance = bar.advance if bar is not None else None

        def work(real: str) -> tuple[str, str]:
            before = _identity(Path(real))
            digest = sha256_file(Path(real), on_bytes=advance)
            # Cache only what did not change while it was read.
            if cache is not None and _identity(Path(real)) == before:
                cache.put(Path(real), digest)
            return real, digest

        if n_workers == 1:
            done = [work(real) for real in order]
        else:
            with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="sha256") as pool:
                done = list(pool.map(work, order))
    for real, digest in done:
        for p in todo[real]:
            result[p] = digest
    if cache is not None:
        cache.save()
    return result


class _Bar:
    """One task on a rich progress display; ``advance`` and ``reset`` are thread-safe."""

    def __init__(self, prog: Any, task: Any, total: int) -> None:
        self._prog, self._task, self._total = prog, task, total

    def advance(self, n: int) -> None:
        self._prog.advance(self._task, n)

    def reset(self) -> None:
        self._prog.reset(self._task, total=self._total)


_shared_lock = threading.Lock()
_shared: dict[str, Any] = {"progress": None, "users": 0}


@contextlib.contextmanager
def shared_progress() -> Iterator[Progress]:
    """The process's one rich byte-progress display (stderr), shared by every concurrent user:
    rich allows one live display at a time. Reference-counted; stops when the last user leaves."""
    with _shared_lock:
        if _shared["users"] == 0:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            prog = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            prog.start()
            _shared["progress"] = prog
        _shared["users"] += 1
        prog = _shared["progress"]
    try:
        yield prog
    finally:
        with _shared_lock:
            _shared["users"] -= 1
            if _shared["users"] == 0:
                prog.stop()
                _shared["progress"] = None


@contextlib.contextmanager
def progress_bar(progress: bool | Progress, description: str, total: int) -> Iterator[_Bar | None]:
    """A progress task for ``total`` bytes. ``True``: on the :func:`shared_progress` display; a
    ``Progress``: a task on it; ``False``: ``None``."""
    if progress is False:
        yield None
        return
    shared = progress is True
    display: contextlib.AbstractContextManager[Progress] = (
        shared_progress() if shared else contextlib.nullcontext(progress)  # type: ignore[arg-type]
    )
    with display as prog:
        task = prog.add_task(description, total=total)
        try:
            yield _Bar(prog, task, total)
        finally:
            if shared:  # a caller's own display keeps its finished tasks
                prog.remove_task(task)
