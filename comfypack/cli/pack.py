"""``comfypack pack``: bundle a workflow, its lock, interface and assets into a .cpack.zip."""

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

__all__ = ["pack_cmd"]


def _default_pack_name(workflow: Path) -> Path:
    from ..workflow.interface import workflow_name

    return Path(f"{workflow_name(workflow)}.cpack.zip")


@cli.command("pack")
@click.argument("workflow", type=click.Path(path_type=Path))
@_LOCKED_COMFYUI
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The pack to write (default: NAME.cpack.zip, NAME from the workflow).",
)
@click.option(
    "--lock",
    "lock_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Use this lock instead of locking now.",
)
@click.option("--include-models", is_flag=True, help="Carry the model weights in the pack too.")
@click.option(
    "--ui-workflow",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_UI_HELP,
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_SOURCES_HELP,
)
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option("--python", default=None, help="The interpreter that runs ComfyUI.")
@click.option("--offline", is_flag=True, help="Look up model sources without network.")
@click.option("--allow-missing-models", is_flag=True, help=_MISSING_HELP)
@_errors
def pack_cmd(
    workflow: Path,
    comfyui_dir: Path | None,
    output: Path | None,
    lock_file: Path | None,
    include_models: bool,
    ui_workflow: Path | None,
    sources_file: Path | None,
    strict: bool,
    python: str | None,
    offline: bool,
    allow_missing_models: bool,
) -> None:
    """Bundle WORKFLOW, its lock, interface and input assets into a .cpack.zip."""
    from ..config import default_comfyui_dir
    from ..lock.create import create_lock
    from ..lockfile import read_lock
    from ..pack.archive import create_pack

    target = comfyui_dir or default_comfyui_dir()
    if lock_file is not None:
        lock = read_lock(lock_file)
    else:
        lock = create_lock(
            workflow,
            target,
            **_lock_kwargs(
                sources_file, strict, python, offline, ui_workflow, allow_missing_models
            ),
        )
    out = output or _default_pack_name(workflow)
    create_pack(
        workflow, target, out, lock=lock, ui_workflow=ui_workflow, include_models=include_models
    )
    con = _console()
    _report_lock(lock, con)
    con.print(f"wrote {out} ({out.stat().st_size} bytes)")
