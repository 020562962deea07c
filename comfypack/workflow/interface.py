"""Read an API-format ComfyUI workflow and extract its typed :class:`Interface`.

The API format is what ComfyUI's ``POST /prompt`` takes: ``{node_id: {"class_type", "inputs",
"_meta"}}``. comfypack's typed nodes (``ComfyPackInput*`` / ``ComfyPackOutput*``) declare the API:
each input node becomes an :class:`InputSpec`, each output node an :class:`OutputSpec`.
"""

from __future__ import annotations

import copy
import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FieldError, WorkflowError

__all__ = [
    "INPUT_NODES",
    "OUTPUT_NODES",
    "FILE_KINDS",
    "InputSpec",
    "OutputSpec",
    "Interface",
    "load_workflow",
    "parse_interface",
    "workflow_name",
    "RESERVED_NAMES",
]

#: class_type → (kind, the widget that carries the value).
INPUT_NODES: dict[str, tuple[str, str]] = {
    "ComfyPackInputString": ("string", "default"),
    "ComfyPackInputInt": ("int", "default"),
    "ComfyPackInputFloat": ("float", "default"),
    "ComfyPackInputBoolean": ("boolean", "default"),
    "ComfyPackInputChoice": ("choice", "default"),
    "ComfyPackInputSeed": ("seed", "default"),
    "ComfyPackInputImage": ("image", "image"),
    "ComfyPackInputFile": ("file", "file"),
    "ComfyPackInputAudio": ("audio", "audio"),
    "ComfyPackInputVideo": ("video", "video"),
}

#: class_type → kind of value it returns.
OUTPUT_NODES: dict[str, str] = {
    "ComfyPackOutputImage": "image",
    "ComfyPackOutputText": "text",
    "ComfyPackOutputNumber": "number",
    "ComfyPackOutputJSON": "json",
    "ComfyPackOutputFile": "file",
    "ComfyPackOutputAudio": "audio",
    "ComfyPackOutputVideo": "video",
}

#: Core nodes that serve as outputs when a workflow has no comfypack output node.
FALLBACK_OUTPUT_NODES: dict[str, str] = {"SaveImage": "image", "PreviewImage": "image"}

#: Input/output kinds whose values are files.
FILE_KINDS = frozenset({"image", "file", "audio", "video"})

#: Names comfypack uses itself in responses.
RESERVED_NAMES = frozenset({"seeds"})

SEED_MAX = 0xFFFFFFFFFFFFFFFF
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class InputSpec:
    """One API input, declared by a ``ComfyPackInput*`` node."""

    name: str
    kind: str
    node_id: str
    widget: str
    description: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    max_length: int | None = None
    multiline: bool = False
    options: tuple[str, ...] = ()

    @property
    def is_file(self) -> bool:
        return self.kind in FILE_KINDS


@dataclass(frozen=True)
class OutputSpec:
    """One API output, declared by a ``ComfyPackOutput*`` node (or a fallback SaveImage)."""

    name: str
    kind: str
    node_id: str
    description: str = ""
    format: str | None = None

    @property
    def is_file(self) -> bool:
        return self.kind in FILE_KINDS


@dataclass(frozen=True)
class Interface:
    """The typed API of a workflow: ordered inputs and outputs."""

    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    fallback_outputs: bool = field(default=False)

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def seed_inputs(self) -> tuple[InputSpec, ...]:
        return tuple(s for s in self.inputs if s.kind == "seed")


# ----------------------------------------------------------------------------------------------
# loading


