"""The v2 surface's settings (``COMFYPACK_V2_*``): :class:`V2Settings`, read from the environment,
and :func:`settings_for` a service's :class:`~comfypack.serve.engine.ServeConfig`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ComfyPackError

__all__ = ["V2ConfigError", "V2Settings", "settings_for"]


@dataclass(frozen=True)
class V2Settings:
    """The v2 surface's settings (``COMFYPACK_V2_*``; sizes in bytes, times in seconds)."""

    state_dir: Path
    any_graph: bool = False  # run any API-format graph (needs an API key)
    has_api_key: bool = False
    max_asset_bytes: int = 100 * 1024 * 1024
    max_store_bytes: int = 5 * 1024**3
    asset_ttl: float = 86400.0
    import_dir: Path | None = None
    max_json_bytes: int = 16 * 1024 * 1024
    max_streams: int = 32

    @classmethod
    def from_env(
        cls,
        state_dir: Path,
        *,
        has_api_key: bool,
        max_asset_bytes: int,
        env: dict[str, str] | None = None,
    ) -> V2Settings:
        env = dict(os.environ) if env is None else env
        any_graph = env.get("COMFYPACK_V2_ANY_GRAPH", "0").strip().lower() in ("1", "true", "yes")
        if any_graph and not has_api_key:
            raise V2ConfigError(
                "COMFYPACK_V2_ANY_GRAPH=1 (run any graph) needs an API key: set "
                "COMFYPACK_API_KEY (comfypack serve --api-key-env/--api-key-file)"
            )
        imports = env.get("COMFYPACK_V2_IMPORT_DIR")
        return cls(
            state_dir=state_dir,
            any_graph=any_graph,
            has_api_key=has_api_key,
            max_asset_bytes=max_asset_bytes,
            max_store_bytes=int(env.get("COMFYPACK_V2_MAX_STORE_BYTES", 5 * 1024**3)),
            asset_ttl=float(env.get("COMFYPACK_V2_ASSET_TTL", 86400)),
            import_dir=Path(imports) if imports else None,
        )


class V2ConfigError(ComfyPackError):
    """A setting that cannot work (the service refuses to start)."""

    exit_code = 2
    type = "usage"


def settings_for(config: Any, env: dict[str, str] | None = None) -> V2Settings:
    """The v2 settings of a service with :class:`~comfypack.serve.engine.ServeConfig` ``config``: its
    state in ``COMFYPACK_STATE_DIR`` (``comfypack serve`` sets the service's own folder), else
    ``$COMFYPACK_HOME/services/<service name>``."""
    from ...config import comfypack_home

    env = dict(os.environ) if env is None else env
    state = (
        Path(env["COMFYPACK_STATE_DIR"])
        if env.get("COMFYPACK_STATE_DIR")
        else comfypack_home() / "services" / re.sub(r"[^A-Za-z0-9._-]+", "_", config.name)
    )
    return V2Settings.from_env(
        state, has_api_key=bool(config.api_key), max_asset_bytes=config.max_upload_bytes, env=env
    )
