"""Generate a typed Python client for one workflow's :class:`~comfypack.workflow.interface.Interface`.

:func:`generate_client` returns the source of ONE self-contained module (it needs ``httpx`` and
``pydantic``; Pillow only to pass PIL images or open image outputs) with:

- ``GenerateInput``: a pydantic model of the request (types, defaults, bounds, enums as
  ``Literal``, descriptions) — built from :func:`~comfypack.workflow.schema.input_schema`, so the client
  checks exactly what the service checks, before anything is sent;
- ``Client`` / ``AsyncClient``: ``generate(...)`` with one keyword argument per input (required
  first), file inputs as a path, bytes, an http(s) URL or a PIL image (uploaded as multipart),
  and the job API (``submit``, ``status``, ``progress``, ``result``, ``cancel``);
- ``GenerateResult``: one attribute per named output (files as ``OutputFile``: bytes, media type,
  ``save()``), ``seeds`` when the workflow has Seed inputs — also when the service answered
  with the raw file;
- ``ComfyPackAPIError(status, type, message, details)``: the service's error JSON.

The fixed text of the module is ``templates/client.py.tmpl``; this module fills its
``$placeholders`` (the option aliases, the model, the result classes, the tables and the
``generate``/``submit`` signatures). The output is deterministic (same interface → same bytes)
and written already formatted: no formatter runs at generation time. Every construct whose
layout a formatter could change is emitted "exploded" with a trailing comma, which
``ruff format`` / black keep as they are (checked at 88, 100 and 120 columns).

Names: an input or output whose name would clash with something the generated class body uses
(``json``, ``str``, ``batch`` …) keeps its name on the wire and in ``generate()``'s keyword
arguments, and gets a trailing underscore as an attribute (``json_``; names in pydantic's
``model_`` namespace get an ``f_`` prefix) — the model maps it back with a pydantic alias.
"""

from __future__ import annotations

import re
import textwrap
from string import Template
from typing import Any

from ..workflow.interface import FILE_KINDS, InputSpec, Interface, OutputSpec
from ..workflow.schema import input_schema

__all__ = ["generate_client"]

#: Names the generated class bodies use as types or helpers: an attribute must not shadow them.
_TYPE_NAMES = frozenset(
    {
        "Any",
        "Annotated",
        "Field",
        "FileInput",
        "GenerateInput",
        "GenerateResult",
        "Literal",
        "OutputFile",
        "Seeds",
        "bool",
        "bytearray",
        "bytes",
        "dataclasses",
        "dict",
        "float",
        "int",
        "list",
        "object",
        "str",
        "tuple",
    }
)
#: Methods of the generated ``GenerateResult``.
_RESULT_METHODS = frozenset({"batch"})
#: Module-level names of the generated module (an option alias must not take one).
_MODULE_NAMES = frozenset(
    {
        "AsyncClient",
        "Client",
        "ComfyPackAPIError",
        "ENDPOINT",
        "FileInput",
        "GenerateInput",
        "GenerateResult",
        "OutputFile",
        "Seeds",
        "SupportsSave",
        "WORKFLOW",
    }
)

# placeholder names for the usage example in the module docstring, by file kind
_EXAMPLE_FILES = {
    "image": "input.png",
    "audio": "input.wav",
    "video": "input.mp4",
    "file": "input.bin",
}
_OUTPUT_TYPES = {"text": "str", "number": "float", "json": "Any"}


def _model_reserved() -> frozenset[str]:
    from pydantic import BaseModel

    return frozenset(n for n in dir(BaseModel) if not n.startswith("_"))


# ----------------------------------------------------------------------------------------------
# literals


