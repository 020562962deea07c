"""Carry a locked workflow to another machine and restore it there, verified.

- ``archive``: the pack ``NAME.cpack.zip`` — write one (:func:`create_pack`: workflow, lock,
  interface, input assets), read and check one (:func:`read_pack`, size caps, no escaping entries).
- ``restore``: ``comfypack unpack`` — ComfyUI and custom nodes at the locked commits, the venv,
  models linked from the cache, into a :class:`Workspace`.
- ``venv``: the workspace's virtual environment with exactly the locked packages (uv).
- ``modelcache``: the content-addressed model cache (``$COMFYPACK_HOME/models/sha256/…``).
- ``verify``: ``unpack --verify`` — a workspace against its lock, changing nothing (not
  re-exported: the name is the module's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .archive import PackContents, PackLimits, create_pack, read_pack
    from .modelcache import fetch_models, model_cache_dir
    from .restore import Workspace, default_workspace, unpack
    from .venv import ensure_venv

_EXPORTS = {
    "PackContents": ".archive",
    "PackLimits": ".archive",
    "Workspace": ".restore",
    "create_pack": ".archive",
    "default_workspace": ".restore",
    "ensure_venv": ".venv",
    "fetch_models": ".modelcache",
    "model_cache_dir": ".modelcache",
    "read_pack": ".archive",
    "unpack": ".restore",
}

__all__ = [
    "PackContents",
    "PackLimits",
    "Workspace",
    "create_pack",
    "default_workspace",
    "ensure_venv",
    "fetch_models",
    "model_cache_dir",
    "read_pack",
    "unpack",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
