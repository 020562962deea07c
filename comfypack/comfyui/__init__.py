"""A headless ComfyUI: where its source comes from, its process, and its protocol."""

from .client import ComfyUIClient, FileRef, ProgressEvent, RunResult
from .process import ComfyUIProcess, free_port
from .source import (
    DEFAULT_PACKAGED,
    ArchiveSource,
    GitSource,
    PackagedSource,
    install,
    install_requirements,
)

__all__ = [
    "ArchiveSource",
    "ComfyUIClient",
    "ComfyUIProcess",
    "DEFAULT_PACKAGED",
    "FileRef",
    "GitSource",
    "PackagedSource",
    "ProgressEvent",
    "RunResult",
    "free_port",
    "install",
    "install_requirements",
]
