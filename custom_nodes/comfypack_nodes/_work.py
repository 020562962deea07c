"""What the routes do, as blocking functions run off ComfyUI's event loop (in a thread).

comfypack (the library) is imported here, lazily: ComfyUI imports the node package without
it, and a ComfyUI whose Python lacks comfypack answers a clear 501 (:func:`require_comfypack`)
instead of failing at import. Long steps report into a :class:`~._jobs.Job`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ._jobs import HashProgress, Job, JobFailed

__all__ = [
    "require_comfypack",
    "load_api",
    "interface",
    "PACK_STAGES",
    "lock_job",
    "make_pack",
    "pack_job",
    "cli_has",
    "cli_options",
    "cli_features",
    "bentocloud_context",
    "run_cli_job",
    "slug",
]

PACK_STAGES = [
    "saving the workflow",
    "hashing models",
    "locking the environment",
    "writing the pack",
]
_INSTALL_HINT = (
    "comfypack is not installed in the Python that runs ComfyUI; run: "
    "{python} -m pip install comfypack (then restart ComfyUI)"
)


def require_comfypack() -> None:
    if importlib.util.find_spec("comfypack") is None:
        raise JobFailed(
            501, "comfypack_missing", _INSTALL_HINT.format(python=shlex.quote(sys.executable))
        )


def cli_command() -> list[str]:
    """How to run the comfypack CLI (``$COMFYPACK_CLI`` overrides, space-separated)."""
    env = os.environ.get("COMFYPACK_CLI")
    return env.split() if env else [sys.executable, "-m", "comfypack.cli"]


def slug(name: Any, default: str = "workflow") -> str:
    """A file-name-safe form of a workflow name ("My flow.json" → "My_flow")."""
    text = str(name or "")
    text = re.sub(r"\.(json|cpack\.zip|zip)$", "", text.rsplit("/", 1)[-1], flags=re.I)
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:64]
    return text or default


# ----------------------------------------------------------------------------------------------
# interface


def load_api(workflow: Any, comfyui_url: str) -> dict[str, Any]:
    """The API-format workflow from a request's ``workflow`` (API format, or UI format converted
    with this ComfyUI's ``/object_info``)."""
    require_comfypack()
    from comfypack.comfyui.loader import load_any_workflow
    from comfypack.workflow.interface import load_workflow
    from comfypack.workflow.uiformat import is_ui_format

    if not isinstance(workflow, dict) or not workflow:
        raise JobFailed(
            400,
            "bad_request",
            "`workflow` must be a non-empty JSON object: the API-format "
            "workflow (the frontend's app.graphToPrompt().output)",
        )
    if is_ui_format(workflow):
        return load_any_workflow(workflow, comfyui_url=comfyui_url)
    return load_workflow(workflow)


def _nodes_named(workflow: dict[str, Any], problem: dict[str, Any]) -> list[str]:
    """The ids of the input (or output) nodes a problem of :func:`parse_interface` is about."""
    from comfypack.workflow.interface import INPUT_NODES, OUTPUT_NODES

    field = problem.get("field")
    said = re.search(r"\b(input|output)\b", str(problem.get("message", "")).partition("): ")[2])
    classes = (
        set(INPUT_NODES)
        if said and said.group(1) == "input"
        else set(OUTPUT_NODES)
        if said
        else {*INPUT_NODES, *OUTPUT_NODES}
    )
    out = []
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or node.get("class_type") not in classes:
            continue
        name = (node.get("inputs") or {}).get("name")
        if (field is None and not name) or (field is not None and name == field):
            out.append(str(node_id))
    return out


def _example_value(item: dict[str, Any]) -> Any:
    kind = item["kind"]
    if kind in ("image", "file", "audio", "video"):
        ext = {"image": "png", "audio": "wav", "video": "mp4", "file": "bin"}[kind]
        return f"https://example.com/input.{ext}"
    if "default" in item:
        return item["default"]
    return {"string": "", "int": 0, "float": 0.0, "boolean": False}.get(kind)


def interface(workflow: dict[str, Any]) -> dict[str, Any]:
    """The typed interface document (as ``comfypack inspect --json``), plus the workflow's hash
    and an example request body. A broken interface raises the WorkflowError with each problem
    naming its field and the node ids that declare it."""
    from comfypack.errors import WorkflowError
    from comfypack.lock.create import workflow_sha256
    from comfypack.workflow.interface import parse_interface
    from comfypack.workflow.schema import interface_document

    try:
        iface = parse_interface(workflow)
    except WorkflowError as e:
        details = e.details if isinstance(e.details, list) else []
        enriched = [
            {**d, "nodes": _nodes_named(workflow, d)} if isinstance(d, dict) else d for d in details
        ]
        raise JobFailed(400, e.type, e.message, enriched or e.details) from e
    doc = interface_document(iface)
    example = {i["name"]: _example_value(i) for i in doc["inputs"] if i["kind"] != "seed"}
    return {
        **doc,
        "workflow_sha256": workflow_sha256(workflow),
        "example_request": example,
        "fallback_outputs": iface.fallback_outputs,
    }


