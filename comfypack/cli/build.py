"""``comfypack build``: a Bento that serves a pack."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._bento import _bento_options, _build_with_status, _options, _pack_arg
from ._common import _console, _errors
from ._group import cli

__all__ = ["build_cmd"]


@cli.command("build")
@click.argument("pack", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--name", "bento_name", default=None, help="Bento name (default: from the pack's file name)."
)
@_bento_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_errors
def build_cmd(
    pack: Path,
    bento_name: str | None,
    bento_version: str | None,
    gpu: int,
    timeout: float,
    concurrency: int | None,
    workers: int | None,
    endpoint: str,
    include_models: bool,
    as_json: bool,
) -> None:
    """Build a Bento that serves PACK (a .cpack.zip): the pack, the service, the node package
    and comfypack; its image restores the locked ComfyUI, custom nodes and packages."""
    result = _build_with_status(
        _pack_arg(pack),
        _options(
            bento_name, bento_version, gpu, timeout, concurrency, workers, endpoint, include_models
        ),
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "tag": result.tag,
                    "built": result.built,
                    "envs": result.plan.envs,
                    "labels": result.plan.labels,
                },
                indent=2,
            )
        )
        return
    import shlex

    con = _console()
    con.print(f"{'built' if result.built else 'already built:'} {result.tag}")
    con.print(f"  serve it:        bentoml serve {result.tag}")
    con.print(
        f"  make the image:  comfypack containerize {shlex.quote(str(pack))}  (read-only root, "
        "non-root, models in a cache volume; see the README)"
    )
