#!/usr/bin/env python
"""Check comfypack's UI → API conversion against the real frontend on EVERY workflow template.

Starts the ComfyUI of this interpreter (``default_comfyui_dir()``, or ``--comfyui``) with its own
frontend, or with ``--front-end-root DIR`` (an unpacked ``comfyui-frontend-package``'s static
folder, e.g. ``.cache/frontends/1.58.1``), opens it in headless Chromium and loads each template
of the installed ``comfyui-workflow-templates*`` packages: the frontend's ``app.graphToPrompt()``
is compared node by node with :func:`comfypack.workflow.uiformat.convert`. Templates that use node types
this ComfyUI lacks are excluded (and counted). Prints ``matched / compared / excluded``, how many
differ only in values of a known kind that a file conversion cannot reproduce (each named with its
cause: ``KNOWN`` in tests/browser/_conversion.py), each other difference, and the frontend's own
load errors; ``--json FILE`` writes the whole report.

    .venv/bin/python scripts/ui_conversion_report.py
    .cache/current/venv/bin/python scripts/ui_conversion_report.py
    .cache/current/venv/bin/python scripts/ui_conversion_report.py --front-end-root .cache/frontends/1.58.1

Exit status: 0 when every compared template matches (known differences aside), 1 otherwise, 2
when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from _conversion import KNOWN, load_templates, run, template_packages  # noqa: E402
from _frontend import Frontend, chromium_missing  # noqa: E402

from comfypack.comfyui.process import ComfyUIProcess  # noqa: E402
from comfypack.comfyui.source import comfyui_version  # noqa: E402
from comfypack.config import default_comfyui_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--comfyui", type=Path, default=None, help="ComfyUI tree (default: this venv's)"
    )
    ap.add_argument(
        "--front-end-root", type=Path, default=None, help="an unpacked frontend's static folder"
    )
    ap.add_argument(
        "--only", action="append", default=[], help="only templates whose name contains this"
    )
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write both exports of each differing template into this folder",
    )
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="one line per template as it is done"
    )
    args = ap.parse_args(argv)

    why = chromium_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    comfyui_dir = args.comfyui or default_comfyui_dir()
    extra = []
    if args.front_end_root is not None:
        if not (args.front_end_root / "index.html").is_file():
            print(
                f"cannot run: no index.html in {args.front_end_root} (run `make setup`)",
                file=sys.stderr,
            )
            return 2
        extra = ["--front-end-root", str(args.front_end_root.resolve())]

    with ComfyUIProcess(comfyui_dir, startup_timeout=240, extra_args=extra) as proc:
        with urllib.request.urlopen(f"{proc.url}/object_info", timeout=120) as r:
            object_info = json.loads(r.read())
        workflows, excluded = load_templates(object_info)
        if args.only:
            workflows = [(n, ui) for n, ui in workflows if any(s in n for s in args.only)]
        with Frontend(proc.url, timeout_ms=180_000) as fe:
            fe.timeout_ms = 60_000  # one workflow
            fe_version = fe.version()
            outcomes = run(
                fe,
                object_info,
                workflows,
                version=fe_version,
                progress=(
                    (lambda o: print(f"{o.status} {o.name} {o.seconds} s", file=sys.stderr))
                    if args.verbose
                    else None
                ),
            )

    matched = [o for o in outcomes if o.matched]
    known = [o for o in outcomes if o.status == "known"]
    label = f"ComfyUI {comfyui_version(comfyui_dir)} + frontend {fe_version}"
    packages = ", ".join(f"{k} {v}" for k, v in template_packages().items())
    print(
        f"{label}: {len(matched)} / {len(outcomes)} templates match "
        f"({len(excluded)} excluded: node types missing)"
        + (f"; {len(known)} of them only by known differences" if known else "")
    )
    print(f"  templates from: {packages}")
    for (cls, name), (cause, _) in KNOWN.items():
        hits = [o.name for o in known if any(f"({cls}).{name}:" in k for k in o.known)]
        if hits:
            print(f"  KNOWN {cls}.{name} ({len(hits)}): {cause}: {', '.join(hits)}")
    for o in outcomes:
        if o.frontend_load_error:
            print(
                f"  note: {o.name}: the frontend's own load threw {o.frontend_load_error[:160]} "
                "after configuring the graph; its export is compared"
            )
    for o in outcomes:
        if o.matched:
            continue
        print(f"  DIFFERS {o.name}" + (f": {o.error}" if o.error else ""))
        for d in o.differences[:12]:
            print(f"      {d}")
        if len(o.differences) > 12:
            print(f"      … {len(o.differences) - 12} more")
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            slug = o.name.replace(":", "_")
            (args.dump / f"{slug}.frontend.json").write_text(json.dumps(o.frontend, indent=2))
            (args.dump / f"{slug}.comfypack.json").write_text(json.dumps(o.comfypack, indent=2))
    titles = sum(o.display_name_titles for o in outcomes)
    if titles:
        print(
            f"  note: {titles} untitled node(s) carry the backend's display name where the frontend "
            "shows its bundled English one; ComfyUI ignores _meta.title"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "comfyui": comfyui_version(comfyui_dir),
                    "frontend": fe_version,
                    "template_packages": template_packages(),
                    "matched": len(matched),
                    "compared": len(outcomes),
                    "known_only": len(known),
                    "known_kinds": {f"{c}.{n}": cause for (c, n), (cause, _) in KNOWN.items()},
                    "excluded": excluded,
                    "workflows": {o.name: o.summary() for o in outcomes},
                },
                indent=2,
            )
        )
    return 0 if len(matched) == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
