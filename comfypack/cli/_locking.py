"""What lock and pack share: the lock's settings from their flags, its report, the flags' help."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import WorkflowError
from ._common import _endpoints

__all__ = []


def _default_python() -> str:
    return os.environ.get("COMFYPACK_PYTHON") or sys.executable


def _resolvers(sources_file: Path | None, offline: bool, ui_workflow: Path | None = None) -> Any:
    from ..lock.declared import workflow_model_urls
    from ..lock.resolve import default_resolvers

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
