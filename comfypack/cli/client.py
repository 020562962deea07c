"""``comfypack client``: a typed Python client module for a workflow or pack."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import _console, _errors, _is_pack
from ._group import cli

__all__ = ["client_cmd"]


@cli.command("client")
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the module (default: print it).",
)
@click.option(
    "--endpoint",
    default="generate",
    show_default=True,
    help="Route of the service's endpoint (`comfypack serve --endpoint`).",
)
@click.option(
    "--name", default=None, help="The workflow's name in the client (default: from the file name)."
)
@_errors
def client_cmd(workflow: Path, output: Path | None, endpoint: str, name: str | None) -> None:
    """Generate a typed Python client module for WORKFLOW (an API-format JSON, or a .cpack.zip)."""
    from ..ship.codegen import generate_client
    from ..workflow.interface import load_workflow, parse_interface, workflow_name

    if _is_pack(workflow):
        from ..pack.archive import read_pack

        graph = read_pack(workflow).workflow
    else:
        graph = load_workflow(workflow)
    label = workflow_name(workflow)
    try:
        source = generate_client(
            parse_interface(graph), workflow_name=name or label, endpoint=endpoint
        )
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--endpoint") from e
    if output is None:
        click.echo(source, nl=False)
        return
    output.write_text(source, encoding="utf-8")
    _console(stderr=True).print(f"wrote {output}")
