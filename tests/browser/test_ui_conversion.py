"""Ground truth for the UI → API conversion: ComfyUI's own frontend.

Each UI-format workflow is loaded into the real frontend (the ``comfyui-frontend-package`` the
session's ComfyUI serves) in headless Chromium, and its API export — ``app.graphToPrompt()``,
what the *Queue* button sends — is compared node by node (ids, class types, inputs) with
:func:`comfypack.uiformat.convert`. Workflows: this project's examples (``workflow.json``) and real
templates from the installed ``comfyui-workflow-templates*`` packages (their JSON only) whose node
types all exist in this ComfyUI.

Artifacts (screenshots, both exports where they differ, summary.json) go to
``test-artifacts/ui_conversion/``.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _frontend import Frontend, require_chromium
from conftest import EXAMPLES, ROOT

from comfypack.uiformat import convert, is_ui_format, missing_node_types

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ARTIFACTS = ROOT / "test-artifacts" / "ui_conversion"
TEMPLATE_COUNT = 24  # at least 15; the whole file stays well under two minutes
FEATURES = ("subgraph", "primitive", "reroute", "bypass", "mute")

RESULTS: dict[str, str] = {}  # name → "match" | "differs" | "error"
NOTES: dict[str, Any] = {"skipped_missing_nodes": [], "title_notes": 0}


def _templates() -> list[Path]:
    """UI-format template JSON files of the installed comfyui-workflow-templates* packages."""
    found: dict[str, Path] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith("comfyui-workflow-templates"):
            continue
        for f in dist.files or []:
            if f.suffix == ".json" and "templates" in f.parts:
                found.setdefault(f.name, Path(str(dist.locate_file(f))))
    return [found[k] for k in sorted(found)]


def _features(ui: dict[str, Any]) -> set[str]:
    subgraphs = (ui.get("definitions") or {}).get("subgraphs") or []
    nodes = list(ui.get("nodes") or []) + [n for sg in subgraphs for n in sg.get("nodes") or []]
    types = {n.get("type") for n in nodes}
    out = {"subgraph"} if subgraphs else set()
    out |= {"primitive"} if "PrimitiveNode" in types else set()
    out |= {"reroute"} if "Reroute" in types else set()
    out |= {"bypass"} if any(n.get("mode") == 4 for n in nodes) else set()
    out |= {"mute"} if any(n.get("mode") == 2 for n in nodes) else set()
    return out


@pytest.fixture(scope="module")
def object_info(comfyui: Any) -> dict[str, Any]:
    info: dict[str, Any] = httpx.get(f"{comfyui.url}/object_info", timeout=60).json()
    return info


@pytest.fixture(scope="module")
def frontend(comfyui: Any) -> Iterator[Frontend]:
    require_chromium()
    with Frontend(comfyui.url) as fe:
        yield fe


def _workflows(object_info: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    chosen = [(f"example:{p.parent.name}", json.loads(p.read_text()))
              for p in sorted(EXAMPLES.glob("*/workflow.json"))]
    usable: list[tuple[str, dict[str, Any], set[str]]] = []
    for path in _templates():
        try:
            ui = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not is_ui_format(ui):
            continue
        if missing_node_types(ui, object_info):
            NOTES["skipped_missing_nodes"].append(path.stem)
            continue
        usable.append((f"template:{path.stem}", ui, _features(ui)))
    # every feature first (the templates that exercise it), then the rest in name order
    picked: dict[str, dict[str, Any]] = {}
    for feature in FEATURES:
        for name, ui, feats in usable:
            if feature in feats and sum(feature in f for f in (_features(u) for u in picked.values())) < 3:
                picked.setdefault(name, ui)
    for name, ui, _ in usable:
        if len(picked) >= TEMPLATE_COUNT:
            break
        picked.setdefault(name, ui)
    return chosen + sorted(picked.items())[:TEMPLATE_COUNT]


def _saved_title(ui: dict[str, Any], exec_id: str) -> str | None:
    """The title saved in the UI graph for the node ``exec_id`` ("12" or "12:3"), if any."""
    nodes = ui.get("nodes") or []
    subgraphs = {sg.get("id"): sg for sg in (ui.get("definitions") or {}).get("subgraphs") or []}
    node: dict[str, Any] | None = None
    for part in exec_id.split(":"):
        node = next((n for n in nodes if str(n.get("id")) == part), None)
        if node is None:
            return None
        nodes = (subgraphs.get(node.get("type")) or {}).get("nodes") or []
    return node.get("title") if node else None


def compare(ui: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[list[str], int]:
    """Differences (ids, class types, inputs; titles the graph saved), and how many untitled nodes
    got the backend's display name instead of the frontend's bundled one."""
    diffs: list[str] = []
    title_notes = 0
    for node_id in sorted(set(ours) | set(theirs)):
        if node_id not in ours or node_id not in theirs:
            side = "frontend" if node_id in theirs else "comfypack"
            diffs.append(f"node {node_id} only in the {side} export")
            continue
        a, b = ours[node_id], theirs[node_id]
        if a["class_type"] != b.get("class_type"):
            diffs.append(f"node {node_id}: class_type {a['class_type']} != {b.get('class_type')}")
        for key in sorted(set(a["inputs"]) | set(b["inputs"])):
            x, y = a["inputs"].get(key, "<missing>"), b["inputs"].get(key, "<missing>")
            if x != y:
                diffs.append(f"node {node_id} ({a['class_type']}).{key}: {x!r:.80} != {y!r:.80}")
        if a["_meta"]["title"] != b["_meta"]["title"]:
            if _saved_title(ui, node_id):
                diffs.append(f"node {node_id}: title {a['_meta']['title']!r} != {b['_meta']['title']!r}")
            else:
                title_notes += 1
    return diffs, title_notes


def summary_lines() -> list[str]:
    matched = sum(v == "match" for v in RESULTS.values())
    ex = [k for k in RESULTS if k.startswith("example:")]
    ex_ok = sum(RESULTS[k] == "match" for k in ex)
    lines = [f"UI -> API conversion vs ComfyUI's frontend (graphToPrompt): {matched} of {len(RESULTS)} "
             f"workflows match node by node ({ex_ok} of {len(ex)} examples, {matched - ex_ok} of "
             f"{len(RESULTS) - len(ex)} templates)"]
    skipped = NOTES["skipped_missing_nodes"]
    if skipped:
        lines.append(f"  {len(skipped)} template(s) skipped, node types missing from object_info: "
                     + ", ".join(skipped))
    if NOTES["title_notes"]:
        lines.append(f"  {NOTES['title_notes']} untitled node(s) carry the backend's display name where the "
                     "frontend shows its bundled English one ('Preview as Text' vs 'Preview Any'); "
                     "ComfyUI ignores _meta.title")
    lines += [f"  {v}: {k}" for k, v in RESULTS.items() if v != "match"]
    lines.append(f"  artifacts: {ARTIFACTS.relative_to(ROOT)}/")
    return lines


def test_ui_conversion_matches_the_frontend(frontend: Frontend, object_info: dict[str, Any],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    workflows = _workflows(object_info)
    assert len([n for n, _ in workflows if n.startswith("template:")]) >= 15
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    shots = 0
    for name, ui in workflows:
        slug = name.replace(":", "_")
        started = time.monotonic()
        try:
            theirs = frontend.graph_to_prompt(ui)
            ours = convert(ui, object_info, seed=0)
        except Exception as e:  # noqa: BLE001 - recorded, then failed below
            RESULTS[name] = "error"
            report[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        diffs, notes = compare(ui, ours, theirs)
        if name.startswith("example:") or diffs or shots < 3:  # screenshots cost ~2 s each
            shots += not name.startswith("example:")
            frontend.screenshot(ARTIFACTS / f"{slug}.png")
        NOTES["title_notes"] += notes
        RESULTS[name] = "differs" if diffs else "match"
        report[name] = {"nodes": len(theirs), "differences": diffs, "display_name_titles": notes,
                        "seconds": round(time.monotonic() - started, 2)}
        if diffs:
            (ARTIFACTS / f"{slug}.frontend.json").write_text(json.dumps(theirs, indent=2))
            (ARTIFACTS / f"{slug}.comfypack.json").write_text(json.dumps(ours, indent=2))
    matched = sum(v == "match" for v in RESULTS.values())
    summary = {"matched": matched, "total": len(RESULTS),
               "skipped_missing_node_types": NOTES["skipped_missing_nodes"], "workflows": report}
    (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=2))
    with capsys.disabled():
        print("\n" + "\n".join(summary_lines()))
    bad = {k: v for k, v in report.items() if v.get("error") or v.get("differences")}
    assert not bad, f"{matched} of {len(RESULTS)} match; differences:\n" + json.dumps(bad, indent=2)[:6000]


def test_hand_written_unit_graphs_match_the_frontend(frontend: Frontend, object_info: dict[str, Any]) -> None:
    """The small graphs of tests/unit/test_uiformat.py (one per feature), through the frontend."""
    from unit.test_uiformat import SCENARIOS

    bad: dict[str, list[str]] = {}
    for name, build in SCENARIOS.items():
        ui = build().ui()
        theirs = frontend.graph_to_prompt(ui)
        diffs, _ = compare(ui, convert(ui, object_info, seed=0), theirs)
        if diffs:
            bad[name] = diffs
            (ARTIFACTS / f"unit_{name}.frontend.json").write_text(json.dumps(theirs, indent=2))
    assert not bad, json.dumps(bad, indent=2)


def test_unit_object_info_slice_is_current(object_info: dict[str, Any]) -> None:
    """tests/unit/data/object_info.json is a slice of this ComfyUI's /object_info."""
    sliced = json.loads((ROOT / "tests" / "unit" / "data" / "object_info.json").read_text())
    stale = [name for name, definition in sliced.items() if object_info.get(name) != definition]
    assert not stale, f"regenerate tests/unit/data/object_info.json; changed: {stale}"
