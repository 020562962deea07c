"""One loader for a workflow in either format: API format as it is, UI format (what ComfyUI's
"Save" writes) converted to API format with the node definitions of a real ComfyUI
(:mod:`comfypack.comfyui.objectinfo`) and the conversion of :mod:`comfypack.workflow.uiformat`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import WorkflowError
from ..workflow.interface import load_workflow
from ..workflow.uiformat import convert, is_ui_format
from . import objectinfo

__all__ = ["load_any_workflow"]

logger = logging.getLogger(__name__)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise WorkflowError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise WorkflowError(f"{path}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise WorkflowError(f"{path}: not valid JSON ({e})") from e


def load_any_workflow(
    source: str | Path | Mapping[str, Any],
    *,
    comfyui_dir: str | Path | None = None,
    comfyui_url: str | None = None,
    object_info: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    python: str | None = None,
    frontend: str | None = None,
) -> dict[str, Any]:
    """Load a workflow in either format, detected: API format as :func:`~comfypack.workflow.interface.
    load_workflow` does; UI format converted with :func:`~comfypack.workflow.uiformat.convert`, using ``object_info`` or the
    node definitions of the ComfyUI at ``comfyui_url``, else of the tree ``comfyui_dir`` (default:
    the provisioned one, run by ``python``, default this interpreter; started once, then cached —
    see :func:`comfypack.comfyui.objectinfo.object_info_for`).

    The conversion mirrors ``frontend`` (a ``comfyui-frontend-package`` version), else the
    frontend that ComfyUI serves (:func:`comfypack.comfyui.objectinfo.frontend_version_for`: what the
    server at ``comfyui_url`` reports, or the package installed in ``python`` for a tree, or the
    version the tree pins), else the newest frontend comfypack knows.
    """
    data: Any = source if isinstance(source, Mapping) else _read_json(Path(source))
    if not is_ui_format(data):
        return load_workflow(source)
    where = "workflow" if isinstance(source, Mapping) else str(source)
    if not data.get("nodes"):
        raise WorkflowError(f"{where}: this UI-format workflow has no nodes")
    if comfyui_dir is None and not comfyui_url:
        from ..config import default_comfyui_dir

        comfyui_dir = default_comfyui_dir()
    if object_info is None:
        object_info = (
            objectinfo.object_info_for(comfyui_url)
            if comfyui_url
            else objectinfo.object_info_for(
                Path(str(comfyui_dir)), cache_dir=cache_dir, python=python
            )
        )
    if frontend is None:
        frontend = (
            objectinfo.frontend_version_for(comfyui_url)
            if comfyui_url
            else objectinfo.frontend_version_for(Path(str(comfyui_dir)), python=python)
        )
        logger.debug("converting %s as frontend %s does", where, frontend or "(newest)")
    try:
        api = convert(data, object_info, frontend=frontend)
    except WorkflowError as e:
        raise WorkflowError(f"{where}: {e.message}", details=e.details) from e
    return load_workflow(api)
