"""What runs inside a Bento that ``comfypack build`` made (the builder is :mod:`comfypack.build`).

- at image build: ``python -m comfypack.bento_runtime prepare PACK WORKSPACE`` restores the pack's
  ComfyUI, custom nodes and assets without models (:func:`prepare_workspace`);
- at import of the service: :func:`apply_bento_settings` puts the Bento's settings
  (``comfypack-bento.json``) into the environment where it sets none;
- at start-up: :func:`restore_workspace` restores the pack again (a quick check where the image
  did it) and fetches each model into the cache, verified; :func:`seed_inputs` gives every worker
  the pack's input assets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from .errors import ComfyPackError

__all__ = [
    "SETTINGS_FILE",
    "WEIGHTS_DIR",
    "apply_bento_settings",
    "restore_workspace",
    "prepare_workspace",
    "seed_inputs",
]

#: the service's settings inside a Bento (read by ``comfypack.bento_service``).
SETTINGS_FILE = "comfypack-bento.json"
#: next to the pack in a Bento built with ``--include-models``: ``weights/<sha256>``
WEIGHTS_DIR = "weights"



def apply_bento_settings(root: Path) -> bool:
    """Inside a Bento that ``comfypack build`` made: put its settings (``root/comfypack-bento.json``)
    into the environment where the environment does not already set them, and make a relative
    ``COMFYPACK_PACK`` absolute. Returns whether there was such a file."""
    path = Path(root) / SETTINGS_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as e:
        raise ComfyPackError(f"{path} is unreadable ({e}); rebuild the Bento") from e
    for key, value in settings.items():
        os.environ.setdefault(str(key), str(value))
    pack = os.environ.get("COMFYPACK_PACK")
    if pack and not Path(pack).is_absolute() and (Path(root) / pack).is_file():
        os.environ["COMFYPACK_PACK"] = str(Path(root) / pack)
    return True


def _seed_cache(weights: Path, cache: Path) -> None:
    """Point the model cache at weights carried next to the pack (``weights/<sha256>``); restore
    verifies each by size and sha256 before it uses it."""
    cache.mkdir(parents=True, exist_ok=True)
    for path in sorted(weights.iterdir()):
        target = cache / path.name
        if re.fullmatch(r"[0-9a-f]{64}", path.name) and not (target.exists() or target.is_symlink()):
            with contextlib.suppress(FileExistsError):
                os.symlink(path.resolve(), target)


def _allow_local_sources() -> bool:
    """``COMFYPACK_ALLOW_LOCAL_SOURCES=1``: restore the lock's file:// sources (a trusted pack)."""
    return os.environ.get("COMFYPACK_ALLOW_LOCAL_SOURCES", "").lower() in ("1", "true", "yes")


def restore_workspace(pack: Path, workspace: Path | None = None, *, home: Path | None = None) -> Any:
    """The service's start-up: restore ``pack`` (on this Python) into ``workspace`` (default:
    ``$COMFYPACK_HOME/workspaces/<pack sha256[:16]>``) with its models, and return the
    :class:`~comfypack.restore.Workspace`. Where an image build already restored it, this only
    fetches the models. Hugging Face / Civitai mirrors: ``HF_ENDPOINT``, ``COMFYPACK_CIVITAI_URL``."""
    from .config import comfypack_home
    from .modelcache import model_cache_dir
    from .restore import default_workspace, unpack

    pack = Path(pack)
    home = home or comfypack_home()
    weights = pack.parent / WEIGHTS_DIR
    if weights.is_dir():
        _seed_cache(weights, model_cache_dir(home))
    dest = workspace or default_workspace(pack, home)
    return unpack(pack, dest, venv=False, progress=False, home=home,
                  hf_endpoint=os.environ.get("HF_ENDPOINT") or None,
                  civitai_url=os.environ.get("COMFYPACK_CIVITAI_URL") or None,
                  allow_local_sources=_allow_local_sources())


def seed_inputs(workspace: Any, pool: Any) -> None:
    """Copy the workspace's input files (the pack's assets) into each started worker's input dir."""
    from .restore import copy_inputs

    for worker in pool.workers:
        if worker.process is None or worker.process.workdir is None:
            continue
        copy_inputs(Path(workspace.comfyui_dir) / "input", worker.process.input_dir)


def prepare_workspace(pack: Path, workspace: Path) -> Any:
    """The image build's step: restore ``pack`` into ``workspace`` without models."""
    from .restore import unpack

    ws = unpack(Path(pack), Path(workspace), venv=False, models=False, progress=False,
                allow_local_sources=_allow_local_sources())
    for sub in ("models", "input"):  # written at start (model links, assets): volumes go there
        (ws.comfyui_dir / sub).mkdir(exist_ok=True)
    return ws


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m comfypack.bento_runtime",
                                     description="Steps that run inside a Bento's image build.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="restore PACK into WORKSPACE without models")
    prep.add_argument("pack", type=Path)
    prep.add_argument("workspace", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ws = prepare_workspace(args.pack, args.workspace)
    except ComfyPackError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.exit_code
    print(f"restored {args.pack} into {ws.root} (ComfyUI at {ws.comfyui_dir}); models are fetched "
          "when the service starts")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
