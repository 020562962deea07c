"""What build, containerize and deploy share: the flags that decide a pack's Bento, the
``BuildOptions`` they make, the PACK check and the build with a status line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import F, _console, _endpoints, _is_pack

__all__ = []


def _bento_options(func: F) -> F:
    """The flags that decide what goes into a pack's Bento (shared by build and deploy)."""
    for option in reversed(
        [
            click.option(
                "--version",
                "bento_version",
                default=None,
                help="Bento version (default: a hash of the pack, these settings and comfypack).",
            ),
            click.option(
                "--gpu",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="GPUs per replica (BentoML resources; Kubernetes nvidia.com/gpu).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=600,
                show_default=True,
                help="Seconds one request may run.",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(min=1),
                default=None,
                help="Requests one replica takes at once (default: 2 per ComfyUI worker).",
            ),
            click.option(
                "--workers",
                type=click.IntRange(min=1),
                default=None,
                help="ComfyUI workers per replica (default: one per GPU, one on CPU).",
            ),
            click.option(
                "--endpoint", default="generate", show_default=True, help="Route of the endpoint."
            ),
            click.option(
                "--include-models",
                is_flag=True,
                help="Carry the model weights in the Bento (default: fetched from their "
                "sources at start and verified by sha256).",
            ),
        ]
    ):
        func = option(func)
    return func


def _options(
    bento_name: str | None,
    bento_version: str | None,
    gpu: int,
    timeout: float,
    concurrency: int | None,
    workers: int | None,
    endpoint: str,
    include_models: bool,
) -> Any:
    from ..ship.build import BuildOptions

    return BuildOptions(
        name=bento_name,
        version=bento_version,
        gpu=gpu,
        timeout=timeout,
        concurrency=concurrency,
        workers=workers,
        endpoint=endpoint,
        include_models=include_models,
    )


def _pack_arg(pack: Path) -> Path:
    if not _is_pack(pack):
        raise click.BadParameter(
            f"{pack} is not a .cpack.zip; make one with `comfypack pack WORKFLOW`",
            param_hint="PACK",
        )
    return pack


def _build_with_status(pack: Path, options: Any, *, reuse: bool = False) -> Any:
    from ..ship.build import build_bento

    ep = _endpoints()
    with _console(stderr=True).status(f"building a Bento from {pack.name} …"):
        return build_bento(
            pack, options, hf_endpoint=ep["hf_endpoint"], civitai_url=ep["civitai_url"], reuse=reuse
        )