# ----------------------------------------------------------------------------------------------
# lock and pack


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _lock(
    job: Job,
    workflow_path: Path,
    workflow: dict[str, Any],
    comfyui_dir: Path,
    *,
    offline: bool,
    ui_workflow: dict[str, Any] | None = None,
) -> Any:
    from comfypack.files.hashing import default_hash_cache, hash_files
    from comfypack.lock.create import create_lock
    from comfypack.lock.declared import workflow_model_urls
    from comfypack.lock.models import find_models
    from comfypack.lock.resolve import default_resolvers

    found = find_models(workflow, comfyui_dir)
    job.stage(
        "hashing models",
        f"hashing {len(found)} model file(s)" if found else "no model files to hash",
    )
    cache = default_hash_cache()
    if found:
        # the hashes land in the cache; create_lock then reads them from it
        hash_files([p for _, _, p in found], cache=cache, progress=HashProgress(job))  # type: ignore[arg-type]
    job.stage(
        "locking the environment", "recording ComfyUI, custom nodes, packages and model sources"
    )
    resolvers = default_resolvers(
        None,
        hf_endpoint=os.environ.get("HF_ENDPOINT") or None,
        civitai_url=os.environ.get("COMFYPACK_CIVITAI_URL") or None,
        offline=offline,
        workflow_models=workflow_model_urls(ui_workflow or {}),
    )
    return create_lock(
        workflow_path,
        comfyui_dir,
        python=os.environ.get("COMFYPACK_PYTHON") or sys.executable,
        resolvers=resolvers,
        hash_cache=cache,
    )


def _lock_summary(lock: Any) -> dict[str, Any]:
    from comfypack.lock.create import missing_sources

    return {
        "comfyui": lock.comfyui.version,
        "custom_nodes": len(lock.custom_nodes),
        "packages": len(lock.packages),
        "models": len(lock.models),
        "missing_sources": missing_sources(lock),
    }


def lock_job(
    job: Job,
    workflow: dict[str, Any],
    *,
    work_dir: Path,
    comfyui_dir: Path,
    offline: bool,
    downloads: Any,
) -> dict[str, Any]:
    from comfypack.lockfile import dumps, write_lock

    job.stage("saving the workflow")
    workflow_path = work_dir / "workflow_api.json"
    _write_json(workflow_path, workflow)
    lock = _lock(job, workflow_path, workflow, comfyui_dir, offline=offline)
    out = work_dir / "comfypack.lock.json"
    write_lock(lock, out)
    download_id = downloads.add(str(out), "comfypack.lock.json")
    return {
        "lock": json.loads(dumps(lock)),
        "summary": _lock_summary(lock),
        "download_id": download_id,
        "download_url": f"/comfypack/download/{download_id}",
        "filename": "comfypack.lock.json",
    }


def make_pack(
    job: Job,
    workflow: dict[str, Any],
    ui_workflow: dict[str, Any] | None,
    name: str,
    *,
    work_dir: Path,
    comfyui_dir: Path,
    input_dir: Path,
    offline: bool,
) -> tuple[Path, Any]:
    """Lock and pack into ``work_dir/NAME.cpack.zip``; returns ``(pack, lock)``."""
    from comfypack.pack.archive import create_pack

    job.stage("saving the workflow")
    workflow_path = work_dir / "workflow_api.json"
    _write_json(workflow_path, workflow)
    ui_path = None
    if ui_workflow:
        ui_path = work_dir / "workflow.json"
        _write_json(ui_path, ui_workflow)
    # the canvas graph's properties.models[] say where its models come from
    lock = _lock(
        job, workflow_path, workflow, comfyui_dir, offline=offline, ui_workflow=ui_workflow
    )
    job.stage("writing the pack")
    out = work_dir / f"{name}.cpack.zip"
    create_pack(
        workflow_path, comfyui_dir, out, lock=lock, ui_workflow=ui_path, input_dir=input_dir
    )
    job.note(f"wrote {out.name} ({out.stat().st_size} bytes)")
    return out, lock


