"""Files as a pack and a lock see them: clean relative paths, a folder's files, content hashes.

:func:`safe_relpath` turns a workflow's or a lock's path into a clean relative POSIX path (or
refuses it); :func:`tree_files` lists a folder's files the way a pack carries them (VCS folders,
``__pycache__`` and ``*.pyc`` left out, links listed, not followed); :func:`tree_sha256` is the
content hash of such a folder.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path

__all__ = ["safe_relpath", "tree_files", "tree_sha256", "SKIP_NAMES"]

#: never part of a folder's content
SKIP_NAMES = frozenset({"__pycache__", ".git", ".hg", ".svn", ".DS_Store"})


def safe_relpath(value: str) -> str | None:
    """``value`` as a clean relative POSIX path inside a folder, or ``None`` if it cannot be one."""
    if not value or len(value) > 1024 or "\x00" in value or "\n" in value:
        return None
    rel = value.replace("\\", "/")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        return None
    rel = posixpath.normpath(rel)
    if rel in (".", "") or rel == ".." or rel.startswith("../"):
        return None
    return rel


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """Every file (and link) under ``root`` as ``(relative POSIX path, path)``, sorted."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            if d in SKIP_NAMES:
                continue
            full = Path(dirpath) / d
            if full.is_symlink():  # recorded as a link, not followed
                out.append((full.relative_to(root).as_posix(), full))
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if name in SKIP_NAMES or name.endswith((".pyc", ".pyo")):
                continue
            full = Path(dirpath) / name
            out.append((full.relative_to(root).as_posix(), full))
    return sorted(out)


def tree_sha256(root: Path) -> str:
    """A content hash of a folder: relative paths, executable bits, file hashes, link targets.

    ``__pycache__``, ``*.pyc`` and VCS folders are left out, so importing a node does not change it.
    """
    root = Path(root)
    h = hashlib.sha256(b"comfypack-tree-v1\n")
    for rel, path in tree_files(root):
        if path.is_symlink():
            h.update(f"L {rel}\0{os.readlink(path)}\n".encode())
            continue
        mode = "x" if path.stat().st_mode & 0o111 else "f"
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        h.update(f"{mode} {rel}\0{digest.hexdigest()}\n".encode())
    return h.hexdigest()
