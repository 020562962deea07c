"""Where a model file can be downloaded from — found by its sha256, never by a search engine.

Resolvers, tried in order (:func:`default_resolvers`); the first that answers wins:

1. :class:`SourcesFile` — the user's ``--sources FILE``: sha256 or file name → URL.
2. :class:`WorkflowModels` — the URLs a ComfyUI-saved workflow names for its models
   (``nodes[].properties.models[]`` and the top-level ``models[]``: ``name``, ``url``,
   ``directory``); Hugging Face URLs among them are pinned to a commit through the Hub API.
3. :class:`HFCacheResolver` — the local Hugging Face cache. An LFS blob's file name *is* its
   sha256, so a model linked from or copied out of the cache resolves to repo, revision, file.
4. :class:`HFApiResolver` — the Hugging Face API (``huggingface_hub.HfApi``), asked only about
   repos we were given or saw in the cache / sources file / workflow; a candidate is accepted
   only if its LFS sha256 is the model's.
5. :class:`CivitaiResolver` — Civitai's public ``/api/v1/model-versions/by-hash/{sha256}``.

:func:`resolve_sources` caches network answers on disk, and an unreachable service is a warning
(the model is then recorded without a source), never a crash. Sources are recorded by their
canonical URLs (``https://huggingface.co/…``, ``https://civitai.com/…``) whatever endpoint or
mirror answered; :mod:`comfypack.files.download` fetches them (through a mirror where one is set).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from ..atomic import atomic_write
from ..config import comfypack_home
from ..errors import LockError
from ..files.download import hf_file_url
from ..lockfile import ModelSource

__all__ = [
    "ModelFile",
    "Resolver",
    "SourcesFile",
    "HFCacheResolver",
    "HFApiResolver",
    "CivitaiResolver",
    "default_resolvers",
    "resolve_sources",
    "default_sources_cache",
    "WorkflowModels",
    "workflow_model_urls",
    "classify_url",
]

logger = logging.getLogger(__name__)

CIVITAI_URL = "https://civitai.com"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: negative answers ("no source") are re-asked after this long; positive ones are kept.
NEGATIVE_TTL_S = 24 * 3600
_CACHE_VERSION = 1


@dataclass(frozen=True)
class ModelFile:
    """A model the workflow uses: ``models/<folder>/<path>``, found at ``local_path``."""

    folder: str
    path: str
    size: int
    sha256: str
    local_path: Path


@runtime_checkable
class Resolver(Protocol):
    name: str

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        """Sources for ``model`` (empty: none known). Raise ``OSError`` / ``httpx.HTTPError``
        when the service cannot be reached."""
        ...


class _Unavailable(Exception):
    """The resolver's service cannot be reached (network, 5xx, rate limit, offline mode)."""


# -- 1. the user's sources file ---------------------------------------------------------------


_HF_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CIVITAI_DOWNLOAD = re.compile(r"^/api/download/models/(?P<id>\d+)/?$")


def _hosts(*urls: str | None) -> set[str]:
    return {(urlsplit(u).hostname or "").lower() for u in urls if u}


