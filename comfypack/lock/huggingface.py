"""Model sources on the Hugging Face Hub: :class:`HFCacheResolver` (the local cache — an LFS blob's
file name *is* its sha256) and :class:`HFApiResolver` (the Hub API, asked only about repos already
seen; a candidate counts only when its LFS sha256 is the model's). Both record the canonical
``https://huggingface.co/…`` URL at a commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..lockfile import ModelSource
from .sources import _SHA256_RE, ModelFile, _hf_url, _Unavailable

__all__ = ["HFCacheResolver", "HFApiResolver"]

logger = logging.getLogger(__name__)


def _hf_source(repo: str, revision: str, file: str) -> ModelSource:
    """A Hugging Face source: ``repo`` at an immutable ``revision``, ``file`` in it."""
    return ModelSource(
        type="huggingface",
        url=_hf_url(repo, file, revision),
        repo=repo,
        revision=revision,
        file=file,
    )


def _repo_of(dirname: str) -> str | None:
    if not dirname.startswith("models--"):
        return None
    parts = dirname[len("models--") :].split("--")
    return "/".join(parts) if len(parts) == 2 and all(parts) else None


_Hit = tuple[tuple[Any, ...], Path, str, str]  # (rank, repo dir, revision, file)


class HFCacheResolver:
    """The Hugging Face hub cache (``HF_HUB_CACHE`` layout)::

        models--org--name/blobs/<sha256>                      (LFS files: named by their sha256)
        models--org--name/snapshots/<commit>/<file> -> ../../blobs/<sha256>
        models--org--name/refs/main                           (the commit ``main`` pointed at)

    A model symlinked into the cache, or a copy of a cached file (its sha256 names a blob),
    resolves to that repo, the snapshot's commit and the file's path in the repo.
    """

    name = "huggingface-cache"
    cacheable = False

    def __init__(self, cache_dir: Path | None = None, *, endpoint: str | None = None) -> None:
        if cache_dir is None:
            from huggingface_hub import constants

            cache_dir = Path(constants.HF_HUB_CACHE)
        self.cache_dir = Path(cache_dir)
        self.endpoint = endpoint

    def _repo_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.cache_dir.iterdir() if p.is_dir() and _repo_of(p.name))
        except OSError:
            return []

    def repos(self) -> list[str]:
        """Every model repo with something in the cache."""
        return [r for p in self._repo_dirs() if (r := _repo_of(p.name))]

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        root = Path(os.path.realpath(self.cache_dir))
        real = Path(os.path.realpath(model.local_path))
        if real.is_relative_to(root):
            rel = real.relative_to(root).parts
            repo_dir = root / rel[0] if rel else root
            if len(rel) >= 3 and _repo_of(rel[0]):
                if rel[1] == "blobs":
                    if _SHA256_RE.match(rel[2]) and rel[2] != model.sha256:
                        logger.warning(
                            "%s is the cached blob %s but its content hash is %s: the "
                            "Hugging Face cache is damaged; not using it as a source",
                            model.local_path,
                            rel[2],
                            model.sha256,
                        )
                        return []
                    return self._best(self._hits(repo_dir, real, model))
                if rel[1] == "snapshots" and len(rel) >= 4:  # a cache without symlinks
                    return [self._source(repo_dir, rel[2], "/".join(rel[3:]))]
        hits: list[_Hit] = []
        for repo_dir in self._repo_dirs():
            blob = repo_dir / "blobs" / model.sha256
            if blob.is_file():
                hits += self._hits(repo_dir, Path(os.path.realpath(blob)), model)
        return self._best(hits)

    def _best(self, hits: list[_Hit]) -> list[ModelSource]:
        if not hits:
            return []
        _, repo_dir, rev, file = min(hits, key=lambda h: h[0])
        return [self._source(repo_dir, rev, file)]

    def _source(self, repo_dir: Path, revision: str, file: str) -> ModelSource:
        repo = _repo_of(repo_dir.name)
        assert repo is not None
        return _hf_source(repo, revision, file)

    def _hits(self, repo_dir: Path, blob: Path, model: ModelFile) -> list[_Hit]:
        """Every snapshot file that links to ``blob``, ranked: in the snapshot ``main`` points
        at first, then with the model's own file name, then by repo, path."""
        snapshots = repo_dir / "snapshots"
        main = ""
        with contextlib.suppress(OSError):
            main = (repo_dir / "refs" / "main").read_text().strip()
        try:
            revisions = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
        except OSError:
            return []
        basename = model.path.rsplit("/", 1)[-1]
        blob_s = str(blob)
        hits = []
        for rev in revisions:
            base = snapshots / rev
            for dirpath, _dirs, files in os.walk(base):
                for fname in files:
                    p = os.path.join(dirpath, fname)
                    if os.path.realpath(p) == blob_s:
                        rel = Path(p).relative_to(base).as_posix()
                        rank = (rev != main, fname != basename, repo_dir.name, rel, rev)
                        hits.append((rank, repo_dir, rev, rel))
        return hits


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What the installed huggingface_hub raises when the Hub cannot be reached."""
    errors: list[type[BaseException]] = [OSError, httpx.HTTPError]
    with contextlib.suppress(ImportError):
        import httpx2  # huggingface_hub >= 2

        errors.append(httpx2.HTTPError)
    return tuple(errors)


def _git_blob_sha1(path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


#: a repo file stored in git (not LFS) is checked by its git blob id up to this size.
_GIT_BLOB_MAX = 50 << 20


#: a recursive listing of a repo stops after this many entries.
_TREE_MAX = 20_000


@dataclass
class _RepoState:
    revision: str | None
    by_sha: dict[str, list[str]] | None = None  # LFS sha256 -> paths (filled on first need)
    small: dict[tuple[str, int], list[tuple[str, str]]] = field(default_factory=dict)


class HFApiResolver:
    """Ask the Hub about the given repos only (never a search). For each repo it pins the
    current commit of ``main``, then checks the model's own names in the repo (one
    ``paths-info`` call); failing that, it lists the repo once and matches by LFS sha256.
    A candidate counts only if its LFS sha256 (or, for a small non-LFS file, its git blob id)
    matches the local file."""

    name = "huggingface"

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        repos: list[str] | tuple[str, ...] = (),
        *,
        timeout: float = 20.0,
    ) -> None:
        from huggingface_hub import HfApi, constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.repos = list(dict.fromkeys(repos))
        self.timeout = timeout
        self._api = HfApi(endpoint=self.endpoint, token=token)
        self._state: dict[str, _RepoState] = {}

    @property
    def cache_key(self) -> str:
        return f"huggingface-api {self.endpoint} {','.join(sorted(self.repos))}"

    def _call(self, what: str, fn: Any) -> Any:
        """Run one Hub call: ``None`` when the Hub answers no (404, gated, private), the
        result when it answers, :class:`_Unavailable` when it cannot be reached."""
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return fn()
        except HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403, 404):
                logger.debug("Hugging Face: %s: HTTP %s", what, status)
                return None
            raise _Unavailable(f"{what}: {e}") from e
        except ValueError as e:  # an invalid repo id (HFValidationError), an unreadable answer
            logger.warning("Hugging Face: %s: %s", what, e)
            return None
        except _transport_errors() as e:
            raise _Unavailable(f"{what}: {type(e).__name__}: {e}") from e

    def _repo(self, repo: str) -> _RepoState:
        state = self._state.get(repo)
        if state is None:
            info = self._call(
                f"{repo}@main",
                lambda: self._api.model_info(repo, revision="main", timeout=self.timeout),
            )
            state = _RepoState(revision=getattr(info, "sha", None) if info is not None else None)
            self._state[repo] = state
        return state

    def _matches(self, entry: Any, model: ModelFile) -> bool:
        lfs = getattr(entry, "lfs", None)
        if lfs is not None:
            return bool(lfs.sha256 == model.sha256 and lfs.size == model.size)
        if getattr(entry, "size", None) != model.size or model.size > _GIT_BLOB_MAX:
            return False
        try:
            return bool(entry.blob_id == _git_blob_sha1(model.local_path, model.size))
        except OSError:
            return False

    def _source(self, repo: str, revision: str, file: str) -> ModelSource:
        return _hf_source(repo, revision, file)

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        from huggingface_hub.hf_api import RepoFile

        names = list(dict.fromkeys([model.path, model.path.rsplit("/", 1)[-1]]))
        live: list[tuple[str, str]] = []
        for repo in self.repos:  # by name: one small call per repo
            rev = self._repo(repo).revision
            if rev is None:
                continue
            live.append((repo, rev))
            entries = (
                self._call(
                    f"{repo}: paths-info",
                    lambda repo=repo, rev=rev: self._api.get_paths_info(repo, names, revision=rev),
                )
                or []
            )
            for entry in entries:
                if isinstance(entry, RepoFile) and self._matches(entry, model):
                    return [self._source(repo, rev, entry.path)]
        for repo, rev in live:  # by content: list each repo once
            state = self._repo(repo)
            if state.by_sha is None:
                state.by_sha = {}
                listing = self._call(
                    f"{repo}: tree",
                    lambda repo=repo, rev=rev: list(
                        _take(
                            self._api.list_repo_tree(repo, recursive=True, revision=rev), _TREE_MAX
                        )
                    ),
                )
                for entry in listing or []:
                    if not isinstance(entry, RepoFile):
                        continue
                    if entry.lfs is not None:
                        state.by_sha.setdefault(entry.lfs.sha256, []).append(entry.path)
                    elif entry.size <= _GIT_BLOB_MAX:
                        state.small.setdefault(
                            (entry.path.rsplit("/", 1)[-1], entry.size), []
                        ).append((entry.path, entry.blob_id))
            paths = state.by_sha.get(model.sha256, [])
            if paths:
                base = model.path.rsplit("/", 1)[-1]
                best = sorted(paths, key=lambda p: (p.rsplit("/", 1)[-1] != base, p))[0]
                return [self._source(repo, rev, best)]
            for path, blob_id in state.small.get((model.path.rsplit("/", 1)[-1], model.size), []):
                with contextlib.suppress(OSError):
                    if blob_id == _git_blob_sha1(model.local_path, model.size):
                        return [self._source(repo, rev, path)]
        return []

    def pin(self, repo: str, file: str, model: ModelFile) -> ModelSource | None:
        """``file`` of ``repo`` at the commit ``main`` points at now, if it is ``model`` (by LFS
        sha256 or git blob id); ``None`` otherwise. Unreachable: :class:`_Unavailable`."""
        rev = self._repo(repo).revision
        if rev is None:
            return None
        entries = (
            self._call(
                f"{repo}: paths-info", lambda: self._api.get_paths_info(repo, [file], revision=rev)
            )
            or []
        )
        from huggingface_hub.hf_api import RepoFile

        for entry in entries:
            if isinstance(entry, RepoFile) and self._matches(entry, model):
                return self._source(repo, rev, entry.path)
        return None


def _take(it: Any, n: int) -> Iterator[Any]:
    for i, x in enumerate(it):
        if i >= n:
            logger.warning("stopped listing a Hugging Face repo after %d entries", n)
            return
        yield x
