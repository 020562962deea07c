"""From an :class:`~comfypack.workflow.interface.Interface` to JSON Schema, pydantic and validated values.

One source of truth: :func:`input_schema` is what ``/docs.json`` shows, what ``comfypack inspect``
prints and what :func:`validate_request` checks requests against (with ``jsonschema``).
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..errors import FieldError, RequestError
from .interface import FILE_KINDS, InputSpec, Interface, OutputSpec
from .media import Upload

__all__ = [
    "input_schema",
    "output_schema",
    "interface_document",
    "pydantic_model",
    "validate_request",
    "MEDIA_TYPES",
]

#: Accepted media for file inputs, by kind (for docs and upload checks).
MEDIA_TYPES = {
    "image": "image/*",
    "audio": "audio/*",
    "video": "video/*",
    "file": "application/octet-stream",
}

_MEDIA_HELP = (
    "Send it as a multipart file upload, an http(s) URL, or base64 (plain or a data: URI)."
)


def _int_step(spec: InputSpec) -> bool:
    """An Int's step is a JSON Schema ``multipleOf`` when its range starts on a multiple of it."""
    return (
        spec.kind == "int"
        and spec.step is not None
        and spec.step > 1
        and int(spec.minimum or 0) % int(spec.step) == 0
    )


def _input_property(spec: InputSpec) -> dict[str, Any]:
    prop: dict[str, Any] = {}
    if spec.kind == "string":
        prop = {"type": "string", "default": spec.default}
        if spec.max_length:
            prop["maxLength"] = spec.max_length
    elif spec.kind in ("int", "float", "seed"):
        prop = {"type": "integer" if spec.kind != "float" else "number"}
        if spec.kind == "seed":
            prop["type"] = ["integer", "null"]  # null (or leaving it out): a random seed
        if spec.default is not None:
            prop["default"] = spec.default
        if spec.minimum is not None:
            prop["minimum"] = spec.minimum
        if spec.maximum is not None:
            prop["maximum"] = spec.maximum
        if _int_step(spec):
            prop["multipleOf"] = int(spec.step)  # type: ignore[arg-type]
    elif spec.kind == "boolean":
        prop = {"type": "boolean", "default": spec.default}
    elif spec.kind == "choice":
        prop = {"type": "string", "enum": list(spec.options), "default": spec.default}
    elif spec.kind in FILE_KINDS:
        prop = {"type": "string", "format": "binary", "contentMediaType": MEDIA_TYPES[spec.kind]}
    description = spec.description
    if spec.kind == "seed":
        description = (description + " " if description else "") + (
            "Omit it for a random seed; the seed used is returned in `seeds`."
        )
    elif spec.kind in FILE_KINDS:
        description = (description + " " if description else "") + f"({spec.kind}) {_MEDIA_HELP}"
    if description:
        prop["description"] = description
    prop["title"] = spec.name
    return prop


def input_schema(interface: Interface) -> dict[str, Any]:
    """The JSON Schema of a request body."""
    return {
        "type": "object",
        "title": "GenerateInput",
        "properties": {spec.name: _input_property(spec) for spec in interface.inputs},
        "required": [spec.name for spec in interface.inputs if spec.required],
        "additionalProperties": False,
    }


def _output_property(spec: OutputSpec) -> dict[str, Any]:
    # RunOutput.to_json gives one value, or a list when the node produced several (a batch)
    if spec.kind in FILE_KINDS:
        one: dict[str, Any] = {"type": "string", "pattern": "^(data:|https?://)"}
        description = (
            f"{spec.kind} as a base64 data: URI, or — where the service stores outputs — "
            "a signed http(s) URL to download it from (a list of them for a batch)"
        )
    elif spec.kind == "text":
        one, description = {"type": "string"}, "text (a list when the node produced several)"
    elif spec.kind == "number":
        one, description = {"type": "number"}, "a number (a list when the node produced several)"
    else:
        return {"description": "any JSON value", "title": spec.name}
    return {
        "anyOf": [one, {"type": "array", "items": one}],
        "description": description,
        "title": spec.name,
    }


