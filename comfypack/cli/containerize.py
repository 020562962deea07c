"""``comfypack containerize``: a pack's Bento built into an OCI image (buildah or docker)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._bento import _bento_options, _options, _pack_arg
from ._common import _console, _endpoints, _errors
from ._group import cli

__all__ = ["containerize_cmd"]


@cli.command("containerize")
@click.argument("pack", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("-t", "--tag", default=None, help="Image name (default: the Bento's tag).")
@click.option(
    "--name", "bento_name", default=None, help="Bento name (default: from the pack's file name)."
)
@_bento_options
@click.option(
    "--base-image",
    default=None,
    help="Base image with python3.11 (default: "
    "$COMFYPACK_BASE_IMAGE or the one `make base-image` makes).",
)
@click.option(
    "--builder",
    type=click.Choice(["auto", "buildah", "docker"]),
    default="auto",
    show_default=True,
    help="Image builder (auto: buildah where installed, else docker).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_errors
def containerize_cmd(
    pack: Path,
    tag: str | None,
    bento_name: str | None,
    bento_version: str | None,
    gpu: int,
    timeout: float,
    concurrency: int | None,
    workers: int | None,
    endpoint: str,
    include_models: bool,
    base_image: str | None,
    builder: str,
    as_json: bool,
) -> None:
    """Build PACK's Bento into an OCI image (buildah or docker): the locked environment restored
    at build, non-root, read-only root, models fetched into the COMFYPACK_HOME volume at start."""
    from ..ship.containerize import ContainerizeOptions, containerize

    options = _options(
        bento_name, bento_version, gpu, timeout, concurrency, workers, endpoint, include_models
    )
    with _console(stderr=True).status(f"building an image from {pack.name} …"):
        ep = _endpoints()
        result = containerize(
            _pack_arg(pack),
            options,
            ContainerizeOptions(tag=tag, base_image=base_image, builder=builder),
            hf_endpoint=ep["hf_endpoint"],
            civitai_url=ep["civitai_url"],
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "image": result.image,
                    "bento": result.bento,
                    "builder": result.builder,
                    "seconds": round(result.seconds, 1),
                },
                indent=2,
            )
        )
        return
    con = _console()
    con.print(
        f"built {result.image} ({result.builder}, {result.seconds:.0f} s) from Bento {result.bento}"
    )
    con.print(
        f"  manifests:  comfypack deploy {pack} --target kubernetes --image {result.image} -o DIR"
    )
