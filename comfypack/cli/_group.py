"""The ``comfypack`` click group (-v / --version, logging) and ``main``, the entry point."""

from __future__ import annotations

import logging

import click

from ._common import _console

__all__ = ["cli", "main"]


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="comfypack")
def cli(verbose: int) -> None:
    """Turn a ComfyUI workflow into a reproducible, typed REST service."""
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * verbose if verbose < 2 else logging.DEBUG
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(message)s",
        handlers=[RichHandler(console=_console(stderr=True), show_path=False)],
    )
    logging.getLogger("comfypack").setLevel(logging.INFO if verbose == 0 else level)


def main() -> None:
    cli(prog_name="comfypack")
