"""What the commands share: the consoles, the error rendering (each error's exit code), the
``--comfyui`` options of run / serve and lock / pack, and the model-hub settings."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import ComfyPackError

__all__ = []


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


class _UsageProblem(ComfyPackError):
    """A flag or argument that cannot work (exit 2, one line)."""

    status = 400
    exit_code = 2
    type = "usage"


def _is_pack(path: Path) -> bool:
    return path.name.endswith(".zip")


def _allow_local_sources(flag: bool = False) -> bool:
    """``--allow-local-sources``, or ``COMFYPACK_ALLOW_LOCAL_SOURCES=1``."""
    from ..config import allow_local_sources

    return flag or allow_local_sources()


def _endpoints() -> dict[str, str | None]:
    """Model-hub endpoints from the environment (mirrors, or local stand-ins in tests)."""
    from ..config import model_endpoints

    return model_endpoints()
