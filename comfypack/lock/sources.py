"""Where a model file can be downloaded from — found by its sha256, never by a search engine.

This module holds what every resolver shares (:class:`ModelFile`, the :class:`Resolver` protocol,
:func:`classify_url`) and the user's sources file. Resolvers, tried in order
(:func:`comfypack.lock.resolve.default_resolvers`); the first that answers wins:

1. :class:`SourcesFile` — the user's ``--sources FILE``: sha256 or file name → URL.
2. :class:`~comfypack.lock.declared.WorkflowModels` — the URLs a ComfyUI-saved workflow names for its models
   (``nodes[].properties.models[]`` and the top-level ``models[]``: ``name``, ``url``,
   ``directory``); Hugging Face URLs among them are pinned to a commit through the Hub API.
3. :class:`~comfypack.lock.huggingface.HFCacheResolver` — the local Hugging Face cache. An LFS blob's file name *is* its
   sha256, so a model linked from or copied out of the cache resolves to repo, revision, file.
4. :class:`~comfypack.lock.huggingface.HFApiResolver` — the Hugging Face API (``huggingface_hub.HfApi``), asked only about
   repos we were given or saw in the cache / sources file / workflow; a candidate is accepted
   only if its LFS sha256 is the model's.
5. :class:`~comfypack.lock.civitai.CivitaiResolver` — Civitai's public ``/api/v1/model-versions/by-hash/{sha256}``.

:func:`~comfypack.lock.resolve.resolve_sources` caches network answers on disk, and an unreachable service is a warning
(the model is then recorded without a source), never a crash. Sources are recorded by their
canonical URLs (``https://huggingface.co/…``, ``https://civitai.com/…``) whatever endpoint or
mirror answered; :mod:`comfypack.files.download` fetches them (through a mirror where one is set).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import LockError
from ..files.download import hf_file_url
from ..lockfile import ModelSource

__all__ = ["ModelFile", "Resolver", "SourcesFile", "classify_url"]

CIVITAI_URL = "https://civitai.com"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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


# -- shared by the resolvers ------------------------------------------------------------------


def _hf_url(repo: str, file: str, revision: str) -> str:
    """The canonical URL (a lock never records a mirror's)."""
    return hf_file_url(repo, file, revision)
