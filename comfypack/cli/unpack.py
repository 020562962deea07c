"""``comfypack unpack``: recreate a pack's workspace (or --verify one) in a folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import WorkflowError
from ._common import _allow_local_sources, _console, _endpoints, _errors
from ._group import cli
from ._locking import _SOURCES_HELP

__all__ = ["unpack_cmd"]


@cli.command("unpack")
@click.argument("pack", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--dir",
    "dest",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The workspace folder to create (or check).",
)
@click.option(
    "--verify",
    "verify_only",
    is_flag=True,
    help="Only check an existing workspace against the pack's lock; change nothing.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Add to a non-empty folder that is not a comfypack workspace "
    "(never deletes or overwrites anything there).",
)
@click.option(
    "--no-venv", is_flag=True, help="Do not build a venv; run on this Python environment."
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_SOURCES_HELP,
)
@click.option(
    "--allow-local-sources",
    is_flag=True,
    help="Restore file:// (or path) git remotes, package URLs and ComfyUI archives named by "
    "the lock; they read this machine's files, so only for a pack you trust "
    "(also COMFYPACK_ALLOW_LOCAL_SOURCES=1).",
)
@click.option(
    "--installer",
    type=click.Choice(["auto", "uv", "pip"]),
    default=None,
    help="What installs the venv's packages (default: $COMFYPACK_INSTALLER, else auto: uv "
    "where it runs, else pip).",
)
@click.option(
    "--ignore-platform",
    is_flag=True,
    help="Build the venv even where the lock's platform or Python version differs from this one.",
)
@click.option(
    "--run-install-scripts",
    is_flag=True,
    help="Run each custom node's install.py with the venv's Python afterwards (off by "
    "default: it runs the node author's code).",
)
@click.option(
    "--copy-models",
    is_flag=True,
    help="Copy models out of the cache instead of reflinking / linking them read-only.",
)
@_errors
def unpack_cmd(
    pack: Path,
    dest: Path,
    verify_only: bool,
    force: bool,
    no_venv: bool,
    sources_file: Path | None,
    allow_local_sources: bool,
    installer: str | None,
    ignore_platform: bool,
    run_install_scripts: bool,
    copy_models: bool,
) -> None:
    """Recreate PACK's workspace in --dir: ComfyUI, custom nodes, venv and verified models."""
    from ..pack.archive import read_pack
    from ..pack.restore import unpack
    from ..pack.verify import verify

    con = _console()
    if verify_only:
        if not dest.is_dir():
            raise WorkflowError(f"{dest}: no such workspace to verify")
        contents = read_pack(pack)
        diffs = verify(dest, contents.lock, progress=sys.stderr.isatty())
        if not diffs:
            con.print(f"{dest} matches the lock of {pack.name}")
            return
        err = _console(stderr=True)
        err.print(
            f"[bold red]{len(diffs)} difference(s)[/] between {dest} and the lock of {pack.name}:"
        )
        for d in diffs:
            err.print(f"  - {d}", markup=False, soft_wrap=True)
        sys.exit(1)
    ep = _endpoints()
    choice = installer or os.environ.get("COMFYPACK_INSTALLER") or "auto"
    if choice not in ("auto", "uv", "pip"):
        raise click.BadParameter(
            f"COMFYPACK_INSTALLER={choice!r}: use auto, uv or pip", param_hint="--installer"
        )
    ws = unpack(
        pack,
        dest,
        force=force,
        venv=not no_venv,
        sources_file=sources_file,
        progress=sys.stderr.isatty(),
        hf_endpoint=ep["hf_endpoint"],
        civitai_url=ep["civitai_url"],
        allow_local_sources=_allow_local_sources(allow_local_sources),
        installer=choice,
        ignore_platform=ignore_platform,
        run_install_scripts=run_install_scripts,
        copy_models=copy_models,
    )
    con.print(f"restored {pack.name} into {ws.root}")
    con.print(f"  ComfyUI: {ws.comfyui_dir}")
    con.print(f"  Python:  {ws.python}")
    env = f"COMFYPACK_PYTHON={ws.python} " if ws.python != sys.executable else ""
    con.print(f"serve it:  {env}comfypack serve {ws.workflow_path} --comfyui {ws.comfyui_dir}")