def output_schema(interface: Interface) -> dict[str, Any]:
    """The JSON Schema of a JSON response (every named output, plus ``seeds`` if any)."""
    props = {spec.name: _output_property(spec) for spec in interface.outputs}
    if interface.seed_inputs:
        props["seeds"] = {
            "type": "object",
            "title": "seeds",
            "description": "the seed used for each Seed input",
            "properties": {s.name: {"type": "integer"} for s in interface.seed_inputs},
        }
    return {
        "type": "object",
        "title": "GenerateOutput",
        "properties": props,
        "required": [s.name for s in interface.outputs],
    }


def interface_document(interface: Interface) -> dict[str, Any]:
    """What ``comfypack inspect --json`` prints and ``interface.json`` holds."""
    return {
        "input_schema": input_schema(interface),
        "output_schema": output_schema(interface),
        "inputs": [
            {
                k: v
                for k, v in {
                    "name": s.name,
                    "kind": s.kind,
                    "node_id": s.node_id,
                    "required": s.required,
                    "default": s.default,
                    "minimum": s.minimum,
                    "maximum": s.maximum,
                    "step": s.step,
                    "max_length": s.max_length,
                    "options": list(s.options) or None,
                    "description": s.description or None,
                }.items()
                if v is not None
            }
            for s in interface.inputs
        ],
        "outputs": [
            {
                "name": o.name,
                "kind": o.kind,
                "node_id": o.node_id,
                **({"format": o.format} if o.format else {}),
            }
            for o in interface.outputs
        ],
    }


# ----------------------------------------------------------------------------------------------
# pydantic


def _annotation(spec: InputSpec) -> tuple[Any, Any]:
    kw: dict[str, Any] = {"description": spec.description or None}
    if spec.kind == "string":
        return str, Field(spec.default, max_length=spec.max_length, **kw)
    if spec.kind in ("int", "float"):
        typ: Any = int if spec.kind == "int" else float
        step = int(spec.step) if _int_step(spec) else None  # type: ignore[arg-type]
        return typ, Field(spec.default, ge=spec.minimum, le=spec.maximum, multiple_of=step, **kw)
    if spec.kind == "seed":
        return int | None, Field(None, ge=0, le=spec.maximum, **kw)
    if spec.kind == "boolean":
        return bool, Field(spec.default, **kw)
    if spec.kind == "choice":
        return Literal[tuple(spec.options)], Field(spec.default, **kw)  # type: ignore[misc]
    # media: bytes (upload) or str (URL / base64)
    return bytes | str, Field(..., **kw)


def pydantic_model(interface: Interface, name: str = "GenerateInput") -> type[BaseModel]:
    """A typed pydantic model of the request (types, defaults, bounds, enums, descriptions)."""
    fields = {spec.name: _annotation(spec) for spec in interface.inputs}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]


# ----------------------------------------------------------------------------------------------
# validation


def _validator(interface: Interface) -> Any:
    """A jsonschema validator for the non-file fields (file fields are decoded separately)."""
    import jsonschema

    schema = input_schema(interface)
    for spec in interface.inputs:
        if spec.is_file:
            schema["properties"][spec.name] = {}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


_VALIDATORS: dict[int, Any] = {}


def _cached_validator(interface: Interface) -> Any:
    key = id(interface)
    v = _VALIDATORS.get(key)
    if v is None or v[0] is not interface:
        v = (interface, _validator(interface))
        _VALIDATORS[key] = v
    return v[1]


#: how many unknown fields one error lists, and how much of a bad value it shows
_MAX_UNKNOWN = 20
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = 5


def _shown(value: Any) -> str:
    """A short repr of a caller's value (an error never echoes a large input back)."""
    return _SHOW.repr(value)


def _name(key: Any) -> str:
    text = str(key)
    return text if len(text) <= 64 else text[:64] + "…"


