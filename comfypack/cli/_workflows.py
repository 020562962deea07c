"""A WORKFLOW argument of inspect / run / serve: either format (a UI-format one is converted),
or a ``.cpack.zip`` restored into its workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ComfyPackError, WorkflowError
from ._common import _allow_local_sources, _endpoints, _is_pack, logger

__all__ = []


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


def _warn_package_drift(lock: Any) -> None:
    from ..lock.packages import list_packages

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
