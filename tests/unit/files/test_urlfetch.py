"""comfypack.files.urlfetch: URL inputs reach public addresses only, on the address that was checked.

A local HTTP server on 127.0.0.1 stands in for "a host": by default every way of naming it is
refused before a connection is made (the server counts what reaches it); with an allow-list it
is fetched. The resolver is swapped where a test needs DNS answers (a rebinding name).
"""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import http_server

from comfypack.errors import InputFetchError
from comfypack.files.urlfetch import UrlPolicy, address_problem, fetch_url

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[tuple[str, str]] = []
    port = 0

    def do_GET(self) -> None:  # noqa: N802
        _Handler.hits.append((self.path, self.headers.get("Host", "")))
        if self.path == "/pic.png":
            self._send(200, {"Content-Type": "image/png"}, PNG)
        elif self.path == "/to-loopback":
            self._send(302, {"Location": f"http://127.0.0.1:{_Handler.port}/pic.png"}, b"")
        elif self.path == "/drip":  # headers, then a byte every 0.3 s for ever
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                return
        elif self.path == "/chunked-big":  # no Content-Length: the cap counts what arrives
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"y" * 10_000)
            except OSError:
                return
            self.close_connection = True
        else:
            self._send(404, {}, b"no")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with http_server(_Handler) as url:
        _Handler.port = int(url.rsplit(":", 1)[1])
        yield _Handler.port


def fetch(url: str, policy: UrlPolicy | None = None, **kw: Any) -> bytes:
    return asyncio.run(fetch_url(url, "image", policy, **kw))[0]


def refused(url: str, policy: UrlPolicy | None = None, **kw: Any) -> InputFetchError:
    with pytest.raises(InputFetchError) as info:
        fetch(url, policy, **kw)
    assert info.value.fields == ["image"] and info.value.status in (413, 422)
    return info.value


LOOPBACK_ONLY = UrlPolicy(*UrlPolicy.parse_allow("127.0.0.1"))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "64:ff9b::a00:1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",
        "::127.0.0.1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "2002:808:808::1",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_every_way_of_naming_this_machine_is_refused_before_connecting(port: int) -> None:
    _Handler.hits.clear()
    for url in [
        f"http://127.0.0.1:{port}/pic.png",
        f"http://localhost:{port}/pic.png",
        f"http://2130706433:{port}/pic.png",
        f"http://0x7f.1:{port}/pic.png",
        f"http://0.0.0.0:{port}/pic.png",
        f"http://user@127.0.0.1:{port}/pic.png",
        f"http://user:pw@localhost:{port}/pic.png",
        f"http://[::1]:{port}/pic.png",
        f"http://[::ffff:127.0.0.1]:{port}/pic.png",
        f"http://127.1:{port}/pic.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/x",
    ]:
        err = refused(url)
        assert "public addresses" in err.message, (url, err.message)
        assert "user" not in err.message and "pw" not in err.message
    assert _Handler.hits == []  # not one connection reached the server


def test_the_allow_list_lets_an_operator_reach_internal_hosts(port: int) -> None:
    assert fetch(f"http://127.0.0.1:{port}/pic.png", LOOPBACK_ONLY) == PNG
    by_name = UrlPolicy(*UrlPolicy.parse_allow("localhost"))
    assert fetch(f"http://localhost:{port}/pic.png", by_name) == PNG
    assert UrlPolicy.parse_allow(" 10.0.0.0/8; files.internal,.corp.example ,[::1]") == (
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")),
        ("files.internal", ".corp.example"),
    )
    assert UrlPolicy(allow_hosts=(".corp.example",)).host_allowed("a.b.corp.example")
    assert not UrlPolicy(allow_hosts=(".corp.example",)).host_allowed("corp.example.evil")
    with pytest.raises(ValueError, match="COMFYPACK_URL_ALLOW"):
        UrlPolicy.parse_allow("http://x/")
    policy = UrlPolicy.from_env(
        {
            "COMFYPACK_URL_ALLOW": "127.0.0.1/32",
            "COMFYPACK_URL_TIMEOUT": "7",
            "COMFYPACK_URL_MAX_BYTES": "123",
        }
    )
    assert (policy.timeout, policy.max_bytes) == (7.0, 123)


def test_every_redirect_hop_is_checked(port: int) -> None:
    """The first hop is allowed (by name); it redirects to 127.0.0.1, which is not."""

    async def dns(host: str, p: int) -> list[str]:
        return ["127.0.0.1"]

    policy = UrlPolicy(allow_hosts=("files.test",))
    _Handler.hits.clear()
    err = refused(f"http://files.test:{port}/to-loopback", policy, resolve=dns)
    assert "127.0.0.1" in err.message and "loopback" in err.message
    assert [path for path, _ in _Handler.hits] == ["/to-loopback"]  # the second hop never connected


def test_the_connection_goes_to_the_address_that_was_checked(port: int) -> None:
    """A rebinding name answers 127.0.0.1 (allowed here) once, then 10.0.0.1: the fetch asks DNS
    once per hop and connects to what it checked."""
    answers = [["127.0.0.1"]]
    asked: list[str] = []

    async def dns(host: str, p: int) -> list[str]:
        asked.append(host)
        return answers.pop(0) if answers else ["10.0.0.1"]

    _Handler.hits.clear()
    assert fetch(f"http://rebind.test:{port}/pic.png", LOOPBACK_ONLY, resolve=dns) == PNG
    assert asked == ["rebind.test"]
    assert _Handler.hits == [("/pic.png", f"rebind.test:{port}")]
    err = refused(f"http://rebind.test:{port}/pic.png", LOOPBACK_ONLY, resolve=dns)  # now: 10.0.0.1
    assert "10.0.0.1" in err.message and "private" in err.message


def test_one_answer_that_is_not_public_refuses_the_host(port: int) -> None:
    async def dns(host: str, p: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    assert "127.0.0.1" in refused(f"http://mixed.test:{port}/pic.png", resolve=dns).message


def test_one_deadline_for_the_whole_fetch(port: int) -> None:
    """A server that sends a byte every 0.3 s never trips a per-read timeout; the deadline holds."""
    started = time.monotonic()
    err = refused(
        f"http://127.0.0.1:{port}/drip", UrlPolicy(LOOPBACK_ONLY.allow_networks, timeout=1.5)
    )
    took = time.monotonic() - started
    assert "longer than 1.5 s" in err.message
    assert took < 3.0, took


def test_the_size_cap_counts_the_whole_body(port: int) -> None:
    small = UrlPolicy(LOOPBACK_ONLY.allow_networks, max_bytes=50_000)
    err = refused(f"http://127.0.0.1:{port}/chunked-big", small)
    assert err.status == 413 and "larger than 50000 bytes" in err.message


def test_proxies_from_the_environment_are_not_used(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert fetch(f"http://127.0.0.1:{port}/pic.png", LOOPBACK_ONLY) == PNG


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost"])
def test_only_http_urls_with_a_host(url: str) -> None:
    refused(url)
