"""ComfyUI's node definitions (``GET /object_info``), for converting UI-format workflows.

From a running ComfyUI (a URL), or from a ComfyUI tree: a short-lived headless ComfyUI is started
once and its answer cached under ``<cache_dir>/object_info-<key>.json``, keyed by what decides the
node set — the ComfyUI tree and version, the custom node folders it loads and the modification
times of their files — so the second ``comfypack inspect ui.json`` does not start ComfyUI again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .errors import ComfyUIUnavailable

__all__ = ["object_info_for", "fetch_object_info", "object_info_cache_key"]

logger = logging.getLogger(__name__)

_SKIP_DIRS = {"__pycache__", ".git", "node_modules", ".venv", "venv"}


def fetch_object_info(url: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """``GET <url>/object_info`` from a running ComfyUI."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/object_info", timeout=timeout) as r:
            data = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ComfyUIUnavailable(f"cannot read node definitions from {url}/object_info: {e}; "
                                 "is ComfyUI running there?") from e
    if not isinstance(data, dict):
        raise ComfyUIUnavailable(f"{url}/object_info did not answer a JSON object")
    return data


def _node_dirs(comfyui_dir: Path) -> list[Path]:
    """The custom node folders a :class:`ComfyUIProcess` on ``comfyui_dir`` loads."""
    from .comfyui.process import node_package_dir

    dirs = [comfyui_dir / "custom_nodes", node_package_dir()]
    dirs += [Path(d) for d in os.environ.get("COMFYPACK_EXTRA_NODES_DIRS", "").split(os.pathsep) if d]
    return dirs


def _tree_stamp(root: Path) -> list[Any]:
    """(relative path, mtime_ns, size) of the source files under ``root`` (one level of packages)."""
    out: list[Any] = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith((".py", ".js", ".json", ".txt", ".toml")):
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append([str(p.relative_to(root)), st.st_mtime_ns, st.st_size])
    return out


def object_info_cache_key(comfyui_dir: Path) -> str:
    """What decides ComfyUI's node set: its tree (path, version, marker), the custom node
    folders and the mtimes/sizes of their source files."""
    from .comfyui.source import comfyui_version, read_marker

    comfyui_dir = comfyui_dir.resolve()
    parts: dict[str, Any] = {
        "comfyui": str(comfyui_dir),
        "version": comfyui_version(comfyui_dir),
        "marker": read_marker(comfyui_dir),
        "nodes": [[str(d.resolve()), _tree_stamp(d)] for d in _node_dirs(comfyui_dir)],
    }
    for core in ("nodes.py", "comfy_extras", "comfy_api_nodes"):
        p = comfyui_dir / core
        parts[core] = _tree_stamp(p) if p.is_dir() else (p.stat().st_mtime_ns if p.exists() else None)
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def object_info_for(source: str | Path, *, cache_dir: Path | None = None,
                    python: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Node definitions for ``source``: a URL of a running ComfyUI (asked directly), or a ComfyUI
    tree (started briefly, then cached in ``cache_dir``; default ``$COMFYPACK_HOME/cache``)."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return fetch_object_info(source)
    comfyui_dir = Path(source)
    if cache_dir is None:
        from .config import comfypack_home

        cache_dir = comfypack_home() / "cache"
    path = cache_dir / f"object_info-{object_info_cache_key(comfyui_dir)}.json"
    if not refresh:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data:
                logger.debug("node definitions from cache %s", path)
                return data
        except (OSError, ValueError):
            pass
    from .comfyui.process import ComfyUIProcess

    logger.info("starting ComfyUI once to read its node definitions (cached afterwards)")
    with ComfyUIProcess(comfyui_dir, python=python, startup_timeout=180) as proc:
        data = fetch_object_info(proc.url)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".object_info-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache only costs speed
        logger.warning("cannot cache node definitions in %s: %s", cache_dir, e)
    return data
