"""Record the environment a workflow runs in — ``comfypack.lock.json``: the ComfyUI source, every
custom node, the pip packages of the Python that runs ComfyUI, and each model the workflow uses
with its size, sha256 and download sources. (The file's format is :mod:`comfypack.lockfile`.)

- ``create``: :func:`create_lock` — the whole lock for one workflow and one ComfyUI tree.
- ``models``: the models a workflow uses, found through ComfyUI's folders (:func:`find_models`).
- ``nodes``: custom nodes as lock entries — git, plain folders and files, registry installs.
- ``packages``: the interpreter's packages (:func:`list_packages`), its platform, its indexes.
- ``gitstate``: a checkout's commit, portable remote and local changes as a patch.
- ``trees``: file lists and content hashes of folders (custom nodes without git).
- ``sources``: what a model's download source is — :class:`ModelFile`, :class:`Resolver`,
  :func:`classify_url`, the user's :class:`SourcesFile`;
- ``declared``, ``huggingface``, ``civitai``: the resolvers (workflow-declared URLs, the Hugging
  Face cache and API, Civitai by hash);
- ``resolve``: :func:`default_resolvers` in order and :func:`resolve_sources` (cached).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .civitai import CivitaiResolver
    from .create import create_lock, missing_sources, workflow_sha256
    from .declared import WorkflowModels, workflow_model_urls
    from .gitstate import GitState, git_state
    from .huggingface import HFApiResolver, HFCacheResolver
    from .models import MODEL_SUFFIXES, find_models, missing_models
    from .nodes import custom_nodes
    from .packages import index_urls, list_packages, python_info
    from .resolve import default_resolvers, resolve_sources
    from .sources import ModelFile, Resolver, SourcesFile, classify_url
    from .trees import tree_sha256

_EXPORTS = {
    "CivitaiResolver": ".civitai",
    "GitState": ".gitstate",
    "HFApiResolver": ".huggingface",
    "HFCacheResolver": ".huggingface",
    "MODEL_SUFFIXES": ".models",
    "ModelFile": ".sources",
    "Resolver": ".sources",
    "SourcesFile": ".sources",
    "WorkflowModels": ".declared",
    "classify_url": ".sources",
    "create_lock": ".create",
    "custom_nodes": ".nodes",
    "default_resolvers": ".resolve",
    "find_models": ".models",
    "git_state": ".gitstate",
    "index_urls": ".packages",
    "list_packages": ".packages",
    "missing_models": ".models",
    "missing_sources": ".create",
    "python_info": ".packages",
    "resolve_sources": ".resolve",
    "tree_sha256": ".trees",
    "workflow_model_urls": ".declared",
    "workflow_sha256": ".create",
}

__all__ = [
    "CivitaiResolver",
    "GitState",
    "HFApiResolver",
    "HFCacheResolver",
    "MODEL_SUFFIXES",
    "ModelFile",
    "Resolver",
    "SourcesFile",
    "WorkflowModels",
    "classify_url",
    "create_lock",
    "custom_nodes",
    "default_resolvers",
    "find_models",
    "git_state",
    "index_urls",
    "list_packages",
    "missing_models",
    "missing_sources",
    "python_info",
    "resolve_sources",
    "tree_sha256",
    "workflow_model_urls",
    "workflow_sha256",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
