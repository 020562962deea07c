"""Write files so that readers see the old file or the new one, never half of one.

:func:`atomic_file` yields a temp file in the target's folder and renames it over the target
when the block ends without an error (removing it otherwise); :func:`atomic_write` writes text or
bytes that way. ``exclusive=True`` never replaces anything: the finished file is linked into
place, and :class:`FileExistsError` says something appeared there meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_file", "atomic_write", "place_new"]


def place_new(tmp: str | Path, target: Path) -> None:
    """Move the finished file ``tmp`` to ``target`` without ever replacing what is there
    (:class:`FileExistsError` if something is)."""
    try:
        os.link(tmp, target)  # fails if something is there: never replaces
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        if target.exists() or target.is_symlink():
            raise FileExistsError(str(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(
    path: Path, *, mode: int = 0o644, exclusive: bool = False, suffix: str = ".partial"
) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` (with permissions ``mode``) when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
        os.chmod(tmp, mode)
        if exclusive:
            place_new(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def atomic_write(
    path: Path, data: str | bytes, *, mode: int = 0o644, exclusive: bool = False
) -> None:
    """Write ``data`` (text as UTF-8 with ``\\n`` line ends) to ``path`` atomically."""
    with atomic_file(path, mode=mode, exclusive=exclusive) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
