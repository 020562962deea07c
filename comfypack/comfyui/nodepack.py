"""Put comfypack's node package into an existing ComfyUI (``comfypack nodes install/uninstall``).

The node package is *linked*, not copied: ``DIR/custom_nodes/comfypack_nodes`` becomes a symlink
to the ``comfypack_nodes`` folder of an installed comfypack (inside the wheel it is
``comfypack/_custom_nodes/comfypack_nodes``), so upgrading comfypack upgrades the nodes. Nothing
that comfypack did not create is ever replaced or removed: an existing folder, file or foreign link
at that path is an error naming it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..errors import ProvisionError, RequestError

__all__ = [
    "LINK_NAME",
    "NodesChange",
    "check_comfyui_dir",
    "install_nodes",
    "uninstall_nodes",
    "pip_install_command",
    "python_node_package",
    "guess_comfyui_python",
]

LINK_NAME = "comfypack_nodes"
_MARKERS = ("main.py", "comfyui_version.py")


@dataclass(frozen=True)
class NodesChange:
    """What ``install_nodes`` / ``uninstall_nodes`` did: ``action`` is linked, unchanged, removed
    or absent; ``link`` the path in ``custom_nodes``; ``target`` the node package it points to."""

    action: str
    link: Path
    target: Path | None = None


def check_comfyui_dir(comfyui_dir: Path) -> Path:
    """``comfyui_dir`` resolved, or a :class:`RequestError` when it is not a ComfyUI tree."""
    d = Path(comfyui_dir).expanduser()
    if not d.is_dir():
        raise RequestError(
            f"--comfyui {d}: no such folder (give the folder that holds ComfyUI's main.py)"
        )
    missing = [m for m in _MARKERS if not (d / m).is_file()]
    if missing:
        raise RequestError(
            f"--comfyui {d} is not a ComfyUI folder (it has no {' / '.join(missing)}); "
            "give the folder that holds ComfyUI's main.py"
        )
    return d.resolve()


def _own_package() -> Path:
    from .process import node_package_dir

    return (node_package_dir() / LINK_NAME).resolve()


def _is_node_package(path: Path) -> bool:
    return (path / "__init__.py").is_file() and (path / "web").is_dir()


def _made_by_us(link: Path, own: Path) -> bool:
    """A symlink comfypack made: it points at this comfypack's node package, or at the one inside
    an installed comfypack wheel (``…/comfypack/_custom_nodes/comfypack_nodes``)."""
    if not link.is_symlink():
        return False
    target = link.resolve()
    if target == own:
        return True
    return (
        target.name == LINK_NAME
        and target.parent.name == "_custom_nodes"
        and target.parent.parent.name == "comfypack"
        and _is_node_package(target)
    )


def _link_path(comfyui_dir: Path) -> Path:
    return check_comfyui_dir(comfyui_dir) / "custom_nodes" / LINK_NAME


def install_nodes(comfyui_dir: Path, target: Path | None = None) -> NodesChange:
    """Link the node package (``target``, default this comfypack's) into ``comfyui_dir``'s
    ``custom_nodes``. A second run is a no-op; anything else already there is an error."""
    link = _link_path(comfyui_dir)
    target = (target or _own_package()).resolve()
    if not _is_node_package(target):
        raise ProvisionError(
            f"{target} is not comfypack's node package (no __init__.py and web/); "
            "reinstall comfypack"
        )
    if link.is_symlink() and link.resolve() == target:
        return NodesChange("unchanged", link, target)
    if link.is_symlink() or link.exists():
        what = (
            f"a link to {os.readlink(link)}"
            if link.is_symlink()
            else "a folder"
            if link.is_dir()
            else "a file"
        )
        hint = (
            "run `comfypack nodes uninstall` with the comfypack that made it first"
            if _made_by_us(link, target)
            else "move it away yourself if it should be replaced"
        )
        raise RequestError(f"{link} already exists ({what}); comfypack will not replace it: {hint}")
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return NodesChange("linked", link, target)


def uninstall_nodes(comfyui_dir: Path) -> NodesChange:
    """Remove the link :func:`install_nodes` made (only a link comfypack made; never a folder)."""
    link = _link_path(comfyui_dir)
    if not link.is_symlink() and not link.exists():
        return NodesChange("absent", link)
    if not _made_by_us(link, _own_package()):
        what = (
            f"a link to {os.readlink(link)}" if link.is_symlink() else "not a link comfypack made"
        )
        raise RequestError(
            f"{link} is {what}; comfypack leaves it alone (remove it yourself if you "
            "no longer want it)"
        )
    target = link.resolve()
    link.unlink()
    return NodesChange("removed", link, target)


def pip_install_command(python: str, spec: str | None = None) -> list[str]:
    """The command that installs comfypack into ``python`` (default: this comfypack's version)."""
    return [python, "-m", "pip", "install", spec or f"comfypack=={__version__}"]


def guess_comfyui_python(comfyui_dir: Path) -> str | None:
    """A virtual environment's Python next to / inside the ComfyUI tree, if there is one."""
    d = Path(comfyui_dir)
    sub = Path("Scripts", "python.exe") if sys.platform == "win32" else Path("bin", "python")
    for venv in (
        d / "venv",
        d / ".venv",
        d.parent / "venv",
        d.parent / ".venv",
        d.parent / "python_embeded",
    ):
        py = venv / sub if venv.name != "python_embeded" else venv / "python.exe"
        if py.is_file():
            return str(py)
    return None


_PROBE = (
    "import importlib.util,sys\n"
    "if importlib.util.find_spec('comfypack') is None: sys.exit(3)\n"
    "from comfypack.comfyui.process import node_package_dir\n"
    "print(node_package_dir() / 'comfypack_nodes')\n"
)


def python_node_package(python: str) -> Path | None:
    """The node package of the comfypack installed in ``python`` (None: comfypack is not there)."""
    try:
        r = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RequestError(f"--python {python}: cannot run it ({e})") from e
    if r.returncode == 3:
        return None
    if r.returncode != 0 or not r.stdout.strip():
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProvisionError(
            f"--python {python}: comfypack there is broken ({last}); "
            f"reinstall it: {shlex.join(pip_install_command(python))}"
        )
    return Path(r.stdout.strip().splitlines()[-1])
