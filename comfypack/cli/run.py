"""``comfypack run``: one run of a workflow on a headless ComfyUI, outputs written to a folder."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import click

from ..errors import RequestError
from ..workflow.media import Upload
from ._common import _START_COMFYUI, _console, _errors
from ._group import cli
from ._workflows import _load_any, _workflow_or_pack

__all__ = ["run"]


def _parse_inputs(interface: Any, pairs: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    kinds = {s.name: s.kind for s in interface.inputs}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise RequestError.for_field(None, f"--input {pair!r}: use NAME=VALUE", status=400)
        key = key.strip()
        kind = kinds.get(key)
        if kind is None:
            body[key] = raw  # reported as an unknown field by validation
        elif kind in ("string", "choice"):
            body[key] = raw
        elif kind in ("image", "file", "audio", "video"):
            path = Path(raw[1:] if raw.startswith("@") else raw).expanduser()
            if path.is_file():
                body[key] = Upload(path.read_bytes(), path.name)
            elif raw.startswith(("http://", "https://", "data:")):
                body[key] = raw
            else:
                raise RequestError.for_field(
                    key, f"no such file: {path} (give a path, an http(s) URL or a data: URI)"
                )
        else:
            try:
                body[key] = json.loads(raw)
            except json.JSONDecodeError:
                body[key] = raw  # validation names the field and the expected type
    return body


@cli.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input value; files as a path (or @path), an http(s) URL or a data: URI. Repeatable.",
)
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="Folder for the outputs (files, and outputs.json for values).",
)
@_START_COMFYUI
@click.option(
    "--comfyui-url", default=None, help="Use an already running ComfyUI at this URL instead."
)
@click.option(
    "--timeout", type=float, default=600, show_default=True, help="Seconds to wait for the run."
)
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as JSON (files as paths).")
@_errors
def run(
    workflow: Path,
    inputs: tuple[str, ...],
    outdir: Path,
    comfyui_dir: Path | None,
    comfyui_url: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Run WORKFLOW (API or UI format, or a .cpack.zip) once on a headless ComfyUI (no server)
    and write its outputs to --output."""
    from ..comfyui.runner import WorkflowRunner
    from ..config import default_comfyui_dir
    from ..workflow.interface import parse_interface

    workflow, pack_comfyui = _workflow_or_pack(workflow, comfyui_dir)
    comfyui_dir = pack_comfyui or comfyui_dir
    wf = _load_any(workflow, comfyui_dir, comfyui_url)
    interface = parse_interface(wf)
    if not comfyui_url:
        from ..lock.models import missing_models

        missing = missing_models(wf, comfyui_dir or default_comfyui_dir())
        if missing is not None:
            raise missing
    from ..workflow.media import InputLimits

    runner = WorkflowRunner(wf, interface, limits=InputLimits.from_env())
    body = _parse_inputs(interface, inputs)

    async def go() -> Any:
        from ..comfyui.client import ComfyUIClient
        from ..comfyui.process import ComfyUIProcess

        request = await runner.prepare(body)  # caller errors before anything starts
        if comfyui_url:
            async with ComfyUIClient(comfyui_url) as client:
                return await runner.run(client, request, timeout=timeout)
        # COMFYPACK_PYTHON: the interpreter that runs ComfyUI (a restored workspace's venv)
        proc = ComfyUIProcess(
            comfyui_dir or default_comfyui_dir(), python=os.environ.get("COMFYPACK_PYTHON") or None
        )
        try:
            with _console(stderr=True).status("starting ComfyUI …"):
                proc.start()
                if pack_comfyui is not None:
                    from ..pack.restore import copy_inputs

                    copy_inputs(pack_comfyui / "input", proc.input_dir)  # the pack's assets
                await asyncio.to_thread(proc.wait_ready)
            async with ComfyUIClient(
                proc.url, output_dir=proc.output_dir, input_dir=proc.input_dir
            ) as client:
                return await runner.run(client, request, timeout=timeout)
        finally:
            await asyncio.to_thread(proc.stop)

    result = asyncio.run(go())
    written = result.write_to(outdir)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "prompt_id": result.prompt_id,
                    "files": [str(p) for p in written],
                    "seeds": result.seeds,
                },
                indent=2,
            )
        )
    else:
        con = _console()
        for p in written:
            con.print(f"wrote {p}")
        if result.seeds:
            con.print(f"seeds: {json.dumps(result.seeds)}")
