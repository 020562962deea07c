"""Ground truth for the UI → API conversion: ComfyUI's own frontend.

Each UI-format workflow is loaded into the real frontend in headless Chromium — the
``comfyui-frontend-package`` the session's ComfyUI pins, and on the current ComfyUI line also the
newest package (``make setup`` unpacks it) — and its API export, ``app.graphToPrompt()`` (what the
*Queue* button sends), is compared node by node (ids, class types, inputs) with
:func:`comfypack.workflow.uiformat.convert` mirroring that frontend's version. Workflows: this project's
examples (``workflow.json``) and a bounded sample of the templates of the installed
``comfyui-workflow-templates*`` packages whose node types all exist in this ComfyUI (every feature
first: subgraphs, primitives, reroutes, bypassed and muted nodes, dynamic combos).
``scripts/ui_conversion_report.py`` runs every template.

Artifacts (screenshots, both exports where they differ, summary.json) go to
``test-artifacts/ui_conversion/<frontend>/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _conversion import FEATURES, compare, features, load_templates, run
from _frontend import Frontend, comfyui_with_frontend, frontend_variants, require_chromium
from conftest import EXAMPLES, ROOT

from comfypack.comfyui.source import comfyui_version
from comfypack.workflow.uiformat import convert

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ARTIFACTS = ROOT / "test-artifacts" / "ui_conversion"
TEMPLATE_COUNT = 24  # at least 15; the whole file stays well under two minutes per frontend

RESULTS: dict[str, dict[str, str]] = {}  # frontend → name → Outcome.status ("match", "known", …)
OK = ("match", "known")  # "known": differs only in values of a kind _conversion.KNOWN names
NOTES: dict[str, Any] = {"skipped_missing_nodes": [], "title_notes": 0}


@pytest.fixture(scope="module")
def object_info(comfyui: Any) -> dict[str, Any]:
    info: dict[str, Any] = httpx.get(f"{comfyui.url}/object_info", timeout=60).json()
    return info


@pytest.fixture(scope="module", params=frontend_variants())
def frontend(request: pytest.FixtureRequest, comfyui: Any) -> Iterator[Frontend]:
    require_chromium()
    with comfyui_with_frontend(request.param, comfyui) as url, Frontend(url) as fe:
        yield fe


def _workflows(object_info: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    chosen = [
        (f"example:{p.parent.name}", json.loads(p.read_text()))
        for p in sorted(EXAMPLES.glob("*/workflow.json"))
    ]
    usable, excluded = load_templates(object_info)
    NOTES["skipped_missing_nodes"] = excluded
    feats = {name: features(ui, object_info) for name, ui in usable}
    # every feature first (up to 3 templates that exercise it), then the rest in name order
    picked: dict[str, dict[str, Any]] = {}
    for feature in FEATURES:
        for name, ui in usable:
            if feature in feats[name] and sum(feature in feats[p] for p in picked) < 3:
                picked.setdefault(name, ui)
    for name, ui in usable:
        if len(picked) >= TEMPLATE_COUNT:
            break
        picked.setdefault(name, ui)
    return chosen + sorted(picked.items())[:TEMPLATE_COUNT]


def summary_lines(version: str, results: dict[str, str]) -> list[str]:
    matched = sum(v in OK for v in results.values())
    ex = [k for k in results if k.startswith("example:")]
    ex_ok = sum(results[k] in OK for k in ex)
    lines = [
        f"UI -> API conversion vs frontend {version} (graphToPrompt): {matched} of {len(results)} "
        f"workflows match node by node ({ex_ok} of {len(ex)} examples, {matched - ex_ok} of "
        f"{len(results) - len(ex)} sampled templates)"
    ]
    skipped = NOTES["skipped_missing_nodes"]
    if skipped:
        lines.append(
            f"  {len(skipped)} template(s) excluded, node types missing from object_info: "
            + ", ".join(skipped)
        )
    if NOTES["title_notes"]:
        lines.append(
            f"  {NOTES['title_notes']} untitled node(s) carry the backend's display name where the "
            "frontend shows its bundled English one ('Preview as Text' vs 'Preview Any'); "
            "ComfyUI ignores _meta.title"
        )
    lines += [f"  {v}: {k}" for k, v in results.items() if v != "match"]  # "known" ones named too
    lines.append(f"  artifacts: {ARTIFACTS.relative_to(ROOT)}/{version}/")
    return lines


def test_ui_conversion_matches_the_frontend(
    frontend: Frontend, object_info: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    workflows = _workflows(object_info)
    assert len([n for n, _ in workflows if n.startswith("template:")]) >= 15
    version = frontend.version()
    out = ARTIFACTS / version
    out.mkdir(parents=True, exist_ok=True)
    NOTES["title_notes"] = 0
    results = RESULTS.setdefault(version, {})
    shots = 0
    outcomes = run(frontend, object_info, workflows, version=version)
    for o in outcomes:
        slug = o.name.replace(":", "_")
        if (
            o.name.startswith("example:") or not o.matched or shots < 3
        ):  # screenshots cost ~2 s each
            shots += not o.name.startswith("example:")
            frontend.screenshot(out / f"{slug}.png")
        NOTES["title_notes"] += o.display_name_titles
        results[o.name] = o.status
        if not o.matched:
            (out / f"{slug}.frontend.json").write_text(json.dumps(o.frontend, indent=2))
            (out / f"{slug}.comfypack.json").write_text(json.dumps(o.comfypack, indent=2))
    matched = sum(v in OK for v in results.values())
    report = {o.name: o.summary() for o in outcomes}
    summary = {
        "frontend": version,
        "matched": matched,
        "total": len(results),
        "excluded_missing_node_types": NOTES["skipped_missing_nodes"],
        "workflows": report,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with capsys.disabled():
        print("\n" + "\n".join(summary_lines(version, results)))
    bad = {k: v for k, v in report.items() if v.get("error") or v.get("differences")}
    assert not bad, (
        f"{matched} of {len(results)} match; differences:\n" + json.dumps(bad, indent=2)[:6000]
    )


def test_hand_written_unit_graphs_match_the_frontend(
    frontend: Frontend, object_info: dict[str, Any]
) -> None:
    """The small graphs of tests/unit/workflow/test_uiformat.py (one per feature), through the frontend;
    those written for this ComfyUI's node set (0.3.75's, or the current line's)."""
    from unit.workflow.test_uiformat import SCENARIOS, SCENARIOS_CURRENT

    version = frontend.version()
    scenarios = SCENARIOS_CURRENT if _current_line() else SCENARIOS
    bad: dict[str, list[str]] = {}
    for name, build in scenarios.items():
        ui = build().ui()
        theirs = frontend.graph_to_prompt(ui)
        diffs = compare(ui, convert(ui, object_info, seed=0, frontend=version), theirs).differences
        if diffs:
            bad[name] = diffs
            (ARTIFACTS / f"unit_{version}_{name}.frontend.json").write_text(
                json.dumps(theirs, indent=2)
            )
    assert not bad, json.dumps(bad, indent=2)


