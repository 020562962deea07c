"""Resolve every model's sources: :func:`default_resolvers` (the order of
:mod:`comfypack.lock.sources`) and :func:`resolve_sources`, which caches network answers on disk
(negative ones for ``NEGATIVE_TTL_S``) and turns an unreachable service into a warning.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..config import comfypack_home
from ..lockfile import ModelSource
from .civitai import CivitaiResolver
from .declared import WorkflowModels
from .huggingface import HFApiResolver, HFCacheResolver, _transport_errors
from .sources import CIVITAI_URL, ModelFile, Resolver, SourcesFile, _Unavailable

__all__ = ["default_resolvers", "resolve_sources", "default_sources_cache"]

logger = logging.getLogger(__name__)


#: negative answers ("no source") are re-asked after this long; positive ones are kept.
NEGATIVE_TTL_S = 24 * 3600


_CACHE_VERSION = 1


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
