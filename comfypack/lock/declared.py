"""Model sources a workflow declares: the URLs a ComfyUI-saved workflow names for its models
(``nodes[].properties.models[]`` and the top-level ``models[]``: ``name``, ``url``,
``directory``) — :func:`workflow_model_urls` and the resolver :class:`WorkflowModels`; Hugging
Face URLs among them are pinned to a commit through the Hub API.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from ..lockfile import ModelSource
from .huggingface import HFApiResolver
from .sources import ModelFile, classify_url

__all__ = ["WorkflowModels", "workflow_model_urls"]

logger = logging.getLogger(__name__)


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