def _current_line() -> bool:
    from _frontend import NEWEST_FRONTEND

    return NEWEST_FRONTEND in frontend_variants()


def test_unit_object_info_slice_is_current(comfyui: Any, object_info: dict[str, Any]) -> None:
    """The unit tests' object_info slice for this ComfyUI (tests/unit/data/object_info.json from
    0.3.75, object_info_0.28.2.json from the current line) is a slice of its /object_info."""
    name = "object_info_0.28.2.json" if _current_line() else "object_info.json"
    sliced = json.loads((ROOT / "tests" / "unit" / "data" / name).read_text())
    stale = [n for n, definition in sliced.items() if object_info.get(n) != definition]
    assert not stale, (
        f"regenerate tests/unit/data/{name} (ComfyUI {comfyui_version(comfyui.comfyui_dir)}); changed: {stale}"
    )


def test_only_the_exact_shape_of_a_known_difference_is_classified_known() -> None:
    """Load3D's ``image``: the frontend's value is its upload of the rendered scene (screenshots in
    ComfyUI's temp folder, the camera); anything else there is still a difference."""
    ui: dict[str, Any] = {"nodes": [], "links": []}
    shot = {
        "image": "threed/scene_1796030938189.png [temp]",
        "mask": "threed/scene_mask_1796030938196.png [temp]",
        "normal": "threed/scene_normal_1796030938187.png [temp]",
        "camera_info": {"zoom": 1},
        "recording": "",
        "model_3d_info": [],
    }

    def node(cls: str, **inputs: Any) -> dict[str, Any]:
        return {
            "1": {
                "class_type": cls,
                "inputs": {"model_file": "a.glb", **inputs},
                "_meta": {"title": "t"},
            }
        }

    c = compare(ui, node("Load3D", image=""), node("Load3D", image=shot))
    assert c.differences == [] and len(c.known) == 1 and "renders the 3D scene" in c.known[0]
    for theirs in (
        {**shot, "image": "cat.png"},
        {"image": shot["image"]},
        "threed/scene_1.png [temp]",
    ):
        c = compare(ui, node("Load3D", image=""), node("Load3D", image=theirs))
        assert len(c.differences) == 1 and c.known == [], theirs
    c = compare(
        ui, node("Preview3D", image=""), node("Preview3D", image=shot)
    )  # another node: not known
    assert len(c.differences) == 1 and c.known == []
    c = compare(ui, node("Load3D", image="", width=512), node("Load3D", image=shot, width=1024))
    assert c.differences == ["node 1 (Load3D).width: 512 != 1024"] and len(c.known) == 1
