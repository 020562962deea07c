"""A workflow's typed API: an API-format graph (what ``/prompt`` takes) → its
:class:`Interface` of named, typed inputs and outputs → a JSON Schema and a pydantic model that
validate requests; the media values file inputs carry; and UI format (what ComfyUI's *Save*
writes) converted to API format as ComfyUI's frontend does.

- ``interface``: :func:`load_workflow`, :func:`parse_interface` → :class:`Interface`
  (:class:`InputSpec`, :class:`OutputSpec`), :func:`workflow_name`.
- ``schema``: :func:`input_schema`, :func:`output_schema`, :func:`pydantic_model`,
  :func:`validate_request`, :func:`interface_document`.
- ``media``: file inputs — base64, ``data:`` URIs, uploads and URLs — decoded and checked
  (:class:`MediaFile`, :class:`Upload`, :class:`InputLimits`, :func:`decode_media`).
- ``uiformat/``: :func:`convert` UI format → API format (:func:`is_ui_format`,
  :func:`missing_node_types`, :func:`dynamic_prompt`), mirroring a given frontend version.

Converting with a *running* ComfyUI's node definitions is one stage up:
:func:`comfypack.comfyui.loader.load_any_workflow`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .interface import (
        FILE_KINDS,
        INPUT_NODES,
        OUTPUT_NODES,
        InputSpec,
        Interface,
        OutputSpec,
        load_workflow,
        parse_interface,
        workflow_name,
    )
    from .media import InputLimits, MediaFile, Upload, decode_media
    from .schema import (
        input_schema,
        interface_document,
        output_schema,
        pydantic_model,
        validate_request,
    )
    from .uiformat import convert, dynamic_prompt, is_ui_format, missing_node_types

_EXPORTS = {
    "FILE_KINDS": ".interface",
    "INPUT_NODES": ".interface",
    "OUTPUT_NODES": ".interface",
    "InputLimits": ".media",
    "InputSpec": ".interface",
    "Interface": ".interface",
    "MediaFile": ".media",
    "OutputSpec": ".interface",
    "Upload": ".media",
    "convert": ".uiformat",
    "decode_media": ".media",
    "dynamic_prompt": ".uiformat",
    "input_schema": ".schema",
    "interface_document": ".schema",
    "is_ui_format": ".uiformat",
    "load_workflow": ".interface",
    "missing_node_types": ".uiformat",
    "output_schema": ".schema",
    "parse_interface": ".interface",
    "pydantic_model": ".schema",
    "validate_request": ".schema",
    "workflow_name": ".interface",
}

__all__ = [
    "FILE_KINDS",
    "INPUT_NODES",
    "OUTPUT_NODES",
    "InputLimits",
    "InputSpec",
    "Interface",
    "MediaFile",
    "OutputSpec",
    "Upload",
    "convert",
    "decode_media",
    "dynamic_prompt",
    "input_schema",
    "interface_document",
    "is_ui_format",
    "load_workflow",
    "missing_node_types",
    "output_schema",
    "parse_interface",
    "pydantic_model",
    "validate_request",
    "workflow_name",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
