"""comfypack.serve.webhooks: signed events, the callback address policy, at-least-once delivery.

A real HTTP receiver on 127.0.0.1 (conftest's ``http_server``) records every request and answers
with a scripted status; the test checks each attempt's signature with its own HMAC (not with the
module's helper) so a wrong signing scheme cannot pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import http_server

from comfypack.errors import RequestError
from comfypack.files.urlfetch import UrlPolicy
from comfypack.serve.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    WebhookSettings,
    check_callback,
    deliver,
    event,
    sign,
    verify_signature,
)

SECRET = "s3cret-for-tests"
LOOPBACK = UrlPolicy(allow_networks=UrlPolicy.parse_allow("127.0.0.1")[0])


class _Receiver(http.server.BaseHTTPRequestHandler):
    script: list[int] = []  # statuses to answer, in order (then 200)
    seen: list[tuple[float, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((time.monotonic(), {**dict(self.headers), ":path": self.path}, body))
        status = type(self).script.pop(0) if type(self).script else 200
        self.send_response(status)
        if status in (301, 302, 307):
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[str]:
    _Receiver.script = []
    _Receiver.seen = []
    with http_server(_Receiver) as url:
        yield url + "/hook"


def _settings(**kw: Any) -> WebhookSettings:
    base: dict[str, Any] = {
        "secret": SECRET,
        "policy": LOOPBACK,
        "backoff": 0.2,
        "max_backoff": 1.0,
        "timeout": 5.0,
    }
    return WebhookSettings(**{**base, **kw})


def _expected(ts: str, body: bytes) -> str:
    return "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()


def test_signature_is_hmac_sha256_of_timestamp_dot_body_and_verification_refuses_changes() -> None:
    body = b'{"a":1}'
    assert sign(SECRET, 1700000000, body) == _expected("1700000000", body)
    now = 1700000000 + 10
    assert verify_signature(SECRET, body, "1700000000", sign(SECRET, 1700000000, body), now=now)
    assert not verify_signature(
        SECRET, b'{"a":2}', "1700000000", sign(SECRET, 1700000000, body), now=now
    )
    assert not verify_signature(
        "other", body, "1700000000", sign(SECRET, 1700000000, body), now=now
    )
    # a replay: the same signed event, ten minutes later
    assert not verify_signature(
        SECRET, body, "1700000000", sign(SECRET, 1700000000, body), now=now + 600
    )
    assert not verify_signature(SECRET, body, None, sign(SECRET, 1700000000, body), now=now)


def test_event_shape() -> None:
    done = event(
        status="completed",
        job_id="t1",
        request_id="r1",
        outputs={"x": 1},
        timings={"duration_ms": 5},
    )
    assert done["type"] == "job.completed" and done["outputs"] == {"x": 1} and "error" not in done
    failed = event(
        status="failed", job_id="t1", request_id="r1", error={"type": "x", "message": "m"}
    )
    assert (
        failed["type"] == "job.failed"
        and failed["error"]["message"] == "m"
        and "outputs" not in failed
    )
    with pytest.raises(ValueError):
        event(status="running", job_id=None, request_id=None)


def test_callbacks_obey_the_url_input_policy_and_need_a_secret(receiver: str) -> None:
    async def check(url: str | None, settings: WebhookSettings) -> str | None:
        return await check_callback(url, settings)

    assert asyncio.run(check(None, _settings())) is None
    assert asyncio.run(check(receiver, _settings())) == receiver
    with pytest.raises(RequestError) as e:  # loopback, not allow-listed
        asyncio.run(check(receiver, _settings(policy=UrlPolicy())))
    assert (
        e.value.status == 422
        and "loopback" in e.value.message
        and "COMFYPACK_URL_ALLOW" in e.value.message
    )
    assert e.value.details[0]["field"] == "callback_url"
    for bad in ("ftp://example.com/x", "not a url", "http:///nohost"):
        with pytest.raises(RequestError):
            asyncio.run(check(bad, _settings()))
    with pytest.raises(RequestError) as e:
        asyncio.run(check(receiver, _settings(secret=None)))
    assert "COMFYPACK_WEBHOOK_SECRET" in e.value.message
    assert not _Receiver.seen  # checking never connects


def test_a_receiver_that_fails_twice_still_gets_the_same_signed_event(receiver: str) -> None:
    _Receiver.script = [500, 503]
    body = event(status="completed", job_id="job-1", request_id="req-1", outputs={"text": "hi"})
    record = Delivery(receiver, body["id"])
    started = time.monotonic()
    asyncio.run(deliver(body, record, _settings()))
    assert record.status == "delivered" and record.attempts == 3 and record.last_status == 200
    assert len(_Receiver.seen) == 3
    for _, headers, raw in _Receiver.seen:
        assert json.loads(raw) == body
        assert headers[ID_HEADER] == body["id"]
        assert headers[SIGNATURE_HEADER] == _expected(headers[TIMESTAMP_HEADER], raw)
        assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 30
        assert headers["Content-Type"] == "application/json"
    gaps = [b[0] - a[0] for a, b in zip(_Receiver.seen, _Receiver.seen[1:], strict=False)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38, gaps  # 0.2 s, then 0.4 s: exponential
    assert time.monotonic() - started < 5


def test_delivery_is_bounded_and_records_the_failure(receiver: str) -> None:
    _Receiver.script = [500] * 10
    record = Delivery(receiver, "ev-1")
    asyncio.run(
        deliver(
            event(
                status="failed",
                job_id="j",
                request_id=None,
                error={"message": "x"},
                event_id="ev-1",
            ),
            record,
            _settings(attempts=3),
        )
    )
    assert record.status == "failed" and record.attempts == 3 and len(_Receiver.seen) == 3
    assert record.last_status == 500 and "500" in (record.last_error or "")
    # the time bound too: a second wait of 0.4 s would pass retry_for=0.3
    _Receiver.seen.clear()
    record = Delivery(receiver, "ev-2")
    asyncio.run(
        deliver(
            event(status="cancelled", job_id="j", request_id=None),
            record,
            _settings(attempts=10, retry_for=0.3),
        )
    )
    assert record.status == "failed" and record.attempts == 2 and len(_Receiver.seen) == 2


def test_a_redirect_is_a_failure_not_followed(receiver: str) -> None:
    _Receiver.script = [302, 302]
    record = Delivery(receiver, "ev-3")
    asyncio.run(
        deliver(
            event(status="cancelled", job_id="j", request_id=None), record, _settings(attempts=2)
        )
    )
    assert record.status == "failed" and record.last_status == 302
    assert [h[":path"] for _, h, _ in _Receiver.seen] == ["/hook", "/hook"]  # never the Location


def test_delivery_refuses_an_address_the_policy_refuses(receiver: str) -> None:
    record = Delivery(receiver, "ev-4")
    asyncio.run(
        deliver(
            event(status="cancelled", job_id="j", request_id=None),
            record,
            _settings(policy=UrlPolicy()),
        )
    )
    assert (
        record.status == "failed"
        and record.attempts == 1
        and "loopback" in (record.last_error or "")
    )
    assert not _Receiver.seen
    shown = record.to_json()
    assert shown["url"] == receiver and shown["status"] == "failed"


def test_the_shown_url_drops_credentials_and_query() -> None:
    record = Delivery("https://user:pw@hooks.example.com:8443/h?token=abc", "e")
    assert record.to_json()["url"] == "https://hooks.example.com:8443/h?…"


def test_settings_from_env() -> None:
    s = WebhookSettings.from_env(
        {
            "COMFYPACK_WEBHOOK_SECRET": "zz-topsecret",
            "COMFYPACK_WEBHOOK_BACKOFF": "0.5",
            "COMFYPACK_WEBHOOK_ATTEMPTS": "4",
            "COMFYPACK_URL_ALLOW": "127.0.0.1",
        }
    )
    assert s.secret == "zz-topsecret" and s.backoff == 0.5 and s.attempts == 4
    assert s.policy.allow_networks and "zz-topsecret" not in repr(
        s
    )  # the secret never shows in logs
