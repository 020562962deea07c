"""Comparing :func:`comfypack.workflow.uiformat.convert` with the real frontend's ``app.graphToPrompt()``.

Shared by ``test_ui_conversion.py`` (a bounded sample) and ``scripts/ui_conversion_report.py``
(every template): where the templates come from, how two API exports are compared node by node,
and one run over a list of workflows.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfypack.workflow.uiformat import convert, is_ui_format, missing_node_types

FEATURES = (
    "subgraph",
    "primitive",
    "reroute",
    "bypass",
    "mute",
    "dynamic_combo",
    "load3d",
    "curve",
)


def template_files() -> list[Path]:
    """UI-format template JSON files of this interpreter's comfyui-workflow-templates* packages
    (what the frontend's template browser offers; ComfyUI serves them from there)."""
    found: dict[str, Path] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith("comfyui-workflow-templates"):
            continue
        for f in dist.files or []:
            if f.suffix == ".json" and "templates" in f.parts:
                found.setdefault(f.name, Path(str(dist.locate_file(f))))
    return [found[k] for k in sorted(found)]


def template_packages() -> dict[str, str]:
    """name → version of the installed comfyui-workflow-templates* packages."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("comfyui-workflow-templates"):
            out[name] = dist.version
    return dict(sorted(out.items()))


def all_nodes(ui: dict[str, Any]) -> list[dict[str, Any]]:
    subgraphs = (ui.get("definitions") or {}).get("subgraphs") or []
    return list(ui.get("nodes") or []) + [n for sg in subgraphs for n in sg.get("nodes") or []]


def features(ui: dict[str, Any], object_info: dict[str, Any] | None = None) -> set[str]:
    nodes = all_nodes(ui)
    types = {n.get("type") for n in nodes}
    out = {"subgraph"} if (ui.get("definitions") or {}).get("subgraphs") else set()
    out |= {"primitive"} if "PrimitiveNode" in types else set()
    out |= {"reroute"} if "Reroute" in types else set()
    out |= {"bypass"} if any(n.get("mode") == 4 for n in nodes) else set()
    out |= {"mute"} if any(n.get("mode") == 2 for n in nodes) else set()
    out |= {"load3d"} if "Load3D" in types else set()  # the frontend's scene screenshot (KNOWN)
    if object_info is not None:
        if any(_has_input_type(object_info.get(str(t)), "COMFY_DYNAMICCOMBO_V3") for t in types):
            out.add("dynamic_combo")
        if any(_has_input_type(object_info.get(str(t)), "CURVE") for t in types):
            out.add("curve")  # 1.58.1's own load throws DataCloneError on these (see _frontend)
    return out


def _has_input_type(definition: Any, kind: str) -> bool:
    if not isinstance(definition, dict):
        return False
    section = definition.get("input") or {}
    return any(
        isinstance(raw, list) and raw and raw[0] == kind
        for part in ("required", "optional")
        for raw in (section.get(part) or {}).values()
    )


def saved_title(ui: dict[str, Any], exec_id: str) -> str | None:
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


_RAND = re.compile(r"([?&]rand=)[0-9.e-]+")


def _unrandom(v: Any) -> Any:
    """The frontend's media URLs end in ``&rand=<Math.random()>``: equal whatever the number."""
    return _RAND.sub(r"\1…", v) if isinstance(v, str) else v


#: Values the frontend makes at export that comfypack cannot reproduce: (class_type, input) →
#: (the cause, whether the frontend's value is of that kind). Classified as known differences,
#: each checked for its exact shape, so any other value of the input still counts as a difference.
_SCREENSHOT = re.compile(r"^threed/scene(_mask|_normal)?_\d+\.png \[temp\]$")


def _load3d_screenshot(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and {"image", "mask", "camera_info"} <= set(value)
        and all(
            isinstance(value.get(k), str) and _SCREENSHOT.match(value[k]) for k in ("image", "mask")
        )
    )


KNOWN: dict[tuple[str, str], tuple[str, Callable[[Any], bool]]] = {
    ("Load3D", "image"): (
        "the frontend renders the 3D scene and uploads screenshots (image, mask, normal "
        "pass) to ComfyUI's temp folder at export; a file conversion has no renderer",
        _load3d_screenshot,
    ),
}


@dataclass
class Comparison:
    differences: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # differences of a kind in KNOWN
    display_name_titles: int = 0  # untitled nodes: the backend's display name, not the bundled one


def compare(ui: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> Comparison:
    """Differences (ids, class types, inputs; titles the graph saved), those that are known and
    cannot be reproduced (:data:`KNOWN`), and how many untitled nodes got the backend's display
    name instead of the frontend's bundled one."""
    diffs: list[str] = []
    known: list[str] = []
    title_notes = 0
    for node_id in sorted(set(ours) | set(theirs)):
        if node_id not in ours or node_id not in theirs:
            side = "frontend" if node_id in theirs else "comfypack"
            cls = (theirs.get(node_id) or ours.get(node_id) or {}).get("class_type")
            diffs.append(f"node {node_id} ({cls}) only in the {side} export")
            continue
        a, b = ours[node_id], theirs[node_id]
        if a["class_type"] != b.get("class_type"):
            diffs.append(f"node {node_id}: class_type {a['class_type']} != {b.get('class_type')}")
        for key in sorted(set(a["inputs"]) | set(b["inputs"])):
            x, y = (_unrandom(side["inputs"].get(key, "<missing>")) for side in (a, b))
            if x == y:
                continue
            line = f"node {node_id} ({a['class_type']}).{key}: {x!r:.80} != {y!r:.80}"
            kind = KNOWN.get((a["class_type"], key))
            if kind is not None and kind[1](y):
                known.append(f"{line} (known: {kind[0]})")
            else:
                diffs.append(line)
        if a["_meta"]["title"] != (b.get("_meta") or {}).get("title"):
            if saved_title(ui, node_id):
                diffs.append(
                    f"node {node_id}: title {a['_meta']['title']!r} != {b['_meta']['title']!r}"
                )
            else:
                title_notes += 1
    return Comparison(diffs, known, title_notes)


def load_templates(
    object_info: dict[str, Any],
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(name, UI workflow) of every template whose node types all exist in ``object_info``, and
    the names of those excluded because some do not."""
    usable: list[tuple[str, dict[str, Any]]] = []
    excluded: list[str] = []
    for path in template_files():
        try:
            ui = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not is_ui_format(ui):
            continue
        if missing_node_types(ui, object_info):
            excluded.append(path.stem)
            continue
        usable.append((f"template:{path.stem}", ui))
    return usable, excluded


@dataclass
class Outcome:
    name: str
    nodes: int = 0
    differences: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    error: str | None = None
    frontend_load_error: str | None = None  # the frontend's own, after the graph loaded (a note)
    display_name_titles: int = 0
    seconds: float = 0.0
    frontend: dict[str, Any] | None = None
    comfypack: dict[str, Any] | None = None

    @property
    def matched(self) -> bool:
        """Node by node the same, or different only in values of a known kind (:data:`KNOWN`)."""
        return self.error is None and not self.differences

    @property
    def status(self) -> str:
        """ "match", "known" (only known differences), "differs" or "error"."""
        if self.error:
            return "error"
        return "differs" if self.differences else "known" if self.known else "match"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "nodes": self.nodes,
            "differences": self.differences,
            "known_differences": self.known,
            "display_name_titles": self.display_name_titles,
            "seconds": self.seconds,
        }
        if self.error:
            out["error"] = self.error
        if self.frontend_load_error:
            out["frontend_load_error"] = self.frontend_load_error
        return out


def run(
    frontend: Any,
    object_info: dict[str, Any],
    workflows: Iterable[tuple[str, dict[str, Any]]],
    *,
    version: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Each workflow through the frontend (``graph_to_prompt``) and :func:`convert` (mirroring
    frontend ``version``), compared."""
    outcomes = []
    for name, ui in workflows:
        started = time.monotonic()
        o = Outcome(name)
        try:
            # the frontend may change the graph it is given: each side gets its own copy
            o.frontend = frontend.graph_to_prompt(json.loads(json.dumps(ui)))
            o.frontend_load_error = getattr(frontend, "load_error", None)
            o.comfypack = convert(json.loads(json.dumps(ui)), object_info, seed=0, frontend=version)
        except Exception as e:  # noqa: BLE001 - reported with the workflow's name
            o.error = f"{type(e).__name__}: {str(e)[:500]}"
        else:
            o.nodes = len(o.frontend)
            c = compare(ui, o.comfypack, o.frontend)
            o.differences, o.known, o.display_name_titles = (
                c.differences,
                c.known,
                c.display_name_titles,
            )
        o.seconds = round(time.monotonic() - started, 2)
        outcomes.append(o)
        if progress is not None:
            progress(o)
    return outcomes
