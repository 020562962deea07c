"""comfypack.errors: every class's HTTP status, CLI exit code, type and JSON shape."""

from __future__ import annotations

import json

import pytest

from comfypack import errors
from comfypack.errors import (
    Cancelled,
    ComfyPackError,
    ComfyUIError,
    ComfyUITimeout,
    ComfyUIUnavailable,
    DeployError,
    ExecutionFailed,
    FieldError,
    InputFetchError,
    InvalidPack,
    LockError,
    ModelsMissing,
    Overloaded,
    PromptRejected,
    ProvisionError,
    RequestError,
    RestoreError,
    ServiceError,
    WorkflowError,
)

# class → (HTTP status, exit code, type, parent)
TABLE = [
    (ComfyPackError, 500, 1, "internal_error", Exception),
    (WorkflowError, 400, 2, "workflow_error", ComfyPackError),
    (RequestError, 422, 2, "validation_error", ComfyPackError),
    (InputFetchError, 422, 2, "input_error", RequestError),
    (ComfyUIError, 502, 1, "comfyui_error", ComfyPackError),
    (ComfyUIUnavailable, 503, 1, "comfyui_unavailable", ComfyUIError),
    (Overloaded, 503, 1, "overloaded", ComfyUIUnavailable),
    (PromptRejected, 400, 2, "prompt_rejected", ComfyUIError),
    (ExecutionFailed, 500, 1, "execution_failed", ComfyUIError),
    (ComfyUITimeout, 504, 1, "timeout", ComfyUIError),
    (LockError, 400, 2, "lock_error", ComfyPackError),
    (RestoreError, 500, 1, "restore_error", ComfyPackError),
    (InvalidPack, 400, 2, "invalid_pack", RestoreError),
    (ProvisionError, 500, 1, "provision_error", ComfyPackError),
    (ServiceError, 500, 1, "service_error", ComfyPackError),
    (DeployError, 500, 1, "deploy_error", ComfyPackError),
    (ModelsMissing, 503, 2, "models_missing", ComfyPackError),
    (Cancelled, 409, 2, "cancelled", ComfyPackError),
]

#: every error class comfypack exports
CLASSES = {
    obj
    for name in errors.__all__
    if isinstance(obj := getattr(errors, name), type) and issubclass(obj, ComfyPackError)
}


def test_the_table_covers_every_error_class():
    assert {row[0] for row in TABLE} == CLASSES


@pytest.mark.parametrize(
    ("cls", "status", "exit_code", "type_", "parent"), TABLE, ids=[row[0].__name__ for row in TABLE]
)
def test_status_exit_code_type_and_parent(cls, status, exit_code, type_, parent):
    err = cls("boom")
    assert err.status == status
    assert err.exit_code == exit_code
    assert err.type == type_
    assert type(err).__mro__[1] is parent
    assert isinstance(err, ComfyPackError)
    assert str(err) == "boom"
    assert err.message == "boom"
    assert err.details == ({"retry_after": 1} if cls is Overloaded else None)


def test_client_errors_are_4xx_and_exit_2_server_errors_5xx_and_exit_1():
    for cls in CLASSES:  # the classes themselves, not the table above
        if (
            cls is ModelsMissing
        ):  # a service is not ready (503); the user must supply files (exit 2)
            continue
        if 400 <= cls.status < 500:
            assert cls.exit_code == 2, cls
        else:
            assert cls.status >= 500 and cls.exit_code == 1, cls


def test_to_dict_shape_and_is_json_serialisable():
    details = [FieldError("width", "must be at most 2048")]
    err = RequestError("width: must be at most 2048", details=details)
    body = err.to_dict()
    assert body == {
        "error": {
            "type": "validation_error",
            "message": "width: must be at most 2048",
            "details": [{"field": "width", "message": "must be at most 2048"}],
        }
    }
    assert json.loads(json.dumps(body)) == body


def test_overloaded_carries_retry_after_and_cancelled_a_disconnect():
    err = Overloaded("full", retry_after=7)
    assert err.retry_after == 7 and err.to_dict()["error"]["details"] == {"retry_after": 7}
    assert Cancelled().status == 409 and "cancelled" in Cancelled().message
    assert Cancelled(disconnected=True).status == 499 and Cancelled.status == 409


def test_to_dict_without_details():
    assert ComfyUIUnavailable("down").to_dict() == {
        "error": {"type": "comfyui_unavailable", "message": "down", "details": None}
    }


def test_field_error_is_a_plain_dict():
    fe = FieldError(None, "expected a JSON object")
    assert fe == {"field": None, "message": "expected a JSON object"}
    assert isinstance(fe, dict)


def test_request_error_for_field():
    err = RequestError.for_field("seed", "must be an integer")
    assert err.message == "seed: must be an integer"
    assert err.details == [{"field": "seed", "message": "must be an integer"}]
    assert err.fields == ["seed"]
    assert err.status == 422


def test_request_error_for_field_without_field_and_custom_status():
    err = InputFetchError.for_field(None, "too large", status=413)
    assert err.message == "too large"
    assert err.status == 413
    assert err.fields == [None]
    assert isinstance(err, InputFetchError)
    # the override is per instance, never the class default
    assert InputFetchError.status == 422 and RequestError("x").status == 422


def test_request_error_fields_ignores_non_dict_details():
    assert RequestError("x", details=None).fields == []
    assert RequestError("x", details=["text", {"field": "a", "message": "m"}]).fields == ["a"]


def test_details_pass_through_for_comfyui_errors():
    node_errors = {"3": {"errors": [{"message": "bad"}], "class_type": "X"}}
    err = PromptRejected("rejected", details={"node_errors": node_errors})
    assert err.to_dict()["error"]["details"]["node_errors"] == node_errors
    assert err.to_dict()["error"]["type"] == "prompt_rejected"
