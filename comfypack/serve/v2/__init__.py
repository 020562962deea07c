"""Comfy API v2 (``/api/v2/…``) beside the typed endpoint, so the official ``comfy-sdk`` drives a
comfypack service unchanged: jobs on the service's worker pool, assets in its state folder.

- ``app``: :func:`create_app`, the v2 routes as the Starlette app mounted at ``/api/v2``;
- ``settings``: :class:`V2Settings` (``COMFYPACK_V2_*``) and :func:`settings_for` a service;
- ``checks``: what a request brings, checked (JSON body, metadata, the graph and its assets);
- ``policy``: which graphs a v2 job may run (:func:`check_served`; :func:`check_any` opt-in);
- ``jobs``: :class:`JobManager`, v2 jobs on the :class:`Engine`: progress, events, outputs;
- ``assets``: :class:`AssetStore`, blake3-addressed assets in the service's state folder;
- ``common``: :class:`V2Error` and the helpers every route shares;
- ``openapi``: the v2 paths and schemas of the service's OpenAPI document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:
    from .app import create_app
    from .assets import AssetRecord, AssetStore
    from .common import V2Error
    from .jobs import Engine, JobManager
    from .policy import check_any, check_served
    from .settings import V2ConfigError, V2Settings, settings_for

_EXPORTS = {
    "AssetRecord": ".assets",
    "AssetStore": ".assets",
    "Engine": ".jobs",
    "JobManager": ".jobs",
    "V2ConfigError": ".settings",
    "V2Error": ".common",
    "V2Settings": ".settings",
    "check_any": ".policy",
    "check_served": ".policy",
    "create_app": ".app",
    "settings_for": ".settings",
}

__all__ = [
    "AssetRecord",
    "AssetStore",
    "Engine",
    "JobManager",
    "V2ConfigError",
    "V2Error",
    "V2Settings",
    "check_any",
    "check_served",
    "create_app",
    "settings_for",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
