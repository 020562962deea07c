"""``comfypack nodes install / uninstall``: comfypack's nodes and canvas buttons in a ComfyUI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import ComfyPackError, ProvisionError
from ._common import _console, _errors
from ._group import cli

__all__ = ["nodes", "nodes_install", "nodes_uninstall"]


@cli.group()
def nodes() -> None:
    """Put comfypack's nodes and canvas buttons into an existing ComfyUI."""


_COMFYUI_DIR = click.option(
    "--comfyui",
    "comfyui_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The ComfyUI folder (the one holding main.py).",
)


@nodes.command("install")
@_COMFYUI_DIR
@click.option(
    "--python",
    "python",
    default=None,
    help="The Python that runs ComfyUI: pip-install comfypack there when it lacks it, and "
    "link that comfypack's node package. Without it nothing is pip-installed.",
)
@click.option(
    "--package",
    "spec",
    default=None,
    help="What --python pip-installs (default: comfypack==<this version>; a wheel path works).",
)
@_errors
def nodes_install(comfyui_dir: Path, python: str | None, spec: str | None) -> None:
    """Link comfypack's node package into COMFYUI/custom_nodes (a second run is a no-op)."""
    import shlex
    import subprocess

    from ..comfyui.nodepack import (
        check_comfyui_dir,
        guess_comfyui_python,
        install_nodes,
        pip_install_command,
        python_node_package,
    )

    con = _console()
    root = check_comfyui_dir(comfyui_dir)
    target = None
    if python:
        target = python_node_package(python)
        if target is None:
            cmd = pip_install_command(python, spec)
            con.print(f"installing comfypack into {python}: {shlex.join(cmd)}")
            if subprocess.run(cmd).returncode != 0:
                raise ProvisionError(
                    f"pip could not install comfypack into {python} (see above); "
                    f"command: {shlex.join(cmd)}"
                )
            target = python_node_package(python)
            if target is None:
                raise ProvisionError(
                    f"{python} still cannot import comfypack after {shlex.join(cmd)}"
                )
    change = install_nodes(root, target)
    verb = "already linked" if change.action == "unchanged" else "linked"
    con.print(f"{verb}: {change.link} -> {change.target}", soft_wrap=True)
    if not python:
        py = guess_comfyui_python(root)
        if py is None or not _has_comfypack(py):
            con.print(
                "the canvas buttons need comfypack in the Python that runs ComfyUI; if it lacks it, "
                f"run: {shlex.join(pip_install_command(py or '<the python that runs ComfyUI>', spec))}",
                soft_wrap=True,
            )
    con.print("restart ComfyUI to load the nodes")


def _has_comfypack(python: str) -> bool:
    """Whether ``python`` (a ComfyUI's venv next to it) imports comfypack: this very interpreter
    does; another one is asked."""
    from ..comfyui.nodepack import python_node_package

    if os.path.realpath(Path(python).parent.parent) == os.path.realpath(sys.prefix):
        return True
    try:
        return python_node_package(python) is not None
    except ComfyPackError:
        return False


@nodes.command("uninstall")
@_COMFYUI_DIR
@_errors
def nodes_uninstall(comfyui_dir: Path) -> None:
    """Remove the link `comfypack nodes install` made (nothing else; comfypack stays pip-installed)."""
    from ..comfyui.nodepack import uninstall_nodes

    change = uninstall_nodes(comfyui_dir)
    con = _console()
    if change.action == "absent":
        con.print(f"nothing to remove: {change.link} does not exist")
    else:
        con.print(
            f"removed {change.link} (it pointed to {change.target}); restart ComfyUI",
            soft_wrap=True,
        )
