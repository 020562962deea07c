#!/usr/bin/env python
"""Write ``examples/workflows/<name>/workflow.json`` (UI format) for every example, made by ComfyUI's
own frontend: each ``workflow_api.json`` is loaded with ``app.loadApiJson`` in headless Chromium and
``app.graph.serialize()`` saved — what the user gets from *Save* after opening the API file.

    .venv/bin/python scripts/make_ui_examples.py [NAME ...]

Needs a provisioned ComfyUI (`make setup`), the dev extra (playwright) and /usr/bin/chromium.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from _frontend import Frontend, chromium_missing  # noqa: E402

from comfypack.comfyui.process import ComfyUIProcess  # noqa: E402
from comfypack.config import default_comfyui_dir  # noqa: E402


def main(names: list[str]) -> int:
    why = chromium_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    examples = sorted(
        p
        for p in (ROOT / "examples" / "workflows").iterdir()
        if (p / "workflow_api.json").is_file() and (not names or p.name in names)
    )
    with (
        ComfyUIProcess(default_comfyui_dir(), startup_timeout=180) as proc,
        Frontend(proc.url) as fe,
    ):
        for ex in examples:
            api = json.loads((ex / "workflow_api.json").read_text())
            ui = fe.api_to_ui(api, ex.name)
            (ex / "workflow.json").write_text(json.dumps(ui, indent=2) + "\n")
            print(
                f"wrote {ex / 'workflow.json'} ({len(ui['nodes'])} nodes, {len(ui['links'])} links)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
