"""``comfypack inspect``: a workflow's typed interface (inputs, outputs, JSON Schema)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import _console, _errors
from ._group import cli
from ._workflows import _load_any

__all__ = ["inspect"]


_UI_COMFYUI_HELP = (
    "ComfyUI tree whose node definitions convert a UI-format WORKFLOW (default: the "
    "provisioned one; started once, then cached)."
)


_UI_URL_HELP = (
    "Read the node definitions for a UI-format WORKFLOW from a running ComfyUI at this URL."
)


@cli.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the interface document (JSON Schema) as JSON."
)
@click.option(
    "--comfyui", "comfyui_dir", type=click.Path(path_type=Path), default=None, help=_UI_COMFYUI_HELP
)
@click.option("--comfyui-url", default=None, help=_UI_URL_HELP)
@_errors
def inspect(
    workflow: Path, as_json: bool, comfyui_dir: Path | None, comfyui_url: str | None
) -> None:
    """Print the typed interface (inputs, outputs, JSON Schema) of WORKFLOW (API or UI format)."""
    from ..workflow.interface import parse_interface
    from ..workflow.schema import interface_document

    interface = parse_interface(_load_any(workflow, comfyui_dir, comfyui_url))
    doc = interface_document(interface)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    con = _console()
    table = Table(title=f"inputs of {workflow.name}")
    for col in ("name", "type", "default", "bounds / options", "required", "description"):
        table.add_column(col)
    props = doc["input_schema"]["properties"]
    for spec in interface.inputs:
        prop = props[spec.name]
        bounds = ""
        if "enum" in prop:
            bounds = " | ".join(prop["enum"])
        elif "minimum" in prop or "maximum" in prop:
            bounds = f"{prop.get('minimum', '')} .. {prop.get('maximum', '')}"
        elif "maxLength" in prop:
            bounds = f"≤ {prop['maxLength']} chars"
        default = json.dumps(prop["default"]) if "default" in prop else ""
        table.add_row(
            spec.name,
            spec.kind,
            default,
            bounds,
            "yes" if spec.required else "",
            prop.get("description", ""),
        )
    con.print(table)
    out = Table(title="outputs")
    out.add_column("name")
    out.add_column("type")
    out.add_column("node")
    for o in interface.outputs:
        out.add_row(o.name, o.kind, o.node_id)
    con.print(out)
    con.print("JSON Schema of the request body:")
    con.print_json(json.dumps(doc["input_schema"]))
