"""The Python packages of the interpreter that runs ComfyUI, as lock entries: ``name==version``,
or a direct reference (an archive with its sha256, VCS at a commit) where that is how it was
installed; comfypack's own tooling left out (:data:`DEV_TOOLS`); the index URLs used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LockError
from ..files.hashing import sha256_file
from ..lockfile import (
    Package,
    PythonInfo,
    is_local_url,
    requirement,
    valid_package,
)
from .nodes import _problem

__all__ = ["list_packages", "python_info", "DEV_TOOLS", "index_urls"]

logger = logging.getLogger(__name__)


#: comfypack itself and its development tools: not part of the environment ComfyUI needs (what
#: only they depend on is left out too; see :func:`list_packages`). pip: a venv brings its own.
DEV_TOOLS = frozenset(
    {"comfypack", "pytest", "mypy", "ruff", "pip", "playwright", "kubernetes-validate"}
)


_DEV_PREFIXES = ("pytest-", "types-")


_PROBE = r"""
import json, platform, re, sysconfig
from importlib import metadata
pkgs = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name and name not in pkgs:
        reqs = []
        for r in d.requires or []:
            if "extra" in r.partition(";")[2]:
                continue  # only what an install without extras pulls in
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
            if m:
                reqs.append(m.group(1))
        try:
            direct = json.loads(d.read_text("direct_url.json") or "null")
        except ValueError:
            direct = None
        pkgs[name] = {"version": d.version, "requires": reqs, "direct_url": direct}
print(json.dumps({"version": platform.python_version(), "platform": sysconfig.get_platform(),
                  "packages": pkgs}))
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _probe(python: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONNOUSERSITE": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LockError(f"cannot run {python} to list its packages: {e}; pass --python PY") from e
    if proc.returncode != 0:
        raise LockError(f"{python} failed to list its packages: {proc.stderr.strip()[-500:]}")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise LockError(f"{python} printed no package list: {proc.stdout[-300:]!r}") from e
    return dict(data)


def _is_dev_tool(name: str) -> bool:
    canon = _canonical(name)
    return canon in DEV_TOOLS or canon.startswith(_DEV_PREFIXES)


def _closure(roots: set[str], deps: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, ()))
    return seen


#: the largest archive whose sha256 a lock computes by fetching it
_ARCHIVE_MAX = 4 << 30


