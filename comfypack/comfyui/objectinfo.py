"""ComfyUI's node definitions (``GET /object_info``), for converting UI-format workflows.

From a running ComfyUI (a URL), or from a ComfyUI tree: a short-lived headless ComfyUI is started
once and its answer cached under ``<cache_dir>/object_info-<key>.json``, keyed by what decides the
node set — the ComfyUI tree and version, the custom node folders it loads and the modification
times of their files — so the second ``comfypack inspect ui.json`` does not start ComfyUI again.

:func:`frontend_version_for` says which ``comfyui-frontend-package`` that ComfyUI serves (what
:func:`comfypack.workflow.uiformat.convert` mirrors): asked of a running ComfyUI (``/system_stats``), or
read from the interpreter that runs a tree, without starting it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import ComfyUIUnavailable

__all__ = ["object_info_for", "fetch_object_info", "object_info_cache_key", "frontend_version_for"]

logger = logging.getLogger(__name__)

_SKIP_DIRS = {"__pycache__", ".git", "node_modules", ".venv", "venv"}


def fetch_object_info(url: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """``GET <url>/object_info`` from a running ComfyUI."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/object_info", timeout=timeout) as r:
            data = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ComfyUIUnavailable(
            f"cannot read node definitions from {url}/object_info: {e}; is ComfyUI running there?"
        ) from e
    if not isinstance(data, dict):
        raise ComfyUIUnavailable(f"{url}/object_info did not answer a JSON object")
    return data


def _node_dirs(comfyui_dir: Path) -> list[Path]:
    """The custom node folders a :class:`ComfyUIProcess` on ``comfyui_dir`` loads."""
    from ..config import extra_nodes_dirs
    from .process import node_package_dir

    return [comfyui_dir / "custom_nodes", node_package_dir(), *extra_nodes_dirs()]


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
    from .source import comfyui_version, read_marker

    comfyui_dir = comfyui_dir.resolve()
    parts: dict[str, Any] = {
        "comfyui": str(comfyui_dir),
        "version": comfyui_version(comfyui_dir),
        "marker": read_marker(comfyui_dir),
        "nodes": [[str(d.resolve()), _tree_stamp(d)] for d in _node_dirs(comfyui_dir)],
    }
    for core in ("nodes.py", "comfy_extras", "comfy_api_nodes"):
        p = comfyui_dir / core
        parts[core] = (
            _tree_stamp(p) if p.is_dir() else (p.stat().st_mtime_ns if p.exists() else None)
        )
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def object_info_for(
    source: str | Path,
    *,
    cache_dir: Path | None = None,
    python: str | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Node definitions for ``source``: a URL of a running ComfyUI (asked directly), or a ComfyUI
    tree (started briefly, then cached in ``cache_dir``; default ``$COMFYPACK_HOME/cache``)."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return fetch_object_info(source)
    comfyui_dir = Path(source)
    if cache_dir is None:
        from ..config import comfypack_home

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
    from .process import ComfyUIProcess

    logger.info("starting ComfyUI once to read its node definitions (cached afterwards)")
    with ComfyUIProcess(comfyui_dir, python=python, startup_timeout=180) as proc:
        data = fetch_object_info(proc.url)
    try:
        from ..atomic import atomic_write

        atomic_write(path, json.dumps(data))
    except OSError as e:  # a read-only cache only costs speed
        logger.warning("cannot cache node definitions in %s: %s", cache_dir, e)
    return data


# ----------------------------------------------------------------------------------------------
# which frontend a ComfyUI serves

FRONTEND_PACKAGE = "comfyui-frontend-package"
_SEMVER = re.compile(r"^v?(\d+\.\d+\.\d+)$")
_PROBE = (
    "import importlib.metadata as m\n"
    "try:\n    print(m.version('comfyui-frontend-package'))\n"
    "except m.PackageNotFoundError:\n    pass\n"
)


def frontend_version_for(
    source: str | Path, *, python: str | None = None, timeout: float = 30.0
) -> str | None:
    """The version of the frontend the ComfyUI ``source`` serves, or None when it cannot be told
    (the caller then mirrors the newest frontend comfypack knows).

    A URL (a running ComfyUI): its ``/system_stats`` — the ``--front-end-version`` /
    ``--front-end-root`` it was started with (a folder named for its version, as ComfyUI's own
    downloads and ``make setup`` name them), else the installed ``comfyui-frontend-package``
    (reported since ComfyUI 0.2x), else the version its ``requirements.txt`` pins.
    A ComfyUI tree: the package installed in ``python`` (the interpreter that runs it; default
    this one), else the version its ``requirements.txt`` pins. Never starts ComfyUI."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return _served_frontend(source, timeout)
    return _installed_frontend(python) or _pinned_frontend(Path(source))


def _semver(text: Any) -> str | None:
    m = _SEMVER.match(str(text).strip()) if text else None
    return m.group(1) if m else None


def _served_frontend(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/system_stats", timeout=timeout) as r:
            stats = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        logger.warning("cannot ask %s which frontend it serves (%s); mirroring the newest", url, e)
        return None
    system = stats.get("system") if isinstance(stats, dict) else None
    if not isinstance(system, dict):
        return None
    argv = [str(a) for a in system.get("argv") or []]
    for flag in ("--front-end-version", "--front-end-root"):
        value = next((a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")), None)
        if value is None and flag in argv[:-1]:
            value = argv[argv.index(flag) + 1]
        if value is None:
            continue
        # Comfy-Org/ComfyUI_frontend@1.40.2, or a folder such as .../frontends/1.58.1
        version = _semver(
            value.rpartition("@")[2]
            if flag == "--front-end-version"
            else Path(value.rstrip("/\\")).name
        )
        if version is None:
            logger.warning(
                "%s serves the frontend %s %s, whose version comfypack cannot tell; "
                "mirroring the newest",
                url,
                flag,
                value,
            )
        return version
    for pkg in system.get("comfy_package_versions") or []:
        if (
            isinstance(pkg, dict)
            and pkg.get("name") == FRONTEND_PACKAGE
            and _semver(pkg.get("installed"))
        ):
            return _semver(pkg.get("installed"))
    return _semver(system.get("required_frontend_version"))


def _installed_frontend(python: str | None) -> str | None:
    """The ``comfyui-frontend-package`` version installed in ``python`` (default: this one)."""
    if python is None or Path(python).absolute() == Path(sys.executable).absolute():
        import importlib.metadata

        try:
            return importlib.metadata.version(FRONTEND_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            return None
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        logger.warning("cannot ask %s for its %s version: %s", python, FRONTEND_PACKAGE, e)
        return None
    return _semver(out.stdout) if out.returncode == 0 else None


def _pinned_frontend(comfyui_dir: Path) -> str | None:
    """The frontend version ``requirements.txt`` of the tree pins (``==``)."""
    try:
        text = (comfyui_dir / "requirements.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"^\s*comfyui[-_]frontend[-_]package\s*==\s*([0-9.]+)\s*$", text, re.M | re.I)
    return _semver(m.group(1)) if m else None
