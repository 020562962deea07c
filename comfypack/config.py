"""Where comfypack keeps things. Config enters here and at the CLI; library code takes arguments."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = [
    "comfypack_home",
    "default_comfyui_dir",
    "record_default_comfyui",
    "service_state_dir",
    "model_endpoints",
    "allow_local_sources",
    "nodes_dir_override",
    "extra_nodes_dirs",
    "ENVIRONMENT",
]

_RECORD = "comfypack-default-comfyui.json"


def comfypack_home() -> Path:
    """``$COMFYPACK_HOME``, else ``~/.cache/comfypack``."""
    env = os.environ.get("COMFYPACK_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "comfypack"


def _record_path() -> Path:
    # Recorded per Python environment: the venv that `make setup` builds knows its ComfyUI.
    return Path(sys.prefix) / _RECORD


def default_comfyui_dir() -> Path:
    """``$COMFYPACK_COMFYUI_DIR``, else the last ``comfypack comfyui install`` in this
    environment, else ``$COMFYPACK_HOME/comfyui``."""
    env = os.environ.get("COMFYPACK_COMFYUI_DIR")
    if env:
        return Path(env).expanduser()
    try:
        return Path(json.loads(_record_path().read_text())["comfyui_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return comfypack_home() / "comfyui"


def record_default_comfyui(path: Path) -> None:
    try:
        _record_path().write_text(json.dumps({"comfyui_dir": str(path.resolve())}) + "\n")
    except OSError:
        pass  # a read-only interpreter prefix: the env var / --comfyui still work


def service_state_dir(host: str, port: int) -> Path:
    """``$COMFYPACK_HOME/services/<host>-<port>``: what one served instance keeps to itself
    (BentoML's task results and metrics). The address names the service: a restart of the same
    service finds its folder, two services on one host never share one."""
    import re

    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", host).strip("._") or "host"
    return comfypack_home() / "services" / f"{safe}-{int(port)}"


def model_endpoints() -> dict[str, str | None]:
    """Model-hub endpoints for restores: ``HF_ENDPOINT`` (a Hugging Face mirror) and
    ``COMFYPACK_CIVITAI_URL`` (a Civitai mirror), as ``restore_workspace``'s keyword arguments."""
    return {
        "hf_endpoint": os.environ.get("HF_ENDPOINT") or None,
        "civitai_url": os.environ.get("COMFYPACK_CIVITAI_URL") or None,
    }


def allow_local_sources() -> bool:
    """``COMFYPACK_ALLOW_LOCAL_SOURCES=1``: restore a lock's file:// sources (a trusted pack)."""
    return os.environ.get("COMFYPACK_ALLOW_LOCAL_SOURCES", "").lower() in ("1", "true", "yes")


def nodes_dir_override() -> Path | None:
    """``COMFYPACK_NODES_DIR``: the folder holding ``comfypack_nodes`` to use instead of the
    installed package's."""
    env = os.environ.get("COMFYPACK_NODES_DIR")
    return Path(env).expanduser() if env else None


def extra_nodes_dirs() -> list[Path]:
    """``COMFYPACK_EXTRA_NODES_DIRS``: more custom-node folders every worker loads."""
    return [
        Path(d) for d in os.environ.get("COMFYPACK_EXTRA_NODES_DIRS", "").split(os.pathsep) if d
    ]


#: Every ``COMFYPACK_*`` environment variable comfypack reads, with what it does (the README's
#: "Settings" table lists each; tests/unit/test_config.py holds the source, this table and the
#: README to each other). CLI flags, where there are any, win over these.
ENVIRONMENT: dict[str, str] = {
    # where things live
    "COMFYPACK_HOME": "comfypack's own folder: model cache, workspaces, services' state "
    "(default ~/.cache/comfypack)",
    "COMFYPACK_COMFYUI_DIR": "the ComfyUI tree to run (default: the last `comfypack comfyui install`)",
    "COMFYPACK_COMFYUI_URL": "attach to running ComfyUI(s) at these comma-separated URLs instead",
    "COMFYPACK_PYTHON": "the interpreter that runs ComfyUI (default: comfypack's own)",
    "COMFYPACK_NODES_DIR": "the folder holding comfypack_nodes (default: the installed package's)",
    "COMFYPACK_EXTRA_NODES_DIRS": "more custom-node folders every worker loads (os.pathsep-separated)",
    "COMFYPACK_CLI": "the command the canvas buttons run as the comfypack CLI (default: "
    "ComfyUI's Python -m comfypack.cli)",
    "COMFYPACK_ALLOWED_HOSTS": "more Host names the canvas routes accept (comma-separated)",
    # what a service serves and how
    "COMFYPACK_WORKFLOW": "the API-format workflow a service serves",
    "COMFYPACK_PACK": "the .cpack.zip a service serves (restored at start-up)",
    "COMFYPACK_WORKSPACE": "where a served pack is restored (default $COMFYPACK_HOME/workspaces/<sha>)",
    "COMFYPACK_ENDPOINT": "route of the typed endpoint (default generate)",
    "COMFYPACK_SERVICE_NAME": "the BentoML service name (default comfypack)",
    "COMFYPACK_EXAMPLE": "a JSON file with the request example /docs shows",
    "COMFYPACK_STATE_DIR": "a service's own folder (BentoML state, v2 assets); `serve --state-dir`",
    "COMFYPACK_LOG_LEVEL": "the service's log level (default INFO)",
    "COMFYPACK_WORKERS": "ComfyUI workers (default one per GPU, one on CPU)",
    "COMFYPACK_PIPELINE": "prompts each worker holds at once (default 2)",
    "COMFYPACK_MAX_QUEUE": "requests that may wait before 503 (default 64)",
    "COMFYPACK_TIMEOUT": "seconds a request may run (default 600)",
    "COMFYPACK_STARTUP_TIMEOUT": "seconds ComfyUI may take to start (default 180)",
    "COMFYPACK_WARMUP": "1: run the workflow once per worker before ready",
    "COMFYPACK_GPU": "GPUs the service asks BentoML for",
    "COMFYPACK_CONCURRENCY": "BentoML traffic.concurrency of the service",
    "COMFYPACK_API_KEY": "the key every request must carry (also the Comfy API v2 bearer key)",
    # limits on what callers send
    "COMFYPACK_MAX_UPLOAD_BYTES": "largest request body (default 100 MB)",
    "COMFYPACK_MAX_IMAGE_PIXELS": "largest image input, in pixels",
    "COMFYPACK_MAX_REQUEST_PIXELS": "pixels of all image inputs of one request together",
    "COMFYPACK_URL_ALLOW": "addresses, networks and hosts URL inputs and callbacks may reach anyway",
    "COMFYPACK_URL_MAX_BYTES": "largest file a URL input may fetch",
    "COMFYPACK_URL_TIMEOUT": "seconds a URL input's fetch may take",
    # Comfy API v2
    "COMFYPACK_V2_ANY_GRAPH": "1: v2 jobs may run any API-format graph (needs an API key)",
    "COMFYPACK_V2_IMPORT_DIR": "the one folder v2 assets/from-path may read",
    "COMFYPACK_V2_MAX_STORE_BYTES": "size cap of a service's v2 asset store (default 5 GiB)",
    "COMFYPACK_V2_ASSET_TTL": "seconds an unused v2 asset is kept (default 86400)",
    # results: webhooks and object storage
    "COMFYPACK_WEBHOOK_SECRET": "HMAC key that signs webhook events (none: callbacks refused)",
    "COMFYPACK_WEBHOOK_TIMEOUT": "seconds per delivery attempt",
    "COMFYPACK_WEBHOOK_ATTEMPTS": "delivery attempts at most",
    "COMFYPACK_WEBHOOK_RETRY_FOR": "seconds a delivery is retried in all",
    "COMFYPACK_WEBHOOK_BACKOFF": "first wait between attempts, doubling",
    "COMFYPACK_WEBHOOK_MAX_BACKOFF": "longest wait between attempts",
    "COMFYPACK_S3_BUCKET": "upload file outputs to this bucket (none: inline)",
    "COMFYPACK_S3_ENDPOINT": "the S3-compatible endpoint (default boto3's)",
    "COMFYPACK_S3_PREFIX": "key prefix of this service's outputs",
    "COMFYPACK_S3_REGION": "the bucket's region (default boto3's)",
    "COMFYPACK_S3_ADDRESSING": "auto, path or virtual-host addressing",
    "COMFYPACK_S3_URL_EXPIRES": "seconds a signed output URL is valid (default 3600)",
    "COMFYPACK_OUTPUTS": "url, inline, or both in order of preference",
    # lock, pack, restore, build
    "COMFYPACK_INSTALLER": "what installs a restored venv's packages: auto, uv or pip",
    "COMFYPACK_ALLOW_LOCAL_SOURCES": "1: restore a lock's file:// sources (a trusted pack)",
    "COMFYPACK_CIVITAI_URL": "a Civitai mirror for model downloads",
    "COMFYPACK_PACK_MAX_BYTES": "largest pack (unpacked bytes) restore accepts",
    "COMFYPACK_PACK_MAX_ENTRIES": "most files a pack may hold",
    "COMFYPACK_PACK_MAX_RATIO": "highest compression ratio of a pack entry",
    "COMFYPACK_BUILD_HOME": "the comfypack home an image build restores with (default a temp folder)",
    "COMFYPACK_BASE_IMAGE": "the base image `comfypack containerize` builds on",
}