def _str(text: str) -> str:
    """A Python string literal as ``ruff format`` / black write it: double quotes unless the text
    holds more double than single quotes; only what must be escaped is."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = []
    for ch in text:
        if ch == quote:
            out.append("\\" + quote)
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def _lit(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value).replace("E", "e")
    if isinstance(value, str):
        return _str(value)
    raise TypeError(f"no literal for {value!r}")


def _doc(text: str) -> str:
    """``text`` made safe inside a triple-quoted docstring, on one line."""
    text = " ".join(text.split())
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return text[:-1] + '\\"' if text.endswith('"') else text


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _attr(name: str, reserved: frozenset[str], taken: set[str]) -> str:
    """``name`` as a class attribute: with trailing underscores while it clashes (and not in
    pydantic's ``model_`` namespace)."""
    attr = name
    if attr.startswith("model_"):  # pydantic's namespace
        attr = "f_" + attr
    while attr in reserved or (attr != name and attr in taken):
        attr += "_"
    taken.add(attr)
    return attr


# ----------------------------------------------------------------------------------------------
# the generated pieces


class _Plan:
    """Every name and type the generated module uses, decided once."""

    def __init__(self, interface: Interface, workflow_name: str, endpoint: str) -> None:
        self.interface = interface
        self.workflow = workflow_name
        self.endpoint = "/" + endpoint.strip("/")
        self.props = input_schema(interface)["properties"]
        # required inputs first, each group in interface order
        self.inputs = [s for s in interface.inputs if s.required] + [
            s for s in interface.inputs if not s.required
        ]
        self.options: dict[str, str] = {}  # choice input → its Literal alias
        used = set(_MODULE_NAMES)
        for spec in self.inputs:
            if spec.kind == "choice":
                alias = base = _camel(spec.name) + "Option"
                n = 2
                while alias in used:
                    alias, n = f"{base}{n}", n + 1
                used.add(alias)
                self.options[spec.name] = alias
        type_names = _TYPE_NAMES | frozenset(self.options.values())
        model_reserved = type_names | _model_reserved()
        taken: set[str] = {s.name for s in interface.inputs}
        self.model_attrs = {s.name: _attr(s.name, model_reserved, taken) for s in self.inputs}
        taken = {o.name for o in interface.outputs}
        self.result_attrs = {
            o.name: _attr(o.name, type_names | _RESULT_METHODS, taken) for o in interface.outputs
        }
        taken = {s.name for s in interface.seed_inputs}
        self.seed_attrs = {s.name: _attr(s.name, type_names, taken) for s in interface.seed_inputs}
        self.receiver = "self" if "self" not in {s.name for s in interface.inputs} else "_self"
        files = [o for o in interface.outputs if o.is_file]
        self.single_file = files[0].name if len(interface.outputs) == 1 and files else None

    # -- types ---------------------------------------------------------------------------------

    def annotation(self, spec: InputSpec, *, model: bool = False) -> str:
        if spec.kind in FILE_KINDS:
            return "_FileField" if model else "FileInput"
        if spec.kind == "choice":
            return self.options[spec.name]
        return {
            "string": "str",
            "int": "int",
            "float": "float",
            "boolean": "bool",
            "seed": "int | None",
        }[spec.kind]

    def default(self, spec: InputSpec) -> str | None:
        """The default as a literal, or None for a required input."""
        if spec.required:
            return None
        if spec.kind == "seed":
            return "None"
        prop = self.props[spec.name]
        return _lit(prop.get("default"))

    def output_annotation(self, spec: OutputSpec) -> str:
        return "OutputFile" if spec.is_file else _OUTPUT_TYPES.get(spec.kind, "Any")

    # -- docs ----------------------------------------------------------------------------------

    def describe(self, spec: InputSpec) -> str:
        """One line for ``generate()``'s docstring."""
        prop = self.props[spec.name]
        parts = [spec.description.rstrip(".") + "." if spec.description else ""]
        if spec.kind in FILE_KINDS:
            parts.append(
                "Give a path, bytes, an http(s) URL or a PIL image."
                if spec.kind == "image"
                else "Give a path, bytes or an http(s) URL."
            )
        elif spec.kind == "seed":
            parts.append("Leave it None for a random seed; the one used is in `result.seeds`.")
        else:
            if spec.kind == "choice":
                parts.append("One of " + ", ".join(_str(o) for o in spec.options) + ".")
            lo, hi = prop.get("minimum"), prop.get("maximum")
            if lo is not None and hi is not None:
                parts.append(f"From {_lit(lo)} to {_lit(hi)}.")
            elif lo is not None:
                parts.append(f"At least {_lit(lo)}.")
            elif hi is not None:
                parts.append(f"At most {_lit(hi)}.")
            if "multipleOf" in prop:
                parts.append(f"A multiple of {prop['multipleOf']}.")
            if "maxLength" in prop:
                parts.append(f"At most {prop['maxLength']} characters.")
            parts.append(f"Default: {_lit(prop.get('default'))}.")
        return _doc(" ".join(p for p in parts if p))

    def describe_output(self, spec: OutputSpec) -> str:
        what = {
            "image": "An image",
            "audio": "An audio file",
            "video": "A video",
            "file": "A file",
            "text": "Text",
            "number": "A number",
            "json": "A JSON value",
        }.get(spec.kind, "A value")
        fmt = f" ({spec.format})" if spec.format and spec.is_file else ""
        return _doc(
            f"{what}{fmt} from {spec.description}." if spec.description else f"{what}{fmt}."
        )


def _field(plan: _Plan, spec: InputSpec) -> list[str]:
    prop = plan.props[spec.name]
    kwargs: list[str] = []
    default = plan.default(spec)
    if default is not None:
        kwargs.append(f"default={default}")
    attr = plan.model_attrs[spec.name]
    if attr != spec.name:
        kwargs.append(f"alias={_str(spec.name)}")
    if spec.kind in ("int", "float", "seed"):
        if prop.get("minimum") is not None:
            kwargs.append(f"ge={_lit(prop['minimum'])}")
        if prop.get("maximum") is not None:
            kwargs.append(f"le={_lit(prop['maximum'])}")
        if "multipleOf" in prop:
            kwargs.append(f"multiple_of={_lit(prop['multipleOf'])}")
    if "maxLength" in prop:
        kwargs.append(f"max_length={_lit(prop['maxLength'])}")
    if spec.description:
        kwargs.append(f"description={_str(' '.join(spec.description.split()))}")
    head = f"    {attr}: {plan.annotation(spec, model=True)}"
    if not kwargs:
        return [head]
    return [f"{head} = Field(", *(f"        {k}," for k in kwargs), "    )"]


def _options(plan: _Plan) -> list[str]:
    lines: list[str] = []
    for spec in plan.inputs:
        if spec.kind != "choice":
            continue
        alias = plan.options[spec.name]
        values = [_str(o) for o in spec.options]
        lines.append(f"#: The options of `{spec.name}`.")
        if len(values) == 1:
            one = f"{alias}: TypeAlias = Literal[{values[0]}]"
            lines.extend(
                [one]
                if len(one) <= 88
                else [f"{alias}: TypeAlias = Literal[", f"    {values[0]}", "]"]
            )
        else:
            lines.extend([f"{alias}: TypeAlias = Literal[", *(f"    {v}," for v in values), "]"])
        lines.append("")
    return lines


def _model(plan: _Plan) -> list[str]:
    lines = [
        "class GenerateInput(BaseModel):",
        f'    """The inputs of `{_doc(plan.workflow)}`, checked before anything is sent."""',
        "",
        '    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)',
    ]
    if plan.inputs:
        lines.append("")
    for spec in plan.inputs:
        lines.extend(_field(plan, spec))
    return lines


def _seeds(plan: _Plan) -> list[str]:
    lines = [
        "@dataclasses.dataclass(frozen=True)",
        "class Seeds:",
        '    """The seed each Seed input used (drawn at random when you left it out)."""',
        "",
    ]
    lines.extend(f"    {attr}: int" for attr in plan.seed_attrs.values())
    return lines


def _result(plan: _Plan) -> list[str]:
    lines = [
        "@dataclasses.dataclass(frozen=True)",
        "class GenerateResult:",
        f'    """The outputs of `{_doc(plan.workflow)}`: one attribute per named output.',
        "",
        "    A node that produced several values (a batch) gives its first one here;",
        "    `batch(name)` returns them all.",
        '    """',
        "",
    ]
    for spec in plan.interface.outputs:
        lines.append(f"    {plan.result_attrs[spec.name]}: {plan.output_annotation(spec)}")
        lines.append(f'    """{plan.describe_output(spec)}"""')
        lines.append("")
    if plan.interface.seed_inputs:
        lines.append("    seeds: Seeds")
        lines.append('    """The seed each Seed input used."""')
        lines.append("")
    lines.extend(
        [
            "    _batches: dict[str, list[Any]] = dataclasses.field(",
            "        default_factory=dict,",
            "        repr=False,",
            "        compare=False,",
            "    )",
            "",
            "    def batch(self, name: str) -> list[Any]:",
            '        """Every value the output `name` produced (several for a batch)."""',
            "        return list(self._batches.get(name, []))",
        ]
    )
    return lines


def _signature(plan: _Plan, name: str, returns: str, *, is_async: bool) -> list[str]:
    prefix = "async def" if is_async else "def"
    if not plan.inputs:
        return [f"    {prefix} {name}({plan.receiver}) -> {returns}:"]
    lines = [f"    {prefix} {name}(", f"        {plan.receiver},", "        *,"]
    for spec in plan.inputs:
        default = plan.default(spec)
        tail = "" if default is None else f" = {default}"
        lines.append(f"        {spec.name}: {plan.annotation(spec)}{tail},")
    lines.append(f"    ) -> {returns}:")
    return lines


def _args_doc(plan: _Plan) -> list[str]:
    if not plan.inputs:
        return []
    lines = ["", "        Args:"]
    for spec in plan.inputs:
        lines += textwrap.wrap(
            f"{spec.name}: {plan.describe(spec)}",
            width=88,
            initial_indent=" " * 12,
            subsequent_indent=" " * 16,
            break_long_words=False,
            break_on_hyphens=False,
        )
    return lines


def _call(plan: _Plan, target: str, *, is_async: bool) -> list[str]:
    head = f"        return {'await ' if is_async else ''}{plan.receiver}.{target}("
    if not plan.inputs:
        return [head + ")"]
    return [head, *(f"            {s.name}={s.name}," for s in plan.inputs), "        )"]


def _methods(plan: _Plan, *, is_async: bool) -> list[str]:
    wf = _doc(plan.workflow)
    lines = _signature(plan, "generate", "GenerateResult", is_async=is_async)
    lines += [
        f'        """Run `{wf}` and return its outputs.',
        *_args_doc(plan),
        "",
        "        Raises:",
        "            pydantic.ValidationError: an argument is invalid (nothing was sent).",
        "            ComfyPackAPIError: the service refused or failed the request.",
        '        """',
    ]
    lines += _call(plan, "_generate", is_async=is_async)
    lines.append("")
    lines += _signature(plan, "submit", "str", is_async=is_async)
    lines += [
        f'        """Start `{wf}` as a job and return its task id (files go as base64).',
        "",
        "        Follow it with `status()` / `progress()`; get the outputs with `result()`.",
        '        """',
    ]
    lines += _call(plan, "_submit", is_async=is_async)
    return lines


def _example(plan: _Plan) -> list[str]:
    args = []
    for spec in plan.inputs:
        if spec.required:
            args.append(f"{spec.name}={_str(_EXAMPLE_FILES.get(spec.kind, 'input.bin'))}")
    call = f"        result = client.generate({', '.join(args)})"
    if len(call) > 88:
        call = (
            "        result = client.generate(\n"
            + "".join(f"            {a},\n" for a in args)
            + "        )"
        )
    lines = [
        "    from client import Client",
        "",
        '    with Client("http://127.0.0.1:3000") as client:',
        call,
    ]
    for out in plan.interface.outputs:
        attr = plan.result_attrs[out.name]
        if out.is_file:
            ext = f".{out.format}" if out.format else ""
            lines.append(f'        result.{attr}.save("{out.name}{ext}")')
        else:
            lines.append(f"        print(result.{attr})")
    return lines


def _tables(plan: _Plan) -> list[str]:
    def table(name: str, kind: str, items: dict[str, str]) -> list[str]:
        if not items:
            return [f"{name}: dict[str, {kind}] = {{}}"]
        return [
            f"{name}: dict[str, {kind}] = {{",
            *(f"    {_str(k)}: {_str(v)}," for k, v in items.items()),
            "}",
        ]

    single = _str(plan.single_file) if plan.single_file else "None"
    return [
        "# input name -> kind, for the file inputs",
        *table("_FILE_INPUTS", "str", {s.name: s.kind for s in plan.inputs if s.is_file}),
        "# output name -> kind, and -> attribute of GenerateResult",
        *table("_OUTPUT_KINDS", "str", {o.name: o.kind for o in plan.interface.outputs}),
        *table("_OUTPUT_ATTRS", "str", dict(plan.result_attrs)),
        "# Seed input name -> attribute of Seeds",
        *table("_SEED_ATTRS", "str", dict(plan.seed_attrs)),
        "# the output the service sends as the raw file, when it is the only one",
        f"_SINGLE_FILE_OUTPUT: str | None = {single}",
    ]


# ----------------------------------------------------------------------------------------------
# the module


def _template() -> Template:
    """The module's text with ``$placeholders`` for the generated parts (package data)."""
    from importlib.resources import files

    return Template(
        files("comfypack.ship").joinpath("templates/client.py.tmpl").read_text(encoding="utf-8")
    )


def generate_client(interface: Interface, *, workflow_name: str, endpoint: str = "generate") -> str:
    """The source of a typed client module for ``interface`` (see this module's docstring).

    ``workflow_name`` labels the workflow in docstrings and ``WORKFLOW``; ``endpoint`` is the
    service's route (``comfypack serve --endpoint``). Same arguments → the same text.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.~/-]+", endpoint.strip("/") or "-"):
        raise ValueError(f"endpoint {endpoint!r} is not a plain URL path")
    plan = _Plan(interface, workflow_name, endpoint)
    options = _options(plan)
    return _template().substitute(
        workflow=_doc(workflow_name),
        example="\n".join(_example(plan)),
        literal="Literal, " if plan.options else "",
        field="Field, " if any(len(_field(plan, s)) > 1 for s in plan.inputs) else "",
        workflow_lit=_str(workflow_name),
        endpoint_lit=_str(plan.endpoint),
        options="\n\n" + "\n".join(options).strip("\n") + "\n" if options else "",
        model="\n".join(_model(plan)).strip("\n"),
        seeds="\n".join(_seeds(plan)).strip("\n"),
        result="\n".join(_result(plan)).strip("\n"),
        tables="\n".join(_tables(plan)).strip("\n"),
        methods="\n".join(_methods(plan, is_async=False)),
        async_methods="\n".join(_methods(plan, is_async=True)),
    )
