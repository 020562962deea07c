"""comfypack: turn a ComfyUI workflow into a reproducible, typed REST service."""

from ._version import __version__
from .errors import (
    ComfyPackError,
    ComfyUIError,
    ComfyUIUnavailable,
    ExecutionFailed,
    PromptRejected,
    RequestError,
    WorkflowError,
)
from .workflow.interface import InputSpec, Interface, OutputSpec, load_workflow, parse_interface
from .workflow.schema import input_schema, output_schema, pydantic_model, validate_request

__all__ = [
    "__version__",
    "ComfyPackError",
    "ComfyUIError",
    "ComfyUIUnavailable",
    "ExecutionFailed",
    "PromptRejected",
    "RequestError",
    "WorkflowError",
    "InputSpec",
    "Interface",
    "OutputSpec",
    "load_workflow",
    "parse_interface",
    "input_schema",
    "output_schema",
    "pydantic_model",
    "validate_request",
]
