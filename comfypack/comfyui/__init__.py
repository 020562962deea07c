"""A headless ComfyUI: where its tree comes from, its process, its protocol, and running a
workflow on it.

- ``source``: the ComfyUI source kinds (git, packaged, release archive) and :func:`install`.
- ``process``: one headless ComfyUI child process on 127.0.0.1 (a *worker*), our node package.
- ``client``: ComfyUI's own HTTP + websocket protocol (upload, ``/prompt``, events, outputs).
- ``pool``: workers behind one bounded queue; a crashed worker is restarted.
- ``runner``: a workflow through its Interface — request values in, typed outputs out.
- ``objectinfo``: ComfyUI's node definitions (``/object_info``) and frontend version, cached.
- ``loader``: :func:`load_any_workflow` — API format as it is, UI format converted.
- ``nodepack``: put comfypack's node package into an existing ComfyUI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .client import ComfyUIClient, FileRef, ProgressEvent, RunResult
    from .loader import load_any_workflow
    from .nodepack import install_nodes, uninstall_nodes
    from .objectinfo import frontend_version_for, object_info_for
    from .pool import WorkerPool
    from .process import ComfyUIProcess, free_port, node_package_dir
    from .runner import OutputFile, PreparedRequest, RunOutput, WorkflowRunner
    from .source import (
        DEFAULT_PACKAGED,
        TORCH_PINS,
        ArchiveSource,
        ComfyUISource,
        GitSource,
        PackagedSource,
        comfyui_version,
        from_lock,
        install,
        install_requirements,
        read_marker,
        to_lock,
    )

_EXPORTS = {
    "ArchiveSource": ".source",
    "ComfyUIClient": ".client",
    "ComfyUIProcess": ".process",
    "ComfyUISource": ".source",
    "DEFAULT_PACKAGED": ".source",
    "FileRef": ".client",
    "GitSource": ".source",
    "OutputFile": ".runner",
    "PackagedSource": ".source",
    "PreparedRequest": ".runner",
    "ProgressEvent": ".client",
    "RunOutput": ".runner",
    "RunResult": ".client",
    "TORCH_PINS": ".source",
    "WorkerPool": ".pool",
    "WorkflowRunner": ".runner",
    "comfyui_version": ".source",
    "free_port": ".process",
    "from_lock": ".source",
    "frontend_version_for": ".objectinfo",
    "install": ".source",
    "install_nodes": ".nodepack",
    "install_requirements": ".source",
    "load_any_workflow": ".loader",
    "node_package_dir": ".process",
    "object_info_for": ".objectinfo",
    "read_marker": ".source",
    "to_lock": ".source",
    "uninstall_nodes": ".nodepack",
}

__all__ = [
    "ArchiveSource",
    "ComfyUIClient",
    "ComfyUIProcess",
    "ComfyUISource",
    "DEFAULT_PACKAGED",
    "FileRef",
    "GitSource",
    "OutputFile",
    "PackagedSource",
    "PreparedRequest",
    "ProgressEvent",
    "RunOutput",
    "RunResult",
    "TORCH_PINS",
    "WorkerPool",
    "WorkflowRunner",
    "comfyui_version",
    "free_port",
    "from_lock",
    "frontend_version_for",
    "install",
    "install_nodes",
    "install_requirements",
    "load_any_workflow",
    "node_package_dir",
    "object_info_for",
    "read_marker",
    "to_lock",
    "uninstall_nodes",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
