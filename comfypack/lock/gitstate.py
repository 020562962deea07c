"""What a git work tree is at: remote, commit, local changes, whether the commit was pushed.

Used by the lock (record a checkout), the restore (check and patch one) and ``verify``.
:func:`git_state` reads a checkout with gitpython; :func:`local_patch` writes its local changes
(tracked and untracked files, binary-safe, byte-for-byte reproducible) as a patch built in a
throw-away index, so the user's own index is never touched; :func:`apply_patch` applies one to a
clean checkout of the same commit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import LockError

__all__ = ["GitState", "git_state", "local_patch", "apply_patch", "clean_url", "INSTALL_MARKER"]

#: written by ``comfypack comfyui install`` into the tree it installs (not a local change).
INSTALL_MARKER = ".comfypack-source.json"
#: left out of "local changes": what running or installing a node writes
_NOISE = (
    ":(exclude,glob)**/__pycache__/**",
    ":(exclude,glob)**/*.pyc",
    ":(exclude,glob)**/*.pyo",
    f":(exclude){INSTALL_MARKER}",
)
_GIT_CONFIG = [
    "-c",
    "core.quotePath=false",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "core.autocrlf=false",
    "-c",
    "color.ui=false",
]


@dataclass(frozen=True)
class GitState:
    """A checkout: ``url`` of its remote (``origin`` first; credentials removed) or ``None``,
    the ``commit`` at HEAD, ``dirty`` (uncommitted changes, untracked files included) and
    ``pushed`` (a remote-tracking branch contains the commit, as far as this clone knows)."""

    url: str | None
    commit: str
    dirty: bool
    pushed: bool


def clean_url(url: str) -> str:
    """A remote URL without credentials (``https://user:token@host`` → ``https://host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def git_state(path: Path) -> GitState | None:
    """The state of the git work tree at ``path`` itself (``None``: not a checkout). A broken
    checkout raises :class:`LockError` naming it."""
    path = Path(path)
    if not (path / ".git").exists():
        return None
    import git

    try:
        repo = git.Repo(path, search_parent_directories=False)
        with repo:
            commit = repo.head.commit.hexsha
            remotes = {r.name: r for r in repo.remotes}
            remote = remotes.get("origin") or (next(iter(remotes.values())) if remotes else None)
            url = clean_url(next(iter(remote.urls))) if remote is not None else None
            untracked = [
                p
                for p in repo.untracked_files
                if "__pycache__" not in p.split("/")
                and not p.endswith((".pyc", ".pyo"))
                and p != INSTALL_MARKER
            ]
            dirty = repo.is_dirty(untracked_files=False) or bool(untracked)
            pushed = bool(
                remote is not None and repo.git.branch("-r", "--contains", commit).strip()
            )
    except (git.InvalidGitRepositoryError, git.GitCommandError, ValueError, OSError) as e:
        raise LockError(
            f"{path}: cannot read its git state ({' '.join(str(e).split())[:300]})"
        ) from e
    return GitState(url=url, commit=commit, dirty=dirty, pushed=pushed)


def _git(
    path: Path, *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> bytes:
    proc = subprocess.run(
        ["git", *_GIT_CONFIG, *args],
        cwd=path,
        capture_output=True,
        input=input,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
    )
    if proc.returncode != 0:
        raise LockError(
            f"{path}: git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-300:]}"
        )
    return proc.stdout


def local_patch(path: Path) -> bytes:
    """The work tree's changes against HEAD (tracked and untracked files, ignored ones and
    ``__pycache__`` left out) as a binary git patch; ``b""`` when there are none."""
    with tempfile.TemporaryDirectory(prefix="comfypack-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(path, "read-tree", "HEAD", env=env)
        _git(path, "add", "-A", "--", ".", *_NOISE, env=env)
        return _git(
            path,
            "diff",
            "--cached",
            "--binary",
            "--full-index",
            "--no-ext-diff",
            "--no-renames",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            "HEAD",
            env=env,
        )


def apply_patch(path: Path, patch: bytes) -> None:
    """Apply ``patch`` (from :func:`local_patch`) to the clean checkout at ``path``."""
    if not patch:
        return
    fd, name = tempfile.mkstemp(prefix="comfypack-", suffix=".patch")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(patch)
        _git(path, "apply", "--binary", "--whitespace=nowarn", name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