def _describe(error: Any, body: dict[str, Any], interface: Interface) -> list[FieldError]:
    if error.validator == "required":
        missing = [r for r in error.validator_value if r not in body]
        return [FieldError(m, "is required") for m in missing]
    if error.validator == "additionalProperties":
        known = {s.name for s in interface.inputs}
        extra = [k for k in body if k not in known]
        hint = (
            f"; the inputs are: {', '.join(sorted(known))}"
            if known
            else "; this workflow takes no inputs"
        )
        listed = [
            FieldError(_name(k), f"unknown field{hint}")
            for k in sorted(extra[:1000])[:_MAX_UNKNOWN]
        ]
        if len(extra) > _MAX_UNKNOWN:
            listed.append(FieldError(None, f"and {len(extra) - _MAX_UNKNOWN} more unknown fields"))
        return listed
    field = str(error.path[0]) if error.path else None
    if error.validator == "type":
        expected = error.validator_value
        return [
            FieldError(
                field,
                f"must be of type {expected}, got {_json_type(error.instance)} "
                f"{_shown(error.instance)}",
            )
        ]
    if error.validator == "enum":
        return [
            FieldError(
                field, f"must be one of {error.validator_value}, got {_shown(error.instance)}"
            )
        ]
    if error.validator == "maxLength":
        return [
            FieldError(
                field,
                f"is too long: {len(error.instance)} characters, at most {error.validator_value}",
            )
        ]
    message = error.message
    if len(message) > 300:
        message = message[:300] + "…"
    return [FieldError(field, message)]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, (bytes, bytearray, Upload)):
        return "file"
    return "object"


def validate_request(interface: Interface, body: Any) -> dict[str, Any]:
    """Check a request body against the interface; return every input's value (defaults filled).

    Raises :class:`RequestError` naming every bad field. File inputs are returned as given
    (bytes or str) for :mod:`comfypack.workflow.media` to decode. Seeds left out are ``None``.
    """
    if not isinstance(body, dict):
        raise RequestError(
            f"the request body must be a JSON object, got {_json_type(body)}",
            details=[FieldError(None, "expected a JSON object")],
            status=400,
        )
    # a Seed sent as null means "pick one", like leaving it out
    body = {
        k: v
        for k, v in body.items()
        if not (v is None and k in {s.name for s in interface.seed_inputs})
    }
    validator = _cached_validator(interface)
    problems: list[FieldError] = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        problems.extend(_describe(error, body, interface))
    for spec in interface.inputs:
        value = body.get(spec.name)
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(FieldError(spec.name, f"must be a finite number, got {value!r}"))
            continue
        if (
            spec.is_file
            and spec.name in body
            and not isinstance(value, (str, bytes, bytearray, Upload))
        ):
            problems.append(
                FieldError(
                    spec.name,
                    (
                        f"must be a file upload, an http(s) URL or base64 text, got {_json_type(value)}"
                    ),
                )
            )
        elif (
            spec.is_file
            and spec.name in body
            and not (value.strip() if isinstance(value, str) else getattr(value, "data", value))
        ):
            problems.append(
                FieldError(spec.name, "is empty: send a file upload, an http(s) URL or base64")
            )
        if spec.kind == "float" and isinstance(value, bool):
            problems.append(FieldError(spec.name, "must be a number, got boolean"))
    if problems:
        fields = ", ".join(dict.fromkeys(str(p["field"]) for p in problems))
        msgs = "; ".join(
            f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems
        )
        raise RequestError(f"invalid input ({fields}): {msgs}", details=problems)
    values: dict[str, Any] = {}
    for spec in interface.inputs:
        if spec.name in body:
            value = body[spec.name]
            if spec.kind == "float":
                value = float(value)
            elif spec.kind in ("int", "seed") and isinstance(value, float):
                value = int(value)
            values[spec.name] = value
        elif spec.kind == "seed":
            values[spec.name] = None
        else:
            values[spec.name] = spec.default
    return values
