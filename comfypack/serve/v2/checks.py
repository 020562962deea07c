"""What a v2 request brings, checked: its JSON body (bounded), its metadata labels, and the
submitted graph under the policy (the served workflow; any graph opt-in) with its assets found."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.requests import Request

from ...errors import RequestError
from ...workflow.media import Upload
from .assets import AssetRecord, AssetStore, check_hash
from .common import V2Error, check_uuid
from .jobs import Engine, JobManager, Submission
from .policy import AssetRef, asset_refs, check_any, check_served

__all__: list[str] = []

_META_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
_BAD_CHARS = re.compile("[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]")


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise V2Error(413, "payload_too_large", f"the JSON body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise V2Error(400, "invalid_request", "the body must be JSON") from None
    if not isinstance(body, dict):
        raise V2Error(400, "invalid_request", "the body must be a JSON object")
    return body


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise V2Error(
            422,
            "metadata_invalid",
            "'metadata' must be an object of string labels",
            {"field": "metadata"},
        )
    if len(raw) > 16:
        raise V2Error(
            422,
            "metadata_invalid",
            f"'metadata' has {len(raw)} pairs; at most 16",
            {"field": "metadata"},
        )
    for k, v in raw.items():
        if not _META_KEY.match(k):
            raise V2Error(
                422,
                "metadata_invalid",
                f"metadata key {k[:50]!r}: 1-40 of A-Z a-z 0-9 _ - .",
                {"field": f"metadata.{k[:50]}"},
            )
        if not isinstance(v, str) or len(v.encode()) > 256 or _BAD_CHARS.search(v):
            raise V2Error(
                422,
                "metadata_invalid",
                f"metadata {k!r}: a string of at most 256 bytes without control characters",
                {"field": f"metadata.{k}"},
            )
    return dict(raw)


def _resolve(store: AssetStore, ref: AssetRef) -> AssetRecord:
    rec = None
    if ref.asset_id is not None:
        try:
            rec = store.get(check_uuid(ref.asset_id, "asset"))
        except V2Error:
            rec = None
    if rec is None and ref.hash is not None:
        try:
            rec = store.by_hash(check_hash(ref.hash))
        except V2Error:
            rec = None
    if rec is None:
        raise V2Error(
            422,
            "missing_asset",
            f"node {ref.node_id}: input {ref.input!r} names an asset this "
            f"service does not have ({(ref.asset_id or ref.hash or '')[:80]}); upload it first",
            {"node_id": ref.node_id, "field": ref.input, "missing_ids": [ref.asset_id or ref.hash]},
        )
    return rec


async def _checked(
    engine: Engine, graph: Any, store: AssetStore, any_graph: JobManager | None
) -> Submission:
    """The submission the policy allows (any graph when ``any_graph`` gives the node types), with
    its assets found; 422 naming the node otherwise."""
    if any_graph is not None:
        checked = check_any(graph, await any_graph.node_types(engine))
        assets = {(r.node_id, r.input): _resolve(store, r) for r in asset_refs(checked)}
        return Submission(checked, None, assets)
    body, refs = check_served(graph, engine.workflow, engine.interface)
    found = {name: _resolve(store, ref) for name, ref in refs.items()}
    for name, rec in found.items():
        body[name] = Upload(await asyncio.to_thread(store.read, rec), filename=rec.file_path)
    try:
        values = engine.runner.validate(body)
    except RequestError as e:
        by_name = {s.name: s for s in engine.interface.inputs}
        fields = []
        for item in e.details or []:
            spec = by_name.get(str(item.get("field"))) if isinstance(item, dict) else None
            if spec is not None:
                fields.append(
                    {
                        "node_id": spec.node_id,
                        "field": spec.widget,
                        "input": spec.name,
                        "message": item.get("message"),
                    }
                )
        where = "; ".join(f"node {f['node_id']} ({f['input']}): {f['message']}" for f in fields)
        raise V2Error(422, "invalid_workflow", where or e.message, {"fields": fields}) from e
    return Submission(
        graph, values, {(refs[n].node_id, refs[n].input): rec for n, rec in found.items()}
    )
