"""``comfypack version``: the version, and with --json every command and its options."""

from __future__ import annotations

import json

import click

from ._group import cli

__all__ = ["version_cmd"]


@cli.command("version")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the version, every command and each command's options as JSON.",
)
def version_cmd(as_json: bool) -> None:
    """Print comfypack's version (--json: also what this CLI can do, for tools that drive it,
    such as the canvas buttons)."""
    from .._version import __version__

    if not as_json:
        click.echo(__version__)
        return
    commands: dict[str, list[str]] = {}

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in sorted(group.commands.items()):
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")
                continue
            commands[prefix + name] = sorted(
                opt
                for param in command.params
                if isinstance(param, click.Option)
                for opt in (*param.opts, *param.secondary_opts)
            )

    walk(cli, "")
    click.echo(json.dumps({"version": __version__, "commands": commands}, indent=2, sort_keys=True))
