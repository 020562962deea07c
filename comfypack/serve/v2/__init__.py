"""Comfy API v2 (``/api/v2/…``) beside the typed endpoint, so the official ``comfy-sdk`` drives a
comfypack service unchanged: jobs on the service's worker pool, assets in its state folder."""

from .app import V2ConfigError, V2Settings, create_app, settings_for
from .assets import AssetRecord, AssetStore
from .common import V2Error
from .jobs import Engine, JobManager
from .policy import check_any, check_served

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
