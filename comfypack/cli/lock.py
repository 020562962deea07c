"""``comfypack lock``: record a workflow's environment in a lock file."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import _LOCKED_COMFYUI, _console, _errors
from ._group import cli
from ._locking import (
    _MISSING_HELP,
    _SOURCES_HELP,
    _STRICT_HELP,
    _UI_HELP,
    _lock_kwargs,
    _report_lock,
)

__all__ = ["lock_cmd"]


@cli.command("lock")
@click.argument("workflow", type=click.Path(path_type=Path))
@_LOCKED_COMFYUI
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("comfypack.lock.json"),
    show_default=True,
    help="Where to write the lock.",
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_SOURCES_HELP,
)
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option(
    "--python",
    default=None,
    help="The interpreter that runs ComfyUI (default: this one, or $COMFYPACK_PYTHON).",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Look up model sources only in the sources file, the "
    "workflow's own model URLs and the Hugging Face cache (no network).",
)
@click.option(
    "--ui-workflow",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_UI_HELP,
)
@click.option("--allow-missing-models", is_flag=True, help=_MISSING_HELP)
@_errors
def lock_cmd(
    workflow: Path,
    comfyui_dir: Path | None,
    output: Path,
    sources_file: Path | None,
    strict: bool,
    python: str | None,
    offline: bool,
    ui_workflow: Path | None,
    allow_missing_models: bool,
) -> None:
    """Record WORKFLOW's environment (ComfyUI, custom nodes, packages, models) in a lock file."""
    from ..config import default_comfyui_dir
    from ..lock.create import create_lock
    from ..lockfile import write_lock

    lock = create_lock(
        workflow,
        comfyui_dir or default_comfyui_dir(),
        **_lock_kwargs(sources_file, strict, python, offline, ui_workflow, allow_missing_models),
    )
    write_lock(lock, output)
    con = _console()
    _report_lock(lock, con)
    con.print(f"wrote {output}")