def classify_url(
    url: str, *, hf_endpoint: str | None = None, civitai_url: str | None = None
) -> ModelSource:
    """A URL as a :class:`ModelSource` with its canonical URL: Hugging Face ``resolve`` URLs (on
    huggingface.co or on the ``hf_endpoint`` mirror) keep repo/revision/file, Civitai download
    URLs (on civitai.com or ``civitai_url``) their model version id; anything else is ``url``.
    Query strings such as ``?download=true`` are dropped from Hub URLs. ``s3://bucket/key`` is an
    object in an S3-compatible bucket (fetched with boto3's credentials and endpoint)."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc or not parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"not an s3://bucket/key URL: {url!r}")
        return ModelSource(type="s3", url=url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) or s3:// URL: {url!r}")
    host = (parts.hostname or "").lower()
    if host == "huggingface.co" or host.endswith(".huggingface.co") or host in _hosts(hf_endpoint):
        m = _HF_RESOLVE.match(parts.path)
        if m:
            repo, rev, file = m["repo"], unquote(m["rev"]), unquote(m["file"])
            return ModelSource(
                type="huggingface", url=_hf_url(repo, file, rev), repo=repo, revision=rev, file=file
            )
    if host == "civitai.com" or host.endswith(".civitai.com") or host in _hosts(civitai_url):
        m = _CIVITAI_DOWNLOAD.match(parts.path)
        if m:
            canonical = urlunsplit(("https", "civitai.com", parts.path, parts.query, ""))
            return ModelSource(type="civitai", url=canonical, model_version_id=int(m["id"]))
    return ModelSource(type="url", url=url)


def _classify(url: str) -> ModelSource:
    return classify_url(url)


class SourcesFile:
    """A JSON file the user writes::

        {"<sha256 hex>": "https://…",
         "<file name or folder/path>": {"url": "https://…"},
         "<another>": ["https://mirror-a/…", "https://mirror-b/…"],
         "huggingface_repos": ["org/name", …]}

    A value is a URL, an object with ``url`` (and optionally the other ModelSource fields), or a
    list of those. ``huggingface_repos`` are extra repos the Hugging Face API resolver may check.
    Entries by name are not verified here; a download is always verified against the lock.
    """

    name = "sources-file"
    cacheable = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            raise LockError(f"cannot read the sources file {path}: {e.strerror or e}") from e
        except ValueError as e:
            raise LockError(f"the sources file {path} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise LockError(
                f"the sources file {path} must be a JSON object "
                '({"<sha256 or file name>": "<url>", …})'
            )
        repos = data.pop("huggingface_repos", [])
        if not isinstance(repos, list) or not all(
            isinstance(r, str) and r.count("/") == 1 for r in repos
        ):
            raise LockError(f"{path}: huggingface_repos must be a list of 'org/name' strings")
        self.repos: list[str] = list(dict.fromkeys(repos))
        self.by_hash: dict[str, list[ModelSource]] = {}
        self.by_name: dict[str, list[ModelSource]] = {}
        for key, value in data.items():
            try:
                sources = [self._source(v) for v in (value if isinstance(value, list) else [value])]
            except (ValueError, TypeError) as e:
                raise LockError(f"{path}: entry {key!r}: {e}") from e
            k = key.strip()
            if _SHA256_RE.match(k.lower()):
                self.by_hash[k.lower()] = sources
            else:
                self.by_name[k.replace("\\", "/")] = sources

    @staticmethod
    def _source(value: Any) -> ModelSource:
        if isinstance(value, str):
            return _classify(value)
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            base = _classify(value["url"]).model_dump(exclude_none=True)
            return ModelSource.model_validate({**base, **value})
        raise TypeError('expected a URL or {"url": …}')

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        found = self.by_hash.get(model.sha256.lower())
        if found:
            return list(found)
        for key in (f"{model.folder}/{model.path}", model.path, model.path.rsplit("/", 1)[-1]):
            if key in self.by_name:
                return list(self.by_name[key])
        return []


# -- 2. the workflow's own model URLs ---------------------------------------------------------


_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def workflow_model_urls(graph: Any) -> list[dict[str, str]]:
    """The ``{"name", "url", "directory"}`` entries a ComfyUI-saved (UI-format) workflow carries:
    every node's ``properties.models[]`` (subgraphs' nodes too) and the top-level ``models[]``.
    An API-format workflow has none."""
    found: list[dict[str, str]] = []

    def take(entries: Any) -> None:
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and all(
                isinstance(e.get(k), str) and e.get(k) for k in ("name", "url")
            ):
                found.append(
                    {"name": e["name"], "url": e["url"], "directory": str(e.get("directory") or "")}
                )

    def nodes(container: Any) -> None:
        for node in (container.get("nodes") if isinstance(container, dict) else None) or []:
            if isinstance(node, dict) and isinstance(node.get("properties"), dict):
                take(node["properties"].get("models"))

    if isinstance(graph, dict):
        take(graph.get("models"))
        nodes(graph)
        for sub in (
            ((graph.get("definitions") or {}).get("subgraphs") or [])
            if isinstance(graph.get("definitions"), dict)
            else []
        ):
            nodes(sub)
    unique: dict[tuple[str, str, str], dict[str, str]] = {}
    for e in found:
        unique.setdefault((e["directory"], e["name"], e["url"]), e)
    return [unique[k] for k in sorted(unique)]


class WorkflowModels:
    """The model URLs the workflow itself names (:func:`workflow_model_urls`), matched by file
    name and folder. A Hugging Face URL on a branch (``resolve/main/…``) is pinned to the commit
    the branch is at, and kept only if that file is the model (``hub``: the Hub API; without
    it — offline — the URL is kept as given). Every download is verified by size and sha256."""

    name = "workflow"
    cacheable = False

    def __init__(
        self,
        entries: list[dict[str, str]],
        *,
        hub: HFApiResolver | None = None,
        hf_endpoint: str | None = None,
    ) -> None:
        self.entries = entries
        self.hub = hub
        self.hf_endpoint = hf_endpoint

    def repos(self) -> list[str]:
        """Hugging Face repos the URLs name (for the Hub API resolver)."""
        out = []
        for e in self.entries:
            with contextlib.suppress(ValueError):
                src = classify_url(e["url"], hf_endpoint=self.hf_endpoint)
                if src.repo:
                    out.append(src.repo)
        return list(dict.fromkeys(out))

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        base = model.path.rsplit("/", 1)[-1]
        out: list[ModelSource] = []
        for e in self.entries:
            if e["name"] not in (model.path, base) or (
                e["directory"] and e["directory"] != model.folder
            ):
                continue
            try:
                src = classify_url(e["url"], hf_endpoint=self.hf_endpoint)
            except ValueError as err:
                logger.warning("the workflow's URL for %s is unusable: %s", e["name"], err)
                continue
            if (
                src.type == "huggingface"
                and self.hub is not None
                and src.repo
                and src.file
                and not _COMMIT_RE.match(src.revision or "")
            ):
                pinned = self.hub.pin(src.repo, src.file, model)
                if pinned is None:
                    logger.warning(
                        "the workflow names %s for %s/%s, but the file there is not this "
                        "model (sha256 %s); not using it",
                        src.url,
                        model.folder,
                        model.path,
                        model.sha256[:12],
                    )
                    continue
                src = pinned
            out.append(src)
        return out


# -- 3. the local Hugging Face cache ----------------------------------------------------------


def _hf_source(repo: str, revision: str, file: str) -> ModelSource:
    """A Hugging Face source: ``repo`` at an immutable ``revision``, ``file`` in it."""
    return ModelSource(
        type="huggingface",
        url=_hf_url(repo, file, revision),
        repo=repo,
        revision=revision,
        file=file,
    )


def _hf_url(repo: str, file: str, revision: str) -> str:
    """The canonical URL (a lock never records a mirror's)."""
    return hf_file_url(repo, file, revision)


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


# -- 4. the Hugging Face API ------------------------------------------------------------------


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


# -- 5. Civitai -------------------------------------------------------------------------------


class CivitaiResolver:
    """``GET {base_url}/api/v1/model-versions/by-hash/{sha256}`` (public, no search)."""

    name = "civitai"

    def __init__(
        self, base_url: str = CIVITAI_URL, token: str | None = None, *, timeout: float = 20.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @property
    def cache_key(self) -> str:
        return f"civitai {self.base_url}"

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = f"{self.base_url}/api/v1/model-versions/by-hash/{model.sha256}"
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
                r = client.get(url, headers=headers)
        except httpx.HTTPError as e:
            raise _Unavailable(f"{url}: {type(e).__name__}: {e}") from e
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise _Unavailable(f"{url}: HTTP {r.status_code}")
        try:
            data = r.json()
        except ValueError as e:
            raise _Unavailable(f"{url}: not JSON") from e
        if not isinstance(data, dict):
            return []
        version_id = data.get("id") if isinstance(data.get("id"), int) else None
        files = [f for f in data.get("files") or [] if isinstance(f, dict)]
        match = [
            f
            for f in files
            if str((f.get("hashes") or {}).get("SHA256", "")).lower() == model.sha256
        ]
        download_url = (match[0] if match else {}).get("downloadUrl") or data.get("downloadUrl")
        if not isinstance(download_url, str):
            return []
        try:
            found = classify_url(download_url, civitai_url=self.base_url)
            if found.type == "civitai":  # its canonical civitai.com URL, whatever answered
                return [
                    found.model_copy(
                        update={"model_version_id": version_id or found.model_version_id}
                    )
                ]
            return [ModelSource(type="civitai", url=download_url, model_version_id=version_id)]
        except ValueError:
            logger.debug("Civitai gave an unusable download URL %r", download_url)
            return []


# -- resolving --------------------------------------------------------------------------------


def default_resolvers(
    sources_file: Path | None,
    *,
    hf_endpoint: str | None = None,
    civitai_url: str | None = None,
    offline: bool = False,
    workflow_models: list[dict[str, str]] | None = None,
) -> list[Resolver]:
    """The standard order: sources file, the workflow's own model URLs, HF cache, then (unless
    ``offline``) the HF API over the repos named by the sources file, the workflow's URLs and
    present in the cache, and Civitai."""
    resolvers: list[Resolver] = []
    repos: list[str] = []
    if sources_file is not None:
        sf = SourcesFile(sources_file)
        resolvers.append(sf)
        repos += sf.repos
    wm = WorkflowModels(list(workflow_models or []), hf_endpoint=hf_endpoint)
    if wm.entries:
        resolvers.append(wm)
        repos += wm.repos()
    cache = HFCacheResolver(endpoint=hf_endpoint)
    resolvers.append(cache)
    if not offline:
        from huggingface_hub import constants

        repos += cache.repos()
        if not _hf_offline(constants):
            hub = HFApiResolver(endpoint=hf_endpoint, repos=list(dict.fromkeys(repos)))
            wm.hub = hub
            resolvers.append(hub)
        resolvers.append(CivitaiResolver(civitai_url or CIVITAI_URL))
    return resolvers


def _hf_offline(constants: Any) -> bool:
    fn = getattr(constants, "is_offline_mode", None)
    return bool(fn() if callable(fn) else getattr(constants, "HF_HUB_OFFLINE", False))


def default_sources_cache() -> Path:
    """``$COMFYPACK_HOME/cache/sources.json``."""
    return comfypack_home() / "cache" / "sources.json"


class _LookupCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") == _CACHE_VERSION:
                self.entries = {
                    k: v for k, v in data.get("entries", {}).items() if isinstance(v, dict)
                }
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            logger.warning("ignoring the source lookup cache %s (%s)", path, e)

    def get(self, key: str, sha: str) -> list[ModelSource] | None:
        hit = self.entries.get(key, {}).get(sha)
        if not isinstance(hit, dict) or not isinstance(hit.get("sources"), list):
            return None
        if not hit["sources"] and time.time() - float(hit.get("at", 0)) > NEGATIVE_TTL_S:
            return None
        try:
            return [ModelSource.model_validate(s) for s in hit["sources"]]
        except ValueError:
            return None

    def put(self, key: str, sha: str, sources: list[ModelSource]) -> None:
        self.entries.setdefault(key, {})[sha] = {
            "sources": [s.model_dump(mode="json", exclude_none=True) for s in sources],
            "at": int(time.time()),
        }
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            atomic_write(
                self.path,
                json.dumps(
                    {"version": _CACHE_VERSION, "entries": self.entries}, sort_keys=True, indent=1
                )
                + "\n",
            )
        except OSError as e:
            logger.warning("cannot write the source lookup cache %s: %s", self.path, e)


def resolve_sources(
    models: list[ModelFile], resolvers: list[Resolver], *, cache_path: Path | None = None
) -> dict[str, list[ModelSource]]:
    """Sources for every model, keyed by sha256 (an empty list: no source found).

    Resolvers are tried in order and the first that answers wins. Answers of network resolvers
    are cached in ``cache_path`` (default :func:`default_sources_cache`; "no source" answers
    expire after a day). A resolver whose service cannot be reached is skipped, with one
    warning, for the remaining models.
    """
    cache = _LookupCache(Path(cache_path) if cache_path is not None else default_sources_cache())
    down: set[int] = set()
    unreachable: tuple[type[BaseException], ...] = (_Unavailable, *_transport_errors())
    result: dict[str, list[ModelSource]] = {}
    try:
        for model in models:
            if model.sha256 in result:
                continue
            found: list[ModelSource] = []
            for resolver in resolvers:
                if id(resolver) in down:
                    continue
                cacheable = getattr(resolver, "cacheable", True)
                key = str(getattr(resolver, "cache_key", resolver.name))
                if cacheable:
                    hit = cache.get(key, model.sha256)
                    if hit is not None:
                        logger.debug("%s: %s (cached)", model.path, resolver.name)
                        if hit:
                            found = hit
                            break
                        continue
                try:
                    answer = resolver.resolve(model)
                except unreachable as e:
                    logger.warning(
                        "model sources: %s cannot be reached (%s); skipping it for "
                        "the remaining models",
                        resolver.name,
                        e,
                    )
                    down.add(id(resolver))
                    continue
                if cacheable:
                    cache.put(key, model.sha256, answer)
                if answer:
                    found = answer
                    break
            result[model.sha256] = found
            if not found:
                logger.info(
                    "no download source found for %s/%s (sha256 %s)",
                    model.folder,
                    model.path,
                    model.sha256,
                )
    finally:
        cache.save()
    return result