def _archive_sha256(url: str) -> str | None:
    """The sha256 of the archive at ``url`` (``file://`` read, http(s) fetched), or ``None``
    (with a warning) when it cannot be had."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    import httpx

    try:
        if url.startswith("file:"):
            return sha256_file(Path(url2pathname(urlsplit(url).path)))
        h = hashlib.sha256()
        n = 0
        with httpx.stream(
            "GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes(1 << 20):
                n += len(chunk)
                if n > _ARCHIVE_MAX:
                    raise OSError(f"larger than {_ARCHIVE_MAX} bytes")
                h.update(chunk)
        return h.hexdigest()
    except (OSError, httpx.HTTPError) as e:
        logger.warning("cannot fetch %s to pin its sha256 (%s)", url, e)
        return None


def _direct(
    name: str, version: str, info: Any, strict: bool, fetch_hashes: bool = False
) -> Package | None:
    """The package as a PEP 610 direct reference (``name @ url``, git at its commit), from its
    ``direct_url.json``; ``None`` when it came from an index. An archive whose installer recorded
    no hash (uv does not) is fetched to pin its sha256 when ``fetch_hashes``. A local path or
    file:// URL is recorded, with a warning (an error under ``strict``): only this machine can
    restore it."""
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    from .gitstate import clean_url

    url = clean_url(info["url"])
    vcs = info.get("vcs_info") if isinstance(info.get("vcs_info"), dict) else None
    archive = info.get("archive_info") if isinstance(info.get("archive_info"), dict) else None
    sha: str | None = None
    commit: str | None = None
    if vcs is not None:
        if vcs.get("vcs") != "git":
            raise LockError(
                f"package {name} was installed from {vcs.get('vcs')} ({url}); comfypack "
                "locks git sources only — install it from git or an index"
            )
        url, commit = f"git+{url}", str(vcs.get("commit_id") or "")
    elif archive is not None:
        hashes = archive.get("hashes") if isinstance(archive.get("hashes"), dict) else {}
        legacy = str(archive.get("hash") or "")
        sha = hashes.get("sha256") or (legacy[7:] if legacy.startswith("sha256=") else None)
        if sha is None and fetch_hashes and not info.get("dir_info"):
            sha = _archive_sha256(url)
    try:
        pkg = Package(name=name, version=version, url=url, sha256=sha, commit=commit)
        requirement(name, version, url=url, sha256=sha, commit=commit)
    except (ValueError, LockError) as e:
        raise LockError(
            f"package {name} was installed from {url[:200]!r}, which a lock cannot "
            f"record ({' '.join(str(e).split())[:200]})"
        ) from e
    if is_local_url(url.removeprefix("git+")):
        _problem(
            f"package {name} was installed from {url}, on this machine only",
            strict,
            "publish it (an index, or an https/git URL) so a restore elsewhere can install it",
        )
    elif archive is not None and sha is None:
        logger.warning(
            "package %s comes from %s without a recorded hash; the restore trusts that URL",
            name,
            url,
        )
    return pkg


def _packages(
    data: Mapping[str, Any], *, strict: bool = False, fetch_hashes: bool = False
) -> list[Package]:
    """Every installed distribution except comfypack's tooling: the dev tools themselves and what
    only they pull in (pytest's pluggy, mypy's mypy-extensions …). comfypack's own dependencies
    stay (bentoml serves the pack). Packages installed from a URL, git or a path keep that source
    (PEP 610 ``direct_url.json``)."""
    versions: dict[str, str] = {}
    deps: dict[str, set[str]] = {}
    directs: dict[str, Any] = {}
    for name, info in data.get("packages", {}).items():
        canon = _canonical(name)
        if canon in versions:
            continue
        versions[canon] = str(info["version"])
        directs[canon] = info.get("direct_url")
        deps[canon] = {_canonical(r) for r in info.get("requires", [])}
    for canon in deps:
        deps[canon] &= set(versions)
    dev = {n for n in versions if _is_dev_tool(n)}
    required = set().union(*deps.values()) if deps else set()
    roots = {n for n in versions if n not in dev and n not in required} | deps.get(
        "comfypack", set()
    )
    keep = _closure(roots, {n: d - dev for n, d in deps.items() if n not in dev})
    only_tooling = _closure(dev, deps) - keep
    excluded = dev | only_tooling
    invalid = sorted(n for n in versions if n not in excluded and not valid_package(n, versions[n]))
    if invalid:  # a lock pins PEP 508 names to PEP 440 versions only (what pip can take safely)
        logger.warning(
            "leaving out packages whose version is not PEP 440: %s",
            ", ".join(f"{n} {versions[n]!r}" for n in invalid),
        )
    return [
        _direct(n, versions[n], directs.get(n), strict, fetch_hashes)
        or Package(name=n, version=versions[n])
        for n in sorted(versions)
        if n not in excluded and n not in invalid
    ]


def list_packages(python: str) -> list[Package]:
    """The packages installed for the interpreter ``python`` (asked in a subprocess), by canonical
    name and exact version, without comfypack, its development tools and what only they need."""
    return _packages(_probe(python))


#: the default package index (pip's and uv's)
PYPI = "https://pypi.org/simple"


_INDEX_VARS = (
    ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"),
    ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX"),
)


def index_urls(python: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The package indexes the environment installs from, the default one first: the
    ``PIP_*`` / ``UV_*`` index variables, else ``pip config`` of ``python``; credentials removed."""
    from .gitstate import clean_url

    env = os.environ if env is None else env
    default = next((env[v] for v in _INDEX_VARS[0] if env.get(v)), None)
    extra = [u for v in _INDEX_VARS[1] for u in (env.get(v) or "").split()]
    config = ""
    # pip's configuration is the user's and the machine's; a venv without pip: ask this one's
    for py in dict.fromkeys([python, sys.executable]) if default is None or not extra else ():
        try:
            proc = subprocess.run(
                [py, "-m", "pip", "config", "list"],
                capture_output=True,
                text=True,
                timeout=60,
                env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            config = proc.stdout
            break
    if config:
        for line in config.splitlines():
            key, _, value = line.partition("=")
            value = value.strip().strip("'\"")
            if key.endswith(".index-url") and default is None:
                default = value
            elif key.endswith(".extra-index-url") and not extra:
                extra = value.split()
    urls = [clean_url(u.rstrip("/")) for u in [default or PYPI, *extra] if u]
    return list(dict.fromkeys(urls))


def python_info(python: str) -> PythonInfo:
    data = _probe(python)
    return PythonInfo(version=data["version"], platform=data["platform"])
