"""A pack's workspace, for whatever runs it: the CLI (``run`` / ``serve PACK``), a service's
start-up and a Bento's image build all go through here.

- :func:`restore_workspace`: restore the pack (on this Python: no venv) into
  ``$COMFYPACK_HOME/workspaces/<pack sha256[:16]>`` or a given folder, with its models fetched
  into the cache and verified — a quick check where it is already there;
- :func:`prepare_workspace`: the same without models (an image build; models come at start);
- :func:`seed_inputs`: give a started ComfyUI the pack's input assets.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["restore_workspace", "prepare_workspace", "seed_inputs", "WEIGHTS_DIR"]

#: next to the pack in a Bento built with ``--include-models``: ``weights/<sha256>``
WEIGHTS_DIR = "weights"


def _seed_cache(weights: Path, cache: Path) -> None:
    """Point the model cache at weights carried next to the pack (``weights/<sha256>``); restore
    verifies each by size and sha256 before it uses it."""
    cache.mkdir(parents=True, exist_ok=True)
    for path in sorted(weights.iterdir()):
        target = cache / path.name
        if re.fullmatch(r"[0-9a-f]{64}", path.name) and not (
            target.exists() or target.is_symlink()
        ):
            with contextlib.suppress(FileExistsError):
                os.symlink(path.resolve(), target)


def restore_workspace(
    pack: Path,
    workspace: Path | None = None,
    *,
    home: Path | None = None,
    progress: bool = False,
    hf_endpoint: str | None = None,
    civitai_url: str | None = None,
    allow_local_sources: bool = False,
) -> Any:
    """Restore ``pack`` into ``workspace`` (default: ``$COMFYPACK_HOME/workspaces/<pack
    sha256[:16]>``) with its models and return the :class:`~comfypack.pack.restore.Workspace`.
    Weights carried beside the pack (``weights/<sha256>``, a Bento built with
    ``--include-models``) are used first; ``hf_endpoint`` / ``civitai_url``: model-hub mirrors;
    ``allow_local_sources``: restore the lock's file:// sources (a trusted pack)."""
    from ..config import comfypack_home
    from ..pack.modelcache import model_cache_dir
    from ..pack.restore import default_workspace, unpack

    pack = Path(pack)
    home = home or comfypack_home()
    weights = pack.parent / WEIGHTS_DIR
    if weights.is_dir():
        _seed_cache(weights, model_cache_dir(home))
    dest = workspace or default_workspace(pack, home)
    return unpack(
        pack,
        dest,
        venv=False,
        progress=progress,
        home=home,
        hf_endpoint=hf_endpoint,
        civitai_url=civitai_url,
        allow_local_sources=allow_local_sources,
    )


def prepare_workspace(pack: Path, workspace: Path, *, allow_local_sources: bool = False) -> Any:
    """Restore ``pack`` into ``workspace`` without models (an image build's step); the folders
    written at start (model links, assets) exist, so volumes can be mounted there."""
    from ..pack.restore import unpack

    ws = unpack(
        Path(pack),
        Path(workspace),
        venv=False,
        models=False,
        progress=False,
        allow_local_sources=allow_local_sources,
    )
    for sub in ("models", "input"):
        (ws.comfyui_dir / sub).mkdir(exist_ok=True)
    return ws


def seed_inputs(workspace: Any, input_dirs: Iterable[Path]) -> None:
    """Copy the workspace's input files (the pack's assets) into each ComfyUI input folder, where
    it has none by that name."""
    from ..pack.restore import copy_inputs

    for input_dir in input_dirs:
        copy_inputs(Path(workspace.comfyui_dir) / "input", Path(input_dir))
