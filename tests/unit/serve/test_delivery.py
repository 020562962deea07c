"""comfypack.serve.delivery: a request's delivery headers, and the JobTable listener that sends events.

The listener runs on a real JobTable with a real receiver on 127.0.0.1 (allow-listed), so the
event a finished, failed or cancelled job sends is the one a deployment would send.
"""

from __future__ import annotations

import asyncio
import http.server
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import http_server

from comfypack.comfyui.runner import OutputFile, RunOutput
from comfypack.errors import ExecutionFailed, RequestError
from comfypack.files.urlfetch import UrlPolicy
from comfypack.serve.delivery import DeliveryOptions, ResultDelivery
from comfypack.serve.jobs import JobTable
from comfypack.serve.storage import StorageSettings
from comfypack.serve.webhooks import WebhookSettings, verify_signature

SECRET = "unit-delivery-secret"


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[str]:
    _Receiver.got = []
    with http_server(_Receiver) as url:
        yield url


def _delivery(**storage: Any) -> ResultDelivery:
    policy = UrlPolicy(allow_networks=UrlPolicy.parse_allow("127.0.0.1")[0])
    return ResultDelivery(
        WebhookSettings(secret=SECRET, policy=policy, backoff=0.1),
        StorageSettings(**storage) if storage else None,
    )


def test_options_from_headers() -> None:
    d = _delivery(bucket="b", modes=("inline", "url"))
    assert d.options({}) == DeliveryOptions("inline", "", None)
    o = d.options(
        {
            "X-ComfyPack-Outputs": "url",
            "X-ComfyPack-Output-Prefix": "t/a",
            "X-ComfyPack-Callback-Url": " http://127.0.0.1:9/h ",
        }
    )
    assert o == DeliveryOptions("url", "t/a/", "http://127.0.0.1:9/h")
    with pytest.raises(RequestError):
        _delivery().options({"X-ComfyPack-Outputs": "url"})  # no bucket: inline only
    with pytest.raises(RequestError):
        asyncio.run(_delivery().check({"X-ComfyPack-Callback-Url": "http://10.0.0.1/h"}))


def test_inline_answers_upload_nothing() -> None:
    d = _delivery()
    result = RunOutput("p", {"img": [OutputFile(b"x", "image/png", "a.png")]}, {}, {})
    asyncio.run(d.store_outputs(result, DeliveryOptions(), "job"))
    assert result.stored == {} and result.to_json()["img"].startswith("data:image/png")


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_job_sends_one_signed_event(receiver: str, status: str) -> None:
    d = _delivery()
    jobs = JobTable()
    jobs.on_finish(d.on_finish)
    result = RunOutput("p", {"text": ["hi"]}, {}, {})

    async def scenario() -> dict[str, Any]:
        job = jobs.start("task-1", 3)
        d.expect(job, DeliveryOptions(callback=f"{receiver}/h"), request_id="req-1", is_task=True)
        assert job["webhook"]["status"] == "pending"
        error = (
            ExecutionFailed("node 2 failed", details={"node_id": "2"})
            if status == "failed"
            else None
        )
        jobs.finish(job, status, result=result if status == "completed" else None, error=error)
        await d.close(grace=10)
        return job

    job = asyncio.run(scenario())
    assert job["webhook"]["status"] == "delivered" and job["webhook"]["attempts"] == 1
    ((headers, body),) = _Receiver.got
    assert verify_signature(
        SECRET,
        body,
        headers["x-comfypack-webhook-timestamp"],
        headers["x-comfypack-webhook-signature"],
    )
    event = json.loads(body)
    assert (event["type"], event["job_id"], event["request_id"]) == (
        f"job.{status}",
        "task-1",
        "req-1",
    )
    if status == "completed":
        assert event["outputs"] == {"text": "hi"}
    elif status == "failed":
        assert (
            event["error"]["type"] == "execution_failed"
            and event["error"]["details"]["node_id"] == "2"
        )


def test_a_job_without_a_callback_sends_nothing(receiver: str) -> None:
    d = _delivery()
    jobs = JobTable()
    jobs.on_finish(d.on_finish)

    async def scenario() -> None:
        job = jobs.start("task-2", 1)
        d.expect(job, DeliveryOptions(), request_id="r", is_task=True)
        jobs.finish(job, "completed", result=RunOutput("p", {}, {}, {}))
        await d.close()

    asyncio.run(scenario())
    assert _Receiver.got == []