def pack_job(
    job: Job,
    workflow: dict[str, Any],
    ui_workflow: dict[str, Any] | None,
    name: str,
    *,
    work_dir: Path,
    comfyui_dir: Path,
    input_dir: Path,
    offline: bool,
    downloads: Any,
) -> dict[str, Any]:
    out, lock = make_pack(
        job,
        workflow,
        ui_workflow,
        name,
        work_dir=work_dir,
        comfyui_dir=comfyui_dir,
        input_dir=input_dir,
        offline=offline,
    )
    download_id = downloads.add(str(out), out.name)
    return {
        "download_id": download_id,
        "download_url": f"/comfypack/download/{download_id}",
        "filename": out.name,
        "size": out.stat().st_size,
        "lock": _lock_summary(lock),
    }


# ----------------------------------------------------------------------------------------------
# the CLI: build / deploy


_cli_features: dict[str, Any] = {}


def cli_features() -> dict[str, Any] | None:
    """What the CLI can do: ``comfypack version --json`` — ``{"version", "commands": {name:
    [options]}}`` — asked in a subprocess (the CLI may be newer than what this ComfyUI imported);
    None when it cannot say (a comfypack too old to have ``version --json``). Only an answer is
    cached."""
    if _cli_features:
        return _cli_features
    try:
        proc = subprocess.run(
            [*cli_command(), "version", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("commands"), dict):
        return None
    _cli_features.update(data)
    return _cli_features


def cli_options(command: str) -> list[str] | None:
    """The options of ``comfypack COMMAND``, or None when this comfypack has no such command."""
    features = cli_features()
    options = (features or {}).get("commands", {}).get(command)
    return [str(o) for o in options] if isinstance(options, list) else None


def cli_has(command: str) -> bool:
    return cli_options(command) is not None


def _bentoml() -> list[str]:
    exe = shutil.which("bentoml", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "bentoml"]


def bentocloud_context() -> dict[str, Any]:
    """``{"logged_in": bool, "context": name or None, "how": ...}``: whether ``bentoml cloud
    login`` was done on this machine (or BENTO_CLOUD_API_KEY is set in ComfyUI's environment).
    No key ever comes from, or goes to, the browser."""
    if os.environ.get("BENTO_CLOUD_API_KEY"):
        return {
            "logged_in": True,
            "context": None,
            "how": "BENTO_CLOUD_API_KEY in ComfyUI's environment",
        }
    try:
        proc = subprocess.run(
            [*_bentoml(), "cloud", "current-context"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"logged_in": False, "context": None, "how": f"cannot run bentoml: {e}"}
    if proc.returncode != 0:
        return {
            "logged_in": False,
            "context": None,
            "how": "no BentoCloud context (`bentoml cloud login`)",
        }
    name = None
    try:
        data = json.loads(proc.stdout)
        name = data.get("name") if isinstance(data, dict) else None
    except ValueError:
        pass
    return {"logged_in": True, "context": name, "how": "bentoml cloud login"}


def run_cli_job(job: Job, args: list[str], stage: str) -> dict[str, Any]:
    """Run ``comfypack ARGS`` as a subprocess: its log (stderr) into the job's log as it comes,
    its output (stdout; JSON with ``--json``) into the result, with the Bento's tag as
    ``bento`` where the JSON names one (``tag`` of build / deploy, ``bento`` of a deployment
    config)."""
    job.stage(stage, f"comfypack {args[0]} …")
    started = time.monotonic()
    proc = subprocess.Popen(
        [*cli_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"},
    )
    log: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                log.append(line.rstrip())
                job.note(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    rc = proc.wait()
    reader.join(10)
    for line in out.splitlines():
        if line.strip():
            job.note(line)
    if rc != 0:
        last = (log or out.splitlines() or ["no output"])[-1]
        raise JobFailed(
            500 if rc == 1 else 400,
            f"{args[0]}_failed",
            f"`comfypack {args[0]}` failed (exit code {rc}): {last.strip()}",
            {"exit_code": rc, "output": "\n".join([*log[-20:], *out.splitlines()[-10:]])},
        )
    result: dict[str, Any] = {
        "exit_code": rc,
        "output": "\n".join([*log[-10:], *out.splitlines()[-30:]]),
        "seconds": round(time.monotonic() - started, 1),
    }
    try:
        result["json"] = json.loads(out)
    except ValueError:
        pass
    data = result.get("json")
    tag = (
        (data.get("tag") or data.get("bento")) if isinstance(data, dict) else None
    )  # build | deploy
    if isinstance(tag, str):
        result["bento"] = tag
    return result
