"""Where comfypack keeps things. Config enters here and at the CLI; library code takes arguments."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["comfypack_home", "default_comfyui_dir", "record_default_comfyui", "service_state_dir",
           "model_endpoints", "allow_local_sources"]

_RECORD = "comfypack-default-comfyui.json"


def comfypack_home() -> Path:
    """``$COMFYPACK_HOME``, else ``~/.cache/comfypack``."""
    env = os.environ.get("COMFYPACK_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "comfypack"


def _record_path() -> Path:
    # Recorded per Python environment: the venv that `make setup` builds knows its ComfyUI.
    return Path(sys.prefix) / _RECORD


def default_comfyui_dir() -> Path:
    """``$COMFYPACK_COMFYUI_DIR``, else the last ``comfypack comfyui install`` in this
    environment, else ``$COMFYPACK_HOME/comfyui``."""
    env = os.environ.get("COMFYPACK_COMFYUI_DIR")
    if env:
        return Path(env).expanduser()
    try:
        return Path(json.loads(_record_path().read_text())["comfyui_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return comfypack_home() / "comfyui"


def record_default_comfyui(path: Path) -> None:
    try:
        _record_path().write_text(json.dumps({"comfyui_dir": str(path.resolve())}) + "\n")
    except OSError:
        pass  # a read-only interpreter prefix: the env var / --comfyui still work


def service_state_dir(host: str, port: int) -> Path:
    """``$COMFYPACK_HOME/services/<host>-<port>``: what one served instance keeps to itself
    (BentoML's task results and metrics). The address names the service: a restart of the same
    service finds its folder, two services on one host never share one."""
    import re

    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", host).strip("._") or "host"
    return comfypack_home() / "services" / f"{safe}-{int(port)}"


def model_endpoints() -> dict[str, str | None]:
    """Model-hub endpoints for restores: ``HF_ENDPOINT`` (a Hugging Face mirror) and
    ``COMFYPACK_CIVITAI_URL`` (a Civitai mirror), as ``restore_workspace``'s keyword arguments."""
    return {"hf_endpoint": os.environ.get("HF_ENDPOINT") or None,
            "civitai_url": os.environ.get("COMFYPACK_CIVITAI_URL") or None}


def allow_local_sources() -> bool:
    """``COMFYPACK_ALLOW_LOCAL_SOURCES=1``: restore a lock's file:// sources (a trusted pack)."""
    return os.environ.get("COMFYPACK_ALLOW_LOCAL_SOURCES", "").lower() in ("1", "true", "yes")
