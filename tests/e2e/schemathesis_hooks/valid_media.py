"""Schemathesis hooks for ``test_openapi.py``: a fuzzer cannot invent a valid PNG, WAV or MP4, so a
*positive* test case (one whose body the schema allows) gets a real sample file in each file field
it filled (``COMFYPACK_ST_FILE_FIELDS``: JSON ``{field: kind}``). Empty values and non-strings are
left alone: those are the fuzzer's negative probes, which the service must still refuse."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import schemathesis

from comfypack.serve.openapi_media import sample_media

_FIELDS: dict[str, str] = json.loads(os.environ.get("COMFYPACK_ST_FILE_FIELDS", "{}"))
_SAMPLES = {kind: sample_media(kind) for kind in set(_FIELDS.values())}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = getattr(case, "_meta", None)
    positive = meta is not None and getattr(meta.generation.mode, "value", "") == "positive"
    # a callback URL the schema allows may still name a host that does not resolve: positive cases
    # get a receiver the service may reach (COMFYPACK_ST_CALLBACK, allow-listed by the test)
    callback = os.environ.get("COMFYPACK_ST_CALLBACK")
    headers = getattr(case, "headers", None)
    if positive and callback and headers is not None and headers.get("X-ComfyPack-Callback-Url"):
        headers["X-ComfyPack-Callback-Url"] = callback
    if not positive or not isinstance(case.body, dict):
        return case
    for field, kind in _FIELDS.items():
        value = case.body.get(field)
        raw = getattr(value, "data", value)  # schemathesis wraps generated binary in a str subclass
        if isinstance(raw, (bytes, bytearray)) and raw:
            case.body[field] = base64.b64decode(_SAMPLES[kind].split(",", 1)[1])
        elif isinstance(value, str) and value:
            case.body[field] = _SAMPLES[kind]
    return case
