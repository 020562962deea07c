"""End to end: completion webhooks from a real `comfypack serve` to a local HTTP receiver.

Two services run over the session's real headless ComfyUI (attached by URL): the sleep workflow
(a job that completes, and one cancelled mid-run) and a workflow whose node fails on a missing
file (a job that fails). The receiver is an HTTP server on 127.0.0.1 that records every POST and
answers with a status scripted per path (``/fail2/…`` fails the first two attempts). Signatures
are checked here with an independent HMAC, not with comfypack's helper.

The receiver is on loopback, which callback URLs may not reach by default: the services run with
``COMFYPACK_URL_ALLOW=127.0.0.1/32`` — the operator's allow-list, the policy working — and a
test shows a private address is still refused.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TEST_WORKFLOWS, Served, bentoml_serve, http_server

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret-0123456789"
SETTINGS = {
    "COMFYPACK_WEBHOOK_SECRET": SECRET,
    "COMFYPACK_URL_ALLOW": "127.0.0.1/32",
    "COMFYPACK_WEBHOOK_BACKOFF": "0.3",
    "COMFYPACK_WEBHOOK_TIMEOUT": "5",
}


class _Receiver(http.server.BaseHTTPRequestHandler):
    lock = threading.Lock()
    got: list[dict[str, Any]] = []  # {"path", "headers", "body", "status", "at"}

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            earlier = sum(1 for g in self.got if g["path"] == self.path)
            status = 500 if self.path.startswith("/fail2/") and earlier < 2 else 204
            self.got.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "status": status,
                    "at": time.time(),
                }
            )
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    _Receiver.got = []
    with http_server(_Receiver) as url:
        yield url


@pytest.fixture(scope="module")
def sleepy(comfyui: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with bentoml_serve(
        TEST_WORKFLOWS / "sleep_echo.json",
        tmp_path_factory.mktemp("hooks"),
        env=SETTINGS,
        comfyui_url=comfyui.url,
    ) as served:  # type: ignore[attr-defined]
        yield served


def _deliveries(path: str, n: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The first ``n`` POSTs the receiver got on ``path`` (waiting for them, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        with _Receiver.lock:
            hits = [g for g in _Receiver.got if g["path"] == path]
        if len(hits) >= n:
            return hits
        assert time.monotonic() < deadline, (
            f"{len(hits)} of {n} deliveries to {path} in {timeout} s"
        )
        time.sleep(0.1)


def _verified(hit: dict[str, Any]) -> dict[str, Any]:
    """The event, after checking its signature: HMAC-SHA256 over "<timestamp>.<body>"."""
    ts = hit["headers"]["x-comfypack-webhook-timestamp"]
    expected = hmac.new(
        SECRET.encode(), ts.encode() + b"." + hit["body"], hashlib.sha256
    ).hexdigest()
    assert hit["headers"]["x-comfypack-webhook-signature"] == f"v1={expected}"
    assert abs(int(ts) - time.time()) < 60  # fresh: receivers refuse old timestamps (replays)
    assert hit["headers"]["content-type"] == "application/json"
    event: dict[str, Any] = json.loads(hit["body"])
    assert hit["headers"]["x-comfypack-webhook-id"] == event["id"]
    return event


def _submit(served: Served, body: dict[str, Any], callback: str) -> str:
    r = httpx.post(
        f"{served.url}/generate/submit",
        json=body,
        timeout=30,
        headers={"X-ComfyPack-Callback-Url": callback},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["task_id"])


def _webhook_state(
    served: Served, task_id: str, want: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{served.url}/generate/progress", params={"task_id": task_id}).json()
        if (state.get("webhook") or {}).get("status") == want:
            return dict(state["webhook"])
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_a_finished_job_sends_a_signed_event(sleepy: Served, receiver: str) -> None:
    task_id = _submit(sleepy, {"text": "done", "seconds": 0.2}, f"{receiver}/done")
    (hit,) = _deliveries("/done")
    event = _verified(hit)
    assert event["type"] == "job.completed" and event["status"] == "completed"
    assert event["job_id"] == task_id and event["outputs"] == {"text": "done"}
    assert event["timings"]["duration_ms"] >= 200
    webhook = _webhook_state(sleepy, task_id, "delivered")
    assert (
        webhook["attempts"] == 1
        and webhook["last_status"] == 204
        and webhook["event_id"] == event["id"]
    )
    result = httpx.get(f"{sleepy.url}/generate/get", params={"task_id": task_id})
    assert result.json() == {"text": "done"}  # the answer itself is unchanged


def test_a_receiver_that_fails_twice_still_gets_the_event(sleepy: Served, receiver: str) -> None:
    task_id = _submit(sleepy, {"text": "retry", "seconds": 0}, f"{receiver}/fail2/a")
    hits = _deliveries("/fail2/a", 3)
    assert [h["status"] for h in hits] == [500, 500, 204]
    events = [_verified(h) for h in hits]  # every attempt is signed (with its own timestamp)
    assert all(e == events[0] for e in events)  # the same event: receivers de-duplicate on its id
    assert events[0]["job_id"] == task_id and events[0]["outputs"] == {"text": "retry"}
    gaps = [b["at"] - a["at"] for a, b in zip(hits, hits[1:], strict=False)]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5, gaps  # backoff 0.3 s, then 0.6 s
    webhook = _webhook_state(sleepy, task_id, "delivered")
    assert webhook["attempts"] == 3


def test_a_cancelled_job_sends_its_event(sleepy: Served, receiver: str) -> None:
    task_id = _submit(sleepy, {"text": "x", "seconds": 30}, f"{receiver}/cancelled")
    deadline = time.monotonic() + 30
    while (
        httpx.get(f"{sleepy.url}/generate/progress", params={"task_id": task_id})
        .json()
        .get("status")
        != "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (
        httpx.put(f"{sleepy.url}/generate/cancel", params={"task_id": task_id}).status_code == 200
    )
    (hit,) = _deliveries("/cancelled", timeout=15)
    event = _verified(hit)
    assert event["type"] == "job.cancelled" and event["job_id"] == task_id
    assert event["error"]["type"] == "cancelled" and "outputs" not in event


def test_a_synchronous_call_may_ask_for_the_event_too(sleepy: Served, receiver: str) -> None:
    r = httpx.post(
        f"{sleepy.url}/generate",
        json={"text": "sync", "seconds": 0},
        timeout=30,
        headers={"X-ComfyPack-Callback-Url": f"{receiver}/sync", "X-Request-ID": "sync-req-1"},
    )
    assert r.status_code == 200 and r.json() == {"text": "sync"}
    event = _verified(_deliveries("/sync")[0])
    assert event["request_id"] == "sync-req-1" and event["job_id"] is None
    assert event["outputs"] == {"text": "sync"}


def test_callbacks_obey_the_address_policy(sleepy: Served, receiver: str) -> None:
    for url, why in (
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest", "link-local"),
        ("ftp://example.com/x", "http(s)"),
    ):
        r = httpx.post(
            f"{sleepy.url}/generate/submit",
            json={"text": "no", "seconds": 0},
            headers={"X-ComfyPack-Callback-Url": url},
            timeout=30,
        )
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert why in err["message"] and err["details"][0]["field"] == "callback_url", err
    r = httpx.post(
        f"{sleepy.url}/generate",
        json={"text": "no", "seconds": 0},
        headers={"X-ComfyPack-Callback-Url": "http://10.1.2.3/hook"},
        timeout=30,
    )
    assert r.status_code == 422
    with _Receiver.lock:
        assert not [g for g in _Receiver.got if g["path"] == "/hook"]


def test_a_failed_job_sends_its_event(comfyui: object, receiver: str, tmp_path: Path) -> None:
    with bentoml_serve(
        TEST_WORKFLOWS / "node_fails.json", tmp_path, env=SETTINGS, comfyui_url=comfyui.url
    ) as served:  # type: ignore[attr-defined]
        task_id = _submit(served, {"path": "/nonexistent/missing.bin"}, f"{receiver}/failed")
        event = _verified(_deliveries("/failed")[0])
        assert (
            event["type"] == "job.failed" and event["job_id"] == task_id and "outputs" not in event
        )
        assert event["error"]["type"] and event["error"]["message"], event
        status = httpx.get(f"{served.url}/generate/get", params={"task_id": task_id})
        assert (
            status.status_code >= 400 and status.json()["error"]["type"] == event["error"]["type"]
        )
        assert _webhook_state(served, task_id, "delivered")["attempts"] == 1


def test_without_a_secret_callbacks_are_refused(
    comfyui: object, tmp_path: Path, receiver: str
) -> None:
    env = {k: v for k, v in SETTINGS.items() if k != "COMFYPACK_WEBHOOK_SECRET"}
    with bentoml_serve(
        TEST_WORKFLOWS / "sleep_echo.json",
        tmp_path,
        env={**env, "COMFYPACK_WEBHOOK_SECRET": ""},
        comfyui_url=comfyui.url,
    ) as served:  # type: ignore[attr-defined]
        r = httpx.post(
            f"{served.url}/generate/submit",
            json={"text": "x", "seconds": 0},
            headers={"X-ComfyPack-Callback-Url": f"{receiver}/nosecret"},
            timeout=30,
        )
        assert r.status_code == 422 and "COMFYPACK_WEBHOOK_SECRET" in r.json()["error"]["message"]
