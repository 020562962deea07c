"""What runs inside a Bento that ``comfypack build`` made (the builder is :mod:`comfypack.ship.build`).

- at image build: ``python -m comfypack.serve.bento_runtime prepare PACK WORKSPACE`` restores the pack's
  ComfyUI, custom nodes and assets without models
  (:func:`comfypack.serve.workspace.prepare_workspace`);
- at import of the service: :func:`apply_bento_settings` puts the Bento's settings
  (``comfypack-bento.json``) into the environment where it sets none.

At start-up the service restores the pack again like any served pack (a quick check where the
image did it; models fetched into the cache, verified): :mod:`comfypack.serve.workspace`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from ..errors import ComfyPackError
from .workspace import WEIGHTS_DIR, prepare_workspace

__all__ = ["SETTINGS_FILE", "WEIGHTS_DIR", "apply_bento_settings"]

#: the service's settings inside a Bento (read by ``comfypack.serve.bento_service``).
SETTINGS_FILE = "comfypack-bento.json"


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


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m comfypack.serve.bento_runtime",
        description="Steps that run inside a Bento's image build.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="restore PACK into WORKSPACE without models")
    prep.add_argument("pack", type=Path)
    prep.add_argument("workspace", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from ..config import allow_local_sources

        ws = prepare_workspace(args.pack, args.workspace, allow_local_sources=allow_local_sources())
    except ComfyPackError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.exit_code
    print(
        f"restored {args.pack} into {ws.root} (ComfyUI at {ws.comfyui_dir}); models are fetched "
        "when the service starts"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
