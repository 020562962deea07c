"""comfypack: turn a ComfyUI workflow into a reproducible, typed REST service."""

from .errors import (
    ComfyPackError,
    ComfyUIError,
    ComfyUIUnavailable,
    ExecutionFailed,
    PromptRejected,
    RequestError,
    WorkflowError,
)
from .schema import input_schema, output_schema, pydantic_model, validate_request
from .workflow import InputSpec, Interface, OutputSpec, load_workflow, parse_interface

__version__ = "0.1.0"

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
