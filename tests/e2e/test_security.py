"""Security of a served workflow (issue 11), against a real ``comfypack serve``.

The services attach to the session's headless ComfyUI (``--comfyui-url``): that worker is what a
URL input must never reach. A small HTTP server on 127.0.0.2 stands in for "the internet"; the
service allows exactly that address (``COMFYPACK_URL_ALLOW=127.0.0.2/32``), so every other
loopback name stays refused as it is by default.

Covered: URL inputs (non-public addresses in every spelling, a redirect to loopback, link-local
metadata, one deadline per fetch, fetches inside the queue and cancelled with the request);
images over the pixel limit refused before decoding; NaN/Infinity as the field's 422; only JSON
and multipart bodies (415); error bodies capped; request ids validated; ComfyUI's ``node_errors``
in a 200 answer honoured; a failing node reported as id, type and message without a traceback.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES, TEST_WORKFLOWS, bentoml_serve, http_server, png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

URL_TIMEOUT = 6.0
DOC = b"internal-only document"


class _Internet(http.server.BaseHTTPRequestHandler):
    """127.0.0.2: a public host as far as the service is concerned."""

    protocol_version = "HTTP/1.1"
    target = ""  # where /redirect sends the service (set by the fixture)
    drips: dict[str, float] = {}  # drip id → when its connection broke (monotonic)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/doc.txt":
            self._send(200, DOC)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", _Internet.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/drip/"):  # headers, then one byte every 0.25 s
            key = self.path.rsplit("/", 1)[1]
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                for _ in range(2000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.25)
            except OSError:
                _Internet.drips[key] = time.monotonic()
        else:
            self._send(404, b"no")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def internet() -> Iterator[str]:
    with http_server(_Internet, host="127.0.0.2") as url:
        yield url


@pytest.fixture(scope="module")
def served(comfyui: Any, internet: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    env = {
        "COMFYPACK_URL_ALLOW": "127.0.0.2/32",
        "COMFYPACK_URL_TIMEOUT": str(URL_TIMEOUT),
        "COMFYPACK_MAX_QUEUE": "1",
        "COMFYPACK_PIPELINE": "2",
        "COMFYPACK_TIMEOUT": "60",
    }
    with bentoml_serve(
        EXAMPLES / "image_mask_text" / "workflow_api.json",
        tmp_path_factory.mktemp("security"),
        env=env,
        comfyui_url=comfyui.url,
    ) as s:
        yield s


def _body(**fields: Any) -> dict[str, Any]:
    return {"image": base64.b64encode(png_bytes((8, 8))).decode(), "attachment": "eA==", **fields}


def _post(served: Any, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{served.url}/generate", json=body, timeout=60, **kw)


def _field_error(r: httpx.Response, field: str, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:2000])
    err: dict[str, Any] = r.json()["error"]
    assert field in [d.get("field") for d in err["details"]], err
    return err


# -- URL inputs -----------------------------------------------------------------------------------


def test_url_inputs_reach_public_addresses_only(served: Any, comfyui: Any, internet: str) -> None:
    # the control: the allowed host is fetched and its bytes come back as the File output
    r = _post(served, _body(attachment=f"{internet}/doc.txt"))
    assert r.status_code == 200, r.text[:2000]
    assert base64.b64decode(r.json()["attachment"].split(",", 1)[1]) == DOC

    worker = comfyui.url.removeprefix("http://")  # the service's own ComfyUI: its history, logs
    port = worker.rsplit(":", 1)[1]
    _Internet.target = f"http://127.0.0.1:{port}/history"
    cases = [
        f"http://{worker}/history",
        f"http://localhost:{port}/system_stats",
        f"http://2130706433:{port}/internal/logs",
        f"http://0.0.0.0:{port}/history",
        f"http://user@127.0.0.1:{port}/history",
        f"http://[::1]:{port}/history",
        f"http://[::ffff:127.0.0.1]:{port}/history",
        f"{internet}/redirect",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://192.168.0.1/x",
    ]
    for url in cases:
        r = _post(served, _body(attachment=url))
        err = _field_error(r, "attachment")
        assert "public addresses" in err["message"], (url, err)
        assert "data:" not in r.text and "prompt" not in r.text.lower(), (
            url
        )  # nothing fetched came back
    # an Image input is no port scanner either: closed and open ports answer alike
    for p in (port, "1"):
        err = _field_error(_post(served, _body(image=f"http://127.0.0.1:{p}/x.png")), "image")
        assert "public addresses" in err["message"]


def test_a_slow_url_is_cut_at_one_deadline(served: Any, internet: str) -> None:
    started = time.monotonic()
    err = _field_error(_post(served, _body(attachment=f"{internet}/drip/deadline")), "attachment")
    took = time.monotonic() - started
    assert f"longer than {URL_TIMEOUT:g} s" in err["message"]
    assert URL_TIMEOUT - 0.5 < took < URL_TIMEOUT + 4, took


def test_url_fetches_take_a_queue_place_and_end_with_their_request(
    served: Any, internet: str
) -> None:
    """One worker, 2 pipeline slots, COMFYPACK_MAX_QUEUE=1: three requests may be fetching; a
    fourth is refused at once, before fetching. A caller that goes away ends its fetch."""

    def slow(i: int) -> int:
        return _post(served, _body(attachment=f"{internet}/drip/q{i}")).status_code

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        slows = [pool.submit(slow, i) for i in range(3)]
        time.sleep(1.5)
        started = time.monotonic()
        r = _post(served, _body(attachment=f"{internet}/doc.txt"))
        assert r.status_code == 503 and r.json()["error"]["type"] == "overloaded", r.text
        assert "Retry-After" in r.headers and time.monotonic() - started < 2
        assert [f.result() for f in slows] == [422, 422, 422]  # each cut at its deadline

    # a caller that disconnects after 1 s: its fetch stops then, not at the deadline
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{served.url}/generate", json=_body(attachment=f"{internet}/drip/gone"), timeout=1.0
        )
    deadline = time.monotonic() + URL_TIMEOUT
    while "gone" not in _Internet.drips and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "gone" in _Internet.drips, "the fetch outlived its request"
    assert _Internet.drips["gone"] - started < URL_TIMEOUT - 1.5, _Internet.drips["gone"] - started
    # and the queue is free again
    assert _post(served, _body()).status_code == 200


# -- images ---------------------------------------------------------------------------------------


def _huge_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # 1 bit per pixel: a small file
    return buf.getvalue()


@pytest.mark.parametrize("side", [9000, 12000])
def test_images_over_the_pixel_limit_are_refused_before_decoding(served: Any, side: int) -> None:
    data = _huge_png(side)
    assert len(data) < 2_000_000
    started = time.monotonic()
    r = httpx.post(
        f"{served.url}/generate",
        files={"image": ("big.png", data, "image/png")},
        data={"attachment": "eA=="},
        timeout=60,
    )
    err = _field_error(r, "image", 413)
    assert f"{side}×{side}" in err["message"] and "Mpx" in err["message"]
    assert time.monotonic() - started < 5


# -- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_the_fields_422(served: Any, literal: str) -> None:
    raw = json.dumps(_body())[:-1] + f', "noise": {literal}}}'
    r = httpx.post(
        f"{served.url}/generate",
        content=raw,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    err = _field_error(r, "noise")
    assert "finite" in err["message"]
    r = httpx.post(
        f"{served.url}/generate",
        data={"attachment": "eA==", "noise": literal.lower()},
        files={"image": ("a.png", png_bytes((8, 8)), "image/png")},
        timeout=60,
    )
    _field_error(r, "noise")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_and_multipart_bodies(served: Any, content_type: str | None) -> None:
    raw = json.dumps(_body()).encode()
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/generate", "/generate/submit"):
        r = httpx.post(f"{served.url}{path}", content=raw, headers=headers, timeout=60)
        assert r.status_code == 415, (path, r.status_code, r.text[:500])
        assert r.json()["error"]["type"] == "unsupported_media_type"


def test_error_bodies_are_capped(served: Any) -> None:
    many = _body(**{f"k{i}": 1 for i in range(100_000)})
    r = _post(served, many)
    assert r.status_code == 422 and len(r.content) < 20_000, len(r.content)
    assert "100000" in r.text or "99980 more" in r.text
    r = _post(served, _body(caption=["x" * 10] * 5_000_000))  # ~70 MB body, a list where text goes
    assert r.status_code == 422 and len(r.content) < 20_000, len(r.content)
    deep = "[" * 100_000 + "]" * 100_000
    r = httpx.post(
        f"{served.url}/generate",
        content=deep,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 400 and "nests deeper" in r.json()["error"]["message"]


def test_request_ids_are_checked_before_they_are_logged(served: Any) -> None:
    r = _post(served, _body(), headers={"X-Request-ID": "client-42.a_b:c"})
    assert r.headers["X-Request-ID"] == "client-42.a_b:c"
    for bad in ["x" * 60_000, "forged request_id=admin outcome=ok", "ünïcode".encode()]:
        r = _post(served, _body(), headers={"X-Request-ID": bad})
        assert r.status_code == 200
        replaced = r.headers["X-Request-ID"]
        assert replaced not in (bad, "ünïcode") and len(replaced) == 32 and int(replaced, 16) >= 0
    time.sleep(0.5)
    log = served.log.read_text(errors="replace")
    assert "forged request_id=admin" not in log and "x" * 1000 not in log


# -- ComfyUI's answers ----------------------------------------------------------------------------


def test_node_errors_in_a_200_prompt_answer_are_honoured(comfyui: Any, tmp_path: Path) -> None:
    """One output is valid, one is not: ComfyUI queues the valid part and answers 200 with
    node_errors. That is a rejected prompt (4xx with the node errors), never a half run."""
    with bentoml_serve(
        TEST_WORKFLOWS / "partly_invalid.json", tmp_path, comfyui_url=comfyui.url
    ) as s:
        r = httpx.post(f"{s.url}/generate", json={"text": "hello"}, timeout=60)
    assert r.status_code == 400, r.text[:2000]
    err = r.json()["error"]
    assert err["type"] == "prompt_rejected"
    assert set(err["details"]["node_errors"]) & {"3", "4"}, err


def test_a_failing_node_is_reported_without_a_traceback(comfyui: Any, tmp_path: Path) -> None:
    with bentoml_serve(TEST_WORKFLOWS / "node_fails.json", tmp_path, comfyui_url=comfyui.url) as s:
        r = httpx.post(f"{s.url}/generate", json={"path": "no/such/file.bin"}, timeout=60)
        time.sleep(0.5)
        log = s.log.read_text(errors="replace")
    assert r.status_code == 500, r.text[:2000]
    err = r.json()["error"]
    assert err["type"] == "execution_failed"
    details = err["details"]
    assert details["node_id"] == "2" and details["node_type"] == "ComfyPackOutputFile"
    assert details["exception_message"]
    assert "traceback" not in details and "Traceback" not in r.text and 'File "' not in r.text
    assert "Traceback" in log or 'File "' in log  # the operator still gets it
