"""Errors raised by comfypack.

Every error carries an HTTP status (used by the service) and a CLI exit code (used by
``comfypack``), and its message says what to do next.

    ComfyPackError                    500 / exit 1
    ├── WorkflowError                 400 / exit 2   the workflow itself is unusable
    ├── RequestError                  422 / exit 2   a caller's input is wrong (names the field)
    │   └── InputFetchError           422 / exit 2   a URL / base64 / upload input could not be read
    ├── ComfyUIError                  502 / exit 1   talking to ComfyUI failed
    │   ├── ComfyUIUnavailable        503 / exit 1   ComfyUI is not running / not reachable
    │   │   └── Overloaded            503 / exit 1   every worker busy, queue full (Retry-After)
    │   ├── PromptRejected            400 / exit 2   ComfyUI refused the prompt (node_errors)
    │   ├── ExecutionFailed           500 / exit 1   a node raised while running
    │   └── ComfyUITimeout            504 / exit 1   the prompt ran past its timeout (cancelled)
    ├── LockError                     400 / exit 2   a lock file is unreadable, invalid or too new
    ├── RestoreError                  500 / exit 1   recreating a workspace from a pack failed
    │   └── InvalidPack               400 / exit 2   a pack is malformed, unsafe or was modified
    ├── ProvisionError                500 / exit 1   installing ComfyUI failed
    ├── ServiceError                  500 / exit 1   the serving layer itself misbehaved
    ├── ModelsMissing                 503 / exit 2   the workflow names model files ComfyUI lacks
    ├── Cancelled                     409 / exit 2   the request or job was cancelled (a caller
    │                                                that went away: 499, for the log)
    └── DeployError                   500 / exit 1   building, pushing or deploying a Bento failed
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ComfyPackError",
    "WorkflowError",
    "RequestError",
    "InputFetchError",
    "ComfyUIError",
    "ComfyUIUnavailable",
    "Overloaded",
    "PromptRejected",
    "ExecutionFailed",
    "ComfyUITimeout",
    "LockError",
    "RestoreError",
    "InvalidPack",
    "ProvisionError",
    "ServiceError",
    "ModelsMissing",
    "Cancelled",
    "DeployError",
    "FieldError",
]


#: caps on what an error body may carry
MAX_MESSAGE = 2000
MAX_DETAILS = 50


def _cap_text(text: str) -> str:
    return (
        text
        if len(text) <= MAX_MESSAGE
        else f"{text[:MAX_MESSAGE]}… ({len(text) - MAX_MESSAGE} more characters)"
    )


def _cap(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _cap_text(value)
    if depth > 6:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:200]: _cap(v, depth + 1) for k, v in items[:MAX_DETAILS]}
        if len(items) > MAX_DETAILS:
            out["…"] = f"{len(items) - MAX_DETAILS} more"
        return out
    if isinstance(value, (list, tuple)):
        out_list = [_cap(v, depth + 1) for v in value[:MAX_DETAILS]]
        if len(value) > MAX_DETAILS:
            out_list.append({"field": None, "message": f"… and {len(value) - MAX_DETAILS} more"})
        return out_list
    return value


class FieldError(dict):  # type: ignore[type-arg]
    """One problem with one field: ``{"field": name, "message": text}`` (a plain dict for JSON)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(field=field, message=message)


class ComfyPackError(Exception):
    """Base class; ``status`` is the HTTP status, ``exit_code`` the CLI's."""

    status: int = 500
    exit_code: int = 1
    type: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"type", "message", "details"}}``, capped: the
        message at :data:`MAX_MESSAGE` characters, ``details`` at :data:`MAX_DETAILS` items and
        every string in it at :data:`MAX_MESSAGE` (an error never echoes a large input back)."""
        return {
            "error": {
                "type": self.type,
                "message": _cap_text(self.message),
                "details": _cap(self.details, 0),
            }
        }


class WorkflowError(ComfyPackError):
    status = 400
    exit_code = 2
    type = "workflow_error"


class RequestError(ComfyPackError):
    """A caller's mistake. ``details`` is a list of :class:`FieldError`."""

    status = 422
    exit_code = 2
    type = "validation_error"

    def __init__(self, message: str, *, details: Any = None, status: int | None = None) -> None:
        super().__init__(message, details=details)
        if status is not None:
            self.status = status

    @classmethod
    def for_field(cls, field: str | None, message: str, **kw: Any) -> RequestError:
        prefix = f"{field}: " if field else ""
        return cls(prefix + message, details=[FieldError(field, message)], **kw)

    @property
    def fields(self) -> list[str | None]:
        """The field each problem names (``None`` for the body as a whole, never ``"None"``)."""
        return [d.get("field") for d in (self.details or []) if isinstance(d, dict)]


class InputFetchError(RequestError):
    type = "input_error"


class ComfyUIError(ComfyPackError):
    status = 502
    type = "comfyui_error"


class ComfyUIUnavailable(ComfyUIError):
    status = 503
    type = "comfyui_unavailable"


class Overloaded(ComfyUIUnavailable):
    """Every worker is busy and the queue is full; retry after ``retry_after`` seconds (the
    service sends it as ``Retry-After``)."""

    type = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class PromptRejected(ComfyUIError):
    """ComfyUI's ``/prompt`` refused the graph; ``details`` holds its ``node_errors``."""

    status = 400
    exit_code = 2
    type = "prompt_rejected"


class ExecutionFailed(ComfyUIError):
    """A node raised while executing; ``details`` names the node and ComfyUI's message."""

    status = 500
    type = "execution_failed"


class ComfyUITimeout(ComfyUIError):
    """The prompt did not finish in time; it was cancelled in ComfyUI."""

    status = 504
    type = "timeout"


class LockError(ComfyPackError):
    """A lock file cannot be used: not JSON, fails the schema, or written by a newer comfypack."""

    status = 400
    exit_code = 2
    type = "lock_error"


class RestoreError(ComfyPackError):
    """Recreating a workspace failed (a source is unreachable, a hash does not match, ...)."""

    type = "restore_error"


class InvalidPack(RestoreError):
    """A pack that is malformed, unsafe or modified: the caller's input is bad."""

    status = 400
    exit_code = 2
    type = "invalid_pack"


class ProvisionError(ComfyPackError):
    type = "provision_error"


class ServiceError(ComfyPackError):
    type = "service_error"


class DeployError(ComfyPackError):
    """``comfypack build`` / ``deploy`` failed: bentoml build, BentoCloud (login, push, deployment)."""

    type = "deploy_error"


class ModelsMissing(ComfyPackError):
    """The workflow names model files that none of ComfyUI's model folders holds (a service is
    not ready until they are there; ``details`` lists node, input and file)."""

    status = 503
    exit_code = 2
    type = "models_missing"


class Cancelled(ComfyPackError):
    """The request was cancelled and its prompt removed from ComfyUI. A job's stored answer is
    409 (its state forbids a result); ``disconnected=True``: a synchronous caller went away,
    logged as 499 (nginx's "client closed request")."""

    status = 409
    exit_code = 2
    type = "cancelled"

    def __init__(
        self,
        message: str = "the request was cancelled; its prompt was removed from ComfyUI",
        *,
        disconnected: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        if disconnected:
            self.status = 499