def workflow_name(path: str | Path) -> str:
    """The one name a workflow file goes by (packs, clients, services, Bentos start from it): the
    folder's name for ``workflow_api.json`` / ``workflow.json`` (``flows/text_tools/workflow_api.json``
    → ``text_tools``), else the file name without ``.json`` / ``.cpack.zip`` / ``.zip``;
    ``workflow`` when that leaves nothing."""
    path = Path(path)
    if path.name in ("workflow_api.json", "workflow.json") and path.parent.name:
        return path.parent.name
    name = path.name
    for suffix in (".cpack.zip", ".zip", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name or "workflow"


def load_workflow(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Load an API-format workflow from a path or a mapping and check its shape."""
    if isinstance(source, Mapping):
        data: Any = copy.deepcopy(dict(source))
        where = "workflow"
    else:
        path = Path(source)
        where = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise WorkflowError(f"{where}: no such file") from e
        except (OSError, UnicodeDecodeError) as e:
            raise WorkflowError(f"{where}: cannot read: {e}") from e
        except json.JSONDecodeError as e:
            raise WorkflowError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise WorkflowError(
            f"{where}: a workflow is a JSON object of nodes, got {type(data).__name__}"
        )
    if "nodes" in data and "links" in data:
        raise WorkflowError(
            f"{where}: this is a UI-format workflow (what ComfyUI's Save writes). Export it with "
            "'Export (API)' in ComfyUI, or use the API-format JSON."
        )
    prompt = data.get("prompt")
    if isinstance(prompt, dict) and ("client_id" in data or "class_type" not in prompt):
        data = prompt  # a captured /prompt request body (client_id is optional there)
    for node_id, node in data.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise WorkflowError(
                f"{where}: node {node_id!r} has no class_type; is this an API-format workflow?"
            )
        node.setdefault("inputs", {})
        if not isinstance(node["inputs"], dict):
            raise WorkflowError(f"{where}: node {node_id!r}: 'inputs' must be an object")
    return data


# ----------------------------------------------------------------------------------------------
# extraction


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _title(node_id: str, node: Mapping[str, Any]) -> str:
    title = (node.get("_meta") or {}).get("title") or node["class_type"]
    return f"node {node_id} ({title})"


class _Reader:
    """Reads literal widget values from one node, collecting problems instead of stopping."""

    def __init__(self, node_id: str, node: Mapping[str, Any], problems: list[FieldError]):
        self.node_id = node_id
        self.node = node
        self.inputs: Mapping[str, Any] = node.get("inputs", {})
        self.problems = problems
        self.where = _title(node_id, node)
        self.field: str | None = None

    def fail(self, message: str) -> None:
        self.problems.append(FieldError(self.field, f"{self.where}: {message}"))

    def get(
        self, key: str, types: tuple[type, ...], default: Any = None, *, required: bool = False
    ) -> Any:
        if key not in self.inputs:
            if required:
                self.fail(f"missing widget {key!r}")
            return default
        value = self.inputs[key]
        if _is_link(value):
            self.fail(
                f"widget {key!r} is connected to another node; comfypack nodes need a literal "
                "value here (type it into the widget)"
            )
            return default
        if bool not in types and isinstance(value, bool):
            self.fail(f"widget {key!r} must be {types[0].__name__}, got {value!r}")
            return default
        if not isinstance(value, types):
            self.fail(f"widget {key!r} must be {types[0].__name__}, got {value!r}")
            return default
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(f"widget {key!r} must be a finite number, got {value!r}")
            return default
        return value


def _check_bounds(r: _Reader, name: str, default: Any, lo: Any, hi: Any) -> None:
    if lo is not None and hi is not None and lo > hi:
        r.fail(f"min ({lo}) is greater than max ({hi})")
    elif default is not None:
        if lo is not None and default < lo:
            r.fail(f"default {default} is below min {lo}")
        if hi is not None and default > hi:
            r.fail(f"default {default} is above max {hi}")


def _parse_input(
    node_id: str, node: Mapping[str, Any], problems: list[FieldError]
) -> InputSpec | None:
    kind, widget = INPUT_NODES[node["class_type"]]
    r = _Reader(node_id, node, problems)
    name = r.get("name", (str,), required=True)
    if not isinstance(name, str):
        return None
    name = name.strip()
    r.field = name or None
    description = r.get("description", (str,), "") or ""
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "node_id": node_id,
        "widget": widget,
        "description": description.strip(),
    }
    n_before = len(problems)

    if kind == "string":
        default = r.get("default", (str,), "")
        max_length = r.get("max_length", (int,), 0)
        if isinstance(max_length, int) and max_length < 0:
            r.fail(f"max_length must be >= 0, got {max_length}")
        if (
            isinstance(max_length, int)
            and max_length > 0
            and isinstance(default, str)
            and len(default) > max_length
        ):
            r.fail(f"default is {len(default)} characters, longer than max_length {max_length}")
        spec = InputSpec(
            **common,
            default=default,
            max_length=max_length or None,
            multiline="\n" in (default or ""),
        )
    elif kind in ("int", "float"):
        types: tuple[type, ...] = (int,) if kind == "int" else (int, float)
        default = r.get("default", types, required=True)
        lo = r.get("min", types)
        hi = r.get("max", types)
        step = r.get("step", types)
        if step is not None and step <= 0 and kind == "int":
            r.fail(f"step must be positive, got {step}")
        if step is not None and step < 0:
            r.fail(f"step must not be negative, got {step}")
        _check_bounds(r, name, default, lo, hi)
        cast = int if kind == "int" else float
        spec = InputSpec(
            **common,
            default=None if default is None else cast(default),
            minimum=None if lo is None else cast(lo),
            maximum=None if hi is None else cast(hi),
            step=None if not step else cast(step),
        )
    elif kind == "boolean":
        default = r.get("default", (bool,), False)
        spec = InputSpec(**common, default=default)
    elif kind == "choice":
        raw = r.get("options", (str, list), "")
        if isinstance(raw, list):
            options = [str(o).strip() for o in raw]
        else:
            options = [line.strip() for line in (raw or "").splitlines()]
        options = [o for o in options if o]
        if not options:
            r.fail("Choice has no options; put one option per line in its 'options' widget")
        dupes = sorted({o for o in options if options.count(o) > 1})
        if dupes:
            r.fail(f"Choice lists {', '.join(map(repr, dupes))} more than once")
        default = r.get("default", (str,), "")
        default = (default or "").strip() or (options[0] if options else "")
        if options and default not in options:
            r.fail(f"default {default!r} is not one of the options {options}")
        spec = InputSpec(**common, default=default, options=tuple(dict.fromkeys(options)))
    elif kind == "seed":
        default = r.get("default", (int,), 0)
        spec = InputSpec(**common, default=None, minimum=0, maximum=SEED_MAX)
        if isinstance(default, int) and not 0 <= default <= SEED_MAX:
            r.fail(f"seed default {default} is outside 0..{SEED_MAX}")
    else:  # media: image / file / audio / video
        spec = InputSpec(**common, required=True)
    return spec if len(problems) == n_before else None


def _parse_output(
    node_id: str, node: Mapping[str, Any], problems: list[FieldError], kind: str, fallback: bool
) -> OutputSpec | None:
    r = _Reader(node_id, node, problems)
    if fallback:
        # node ids may be "12:3" (expanded subgraphs): keep the name an identifier
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{node['class_type'].lower()}_{node_id}")
        return OutputSpec(name=name, kind=kind, node_id=node_id, format="png")
    name = r.get("name", (str,), required=True)
    if not isinstance(name, str):
        return None
    name = name.strip()
    r.field = name or None
    fmt = r.get("format", (str,), None)
    return OutputSpec(
        name=name, kind=kind, node_id=node_id, format=fmt, description=(_title(node_id, node))
    )


def _node_order(node_id: str) -> tuple[int, Any]:
    # API ids are usually integers as strings ("3", "10"), sometimes "12:3" for subgraphs.
    try:
        return (0, int(node_id))
    except ValueError:
        return (1, node_id)


def parse_interface(workflow: Mapping[str, Any]) -> Interface:
    """Extract the :class:`Interface` from an API-format workflow.

    Raises :class:`WorkflowError` listing every problem (``details`` holds one entry each).
    """
    problems: list[FieldError] = []
    inputs: list[InputSpec] = []
    outputs: list[OutputSpec] = []
    ids = sorted(workflow, key=_node_order)
    for node_id in ids:
        node = workflow[node_id]
        ct = node.get("class_type")
        if ct in INPUT_NODES:
            spec = _parse_input(node_id, node, problems)
            if spec is not None:
                inputs.append(spec)
        elif ct in OUTPUT_NODES:
            out = _parse_output(node_id, node, problems, OUTPUT_NODES[ct], fallback=False)
            if out is not None:
                outputs.append(out)
    fallback = False
    if not outputs and not any(workflow[i].get("class_type") in OUTPUT_NODES for i in ids):
        for node_id in ids:
            ct = workflow[node_id].get("class_type")
            if ct in FALLBACK_OUTPUT_NODES:
                out = _parse_output(
                    node_id, workflow[node_id], problems, FALLBACK_OUTPUT_NODES[ct], True
                )
                if out is not None:
                    outputs.append(out)
                    fallback = True

    def check_names(specs: list[Any], what: str) -> None:
        seen: dict[str, str] = {}
        for spec in specs:
            where = _title(spec.node_id, workflow[spec.node_id])
            if not spec.name:
                problems.append(
                    FieldError(None, f"{where}: the {what} has no name; set its 'name' widget")
                )
                continue
            if not _NAME_RE.match(spec.name) or keyword.iskeyword(spec.name):
                problems.append(
                    FieldError(
                        spec.name,
                        (
                            f"{where}: {what} name {spec.name!r} is not valid; use letters, digits and "
                            "underscores, starting with a letter (a Python identifier, not a keyword)"
                        ),
                    )
                )
            elif spec.name in RESERVED_NAMES:
                problems.append(
                    FieldError(
                        spec.name, f"{where}: {what} name {spec.name!r} is reserved by comfypack"
                    )
                )
            if spec.name in seen:
                problems.append(
                    FieldError(
                        spec.name,
                        (
                            f"{where}: {what} name {spec.name!r} is already used by {seen[spec.name]}; "
                            f"each {what} needs a unique name"
                        ),
                    )
                )
            else:
                seen[spec.name] = where

    check_names(inputs, "input")
    check_names(outputs, "output")
    if problems:
        summary = "; ".join(p["message"] for p in problems)
        raise WorkflowError(f"the workflow's interface is invalid: {summary}", details=problems)
    return Interface(inputs=tuple(inputs), outputs=tuple(outputs), fallback_outputs=fallback)
