"""``comfypack serve``: a workflow as a typed REST endpoint; the flags become the service's
``COMFYPACK_*`` settings and ``bentoml serve`` takes over the process."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from ..atomic import atomic_write
from ..errors import ComfyPackError
from ._common import _START_COMFYUI, _console, _errors, _UsageProblem, logger
from ._group import cli
from ._workflows import _load_any, _workflow_or_pack

__all__ = ["serve"]


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
        from ..lock.models import missing_models

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
