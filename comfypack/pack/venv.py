"""The restored workspace's virtual environment: exactly the locked packages, installed fast.

:func:`ensure_venv` creates ``DEST/venv`` and installs the lock's packages with **uv** (``uv venv``
and ``uv pip install --no-deps``: the lock is complete, nothing is re-resolved), or with pip where
uv is not usable. Either way the venv has pip afterwards (for the user, and for nodes' install
scripts). Before anything is installed, the lock's platform and Python are compared with the
interpreter the venv is made from: another platform is an error naming both (a wheel built for
one does not run on the other) unless ``ignore_platform``.

Requirements reach the installer as a requirements file of validated lines only —
``name==version``, ``name @ url#sha256=…`` or ``name @ git+url@commit`` (see
:func:`comfypack.lockfile.requirement`): never an option. Index URLs come from the lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from ..errors import LockError, RestoreError
from ..lockfile import Lock, check_sources

__all__ = [
    "ensure_venv",
    "find_uv",
    "venv_python",
    "installed_packages",
    "check_platform",
    "index_args",
    "requirements_text",
    "INSTALLERS",
    "SEED_PACKAGES",
]

logger = logging.getLogger(__name__)

#: ``auto``: uv where it runs, else pip
INSTALLERS = ("auto", "uv", "pip")
#: what a new venv brings (not in a lock: the installers' own tooling)
SEED_PACKAGES = frozenset({"pip", "setuptools", "wheel"})
_PYPI = "https://pypi.org/simple"


def venv_python(venv: Path) -> Path:
    return Path(venv) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_uv() -> str | None:
    """The uv executable (the ``uv`` package's, else one on ``PATH``) if it runs; else ``None``."""
    candidates = []
    try:
        from uv import find_uv_bin

        candidates.append(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    if found := shutil.which("uv"):
        candidates.append(found)
    for uv in candidates:
        try:
            if subprocess.run([uv, "--version"], capture_output=True, timeout=30).returncode == 0:
                return uv
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def installed_packages(python: Path | str) -> dict[str, str]:
    """Canonical name → version of what ``python`` has installed."""
    from ..lock.packages import list_packages

    return {p.name: p.version for p in list_packages(str(python))}


def _platform_of(python: str) -> tuple[str, str]:
    if python == sys.executable:
        return sysconfig.get_platform(), f"{sys.version_info.major}.{sys.version_info.minor}"
    from ..lock.packages import python_info

    info = python_info(python)
    return info.platform, ".".join(info.version.split(".")[:2])


def check_platform(lock: Lock, python: str = sys.executable, *, ignore: bool = False) -> None:
    """Refuse (:class:`LockError`, exit 2) to install the lock's packages for an interpreter of
    another platform or Python version than the lock's; ``ignore``: only warn."""
    platform, version = _platform_of(python)
    want_version = ".".join(lock.python.version.split(".")[:2])
    differ = []
    if lock.python.platform != platform:
        differ.append(f"platform {lock.python.platform} (here {platform})")
    if want_version != version:
        differ.append(f"Python {want_version} (here {version})")
    if not differ:
        return
    message = (
        f"the lock was made for {' and '.join(differ)}: its packages are built for that "
        "(e.g. CUDA wheels for linux-x86_64)"
    )
    if ignore:
        logger.warning("%s; installing them anyway (--ignore-platform)", message)
        return
    raise LockError(
        f"{message}. Restore it on a matching machine, or pass --ignore-platform to "
        "install the locked versions anyway"
    )


def _run(cmd: list[str], what: str, *, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RestoreError(
            f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}"
        )


def index_args(lock: Lock, *, allow_local: bool, uv: bool) -> list[str]:
    """The lock's indexes as installer flags. A ``file://`` index (this machine's) is used only
    with ``allow_local``; uv considers every index, as pip does (``unsafe-best-match``)."""
    from ..lockfile import is_local_url

    indexes = []
    for url in lock.indexes or []:
        if is_local_url(url) and not allow_local:
            logger.warning(
                "skipping the lock's package index %s: it is on the machine that made "
                "the lock (--allow-local-sources uses it)",
                url,
            )
        else:
            indexes.append(url)
    if not indexes or indexes == [_PYPI]:
        return []  # the installer's own default (and its configuration)
    args = ["--index-url", indexes[0]]
    for url in indexes[1:]:
        args += ["--extra-index-url", url]
    if uv and len(indexes) > 1 and not os.environ.get("UV_INDEX_STRATEGY"):
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def requirements_text(requirements: list[str]) -> str:
    """A requirements file of already validated requirement lines (see :attr:`Package.requirement`)."""
    return "".join(line + "\n" for line in requirements)


def _seed_pip(uv: str, python: Path) -> None:
    """pip in a uv-made venv: pinned to this environment's pip where known (from uv's cache),
    else the bundled one (``ensurepip``, offline)."""
    from importlib import metadata

    try:
        spec = f"pip=={metadata.version('pip')}"
    except metadata.PackageNotFoundError:
        spec = "pip"
    proc = subprocess.run(
        [uv, "pip", "install", "--python", str(python), "--no-deps", spec],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        _run([str(python), "-m", "ensurepip", "--default-pip"], "adding pip to the venv")


def ensure_venv(
    venv: Path,
    lock: Lock,
    *,
    installer: str = "auto",
    python: str = sys.executable,
    ignore_platform: bool = False,
    allow_local_sources: bool = False,
) -> tuple[Path, str]:
    """``venv`` with exactly the locked versions of the locked packages (and pip); only what is
    missing or differs is installed. Returns ``(its python, the installer used)``. A ``venv``
    path that exists and is not a virtual environment is refused (:class:`RestoreError`)."""
    if installer not in INSTALLERS:
        raise LockError(f"unknown installer {installer!r}; use one of {', '.join(INSTALLERS)}")
    venv = Path(venv)
    check_platform(lock, python, ignore=ignore_platform)
    check_sources(lock, allow_local=allow_local_sources)  # every requirement and index checked
    if venv.exists() and not (venv / "pyvenv.cfg").is_file():
        raise RestoreError(
            f"{venv} exists and is not a virtual environment; comfypack never "
            "overwrites what it did not create — move it aside"
        )
    uv = find_uv() if installer in ("auto", "uv") else None
    if installer == "uv" and uv is None:
        raise RestoreError(
            "--installer uv: uv is not installed or does not run here (pip install uv)"
        )
    used = "uv" if uv else "pip"
    py = venv_python(venv)
    if not venv.exists():
        if uv:
            _run([uv, "venv", "--quiet", "--python", python, str(venv)], f"uv venv {venv}")
            _seed_pip(uv, py)
        else:
            _run([python, "-m", "venv", str(venv)], f"creating the venv {venv}")
    have = installed_packages(py)
    todo = [p.requirement for p in lock.packages if have.get(p.name) != p.version]
    if not todo:
        return py, used
    logger.info("installing %d locked package(s) into %s with %s", len(todo), venv, used)
    fd, req = tempfile.mkstemp(prefix="comfypack-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(requirements_text(todo))
        if uv:
            cmd = [
                uv,
                "pip",
                "install",
                "--python",
                str(py),
                "--no-deps",
                *index_args(lock, allow_local=allow_local_sources, uv=True),
                "-r",
                req,
            ]
            _run(
                cmd,
                f"uv could not install the locked packages into {venv}",
                env={"UV_NO_PROGRESS": "1"},
            )
        else:
            cmd = [
                str(py),
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--disable-pip-version-check",
                "--no-input",
                *index_args(lock, allow_local=allow_local_sources, uv=False),
                "-r",
                req,
            ]
            _run(cmd, f"pip could not install the locked packages into {venv}")
    finally:
        os.unlink(req)
    return py, used
