"""Fetch a URL input safely: public addresses only, one checked connection per hop, bounded.

A URL input is fetched on the service's side, so a URL that points *inward* (the service's own
ComfyUI worker on 127.0.0.1, a database on 10.x, cloud metadata on 169.254.169.254) would hand
the caller what only the service can reach. :func:`fetch_url` therefore:

1. resolves the host itself and refuses it unless **every** address it resolves to is public
   (:func:`address_problem`: loopback, private, shared, link-local, multicast, reserved,
   unspecified, and the IPv6 forms that embed one — IPv4-mapped, 6to4, NAT64, Teredo);
2. connects to exactly the addresses it checked (a pinned resolver: a second DNS answer cannot
   switch the connection to another address); proxies from the environment are ignored;
3. follows redirects itself, checking every hop the same way;
4. holds the whole fetch — every hop, every byte — to one deadline and one size cap.

Operators who need internal hosts list them in :class:`UrlPolicy` (``COMFYPACK_URL_ALLOW``: IP
addresses, CIDR networks, host names, ``.suffix`` domains). Refusals are
:class:`~comfypack.errors.InputFetchError` naming the field (422; 413 for the size cap).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputFetchError

__all__ = [
    "UrlPolicy",
    "address_problem",
    "fetch_url",
    "check_url",
    "pinned_connector",
    "Resolve",
    "DEFAULT_URL_TIMEOUT",
]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses``: how host names are resolved (swappable in tests)
Resolve = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_URL_TIMEOUT = 30.0
_REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``, …), or ``None``."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: IPAddress | None = None
        form = ""
        if ip.ipv4_mapped is not None:
            embedded, form = ip.ipv4_mapped, "IPv4-mapped"
        elif ip.sixtofour is not None:
            embedded, form = ip.sixtofour, "6to4"
        elif ip in _NAT64:
            embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        elif ip.teredo is not None:
            return "Teredo (tunnels to an address that cannot be checked)"
        elif ip in _NAT64_LOCAL:
            return "local-use NAT64"
        if embedded is not None:
            inner = address_problem(embedded)
            return f"{form} {inner} ({embedded})" if inner else None
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("shared address space", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
    )
    for name, hit in checks:
        if hit:
            return name
    if not ip.is_global:
        return "not globally reachable"
    return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone id is not the address
    except ValueError:
        return None


@dataclass(frozen=True)
class UrlPolicy:
    """Where URL inputs may go and how much they may take.

    ``allow_networks`` / ``allow_hosts``: reachable even though not public (``allow_hosts``
    entries are exact host names, or ``.example.com`` for that domain and its subdomains).
    ``max_bytes``: the most one fetch may read; ``timeout``: seconds for the whole fetch
    (connects, redirects and body together); ``max_redirects``: hops followed.
    """

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 100 * 1024 * 1024
    timeout: float = DEFAULT_URL_TIMEOUT
    max_redirects: int = 5

    @staticmethod
    def parse_allow(text: str) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
        """``"10.0.0.0/8, 127.0.0.1, files.internal, .corp.example"`` → (networks, hosts)."""
        nets: list[IPNetwork] = []
        hosts: list[str] = []
        for item in (t.strip() for t in text.replace(";", ",").split(",")):
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                name = item.lower().rstrip(".")
                if not name or any(c in name for c in "/@:* "):
                    raise ValueError(
                        f"COMFYPACK_URL_ALLOW: {item!r} is neither an IP address, a "
                        "CIDR network, a host name nor a .domain suffix"
                    ) from None
                hosts.append(name)
        return tuple(nets), tuple(hosts)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, max_bytes: int | None = None
    ) -> UrlPolicy:
        """``COMFYPACK_URL_ALLOW`` (allow-list), ``COMFYPACK_URL_TIMEOUT`` (s, default 30),
        ``COMFYPACK_URL_MAX_BYTES`` (default ``max_bytes``, else 100 MB)."""
        env = os.environ if env is None else env
        nets, hosts = cls.parse_allow(env.get("COMFYPACK_URL_ALLOW", ""))
        cap = env.get("COMFYPACK_URL_MAX_BYTES")
        return cls(
            allow_networks=nets,
            allow_hosts=hosts,
            max_bytes=int(cap) if cap else (max_bytes or cls.max_bytes),
            timeout=float(env.get("COMFYPACK_URL_TIMEOUT") or DEFAULT_URL_TIMEOUT),
        )

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(
            host == h or (h.startswith(".") and (host.endswith(h) or host == h[1:]))
            for h in self.allow_hosts
        )

    def refusal(self, ip: IPAddress) -> str | None:
        """Why this policy refuses ``ip`` (``None``: allowed)."""
        if any(ip.version == n.version and ip in n for n in self.allow_networks):
            return None
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if mapped is not None and any(n.version == 4 and mapped in n for n in self.allow_networks):
            return None
        return address_problem(ip)


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedResolver:
    """aiohttp resolver that answers only with the addresses :func:`fetch_url` checked."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self.host = host
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[dict[str, Any]]:
        if host != self.host:  # never happens: one connector per hop
            raise OSError(f"refusing to resolve {host!r}: not the checked host")
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


def _shown(url: Any) -> str:
    """The URL for messages: no credentials, at most 200 characters."""
    text = str(url.with_user(None)) if getattr(url, "user", None) else str(url)
    return text if len(text) <= 200 else text[:200] + "…"


async def _checked_addresses(
    url: Any, field: str, policy: UrlPolicy, resolve: Resolve
) -> list[str]:
    host = url.raw_host or ""
    if not host:
        raise InputFetchError.for_field(field, f"{_shown(url)} has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    literal = _parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as e:
            raise InputFetchError.for_field(
                field, f"cannot resolve the host of {_shown(url)}"
            ) from e
        if not addresses:
            raise InputFetchError.for_field(field, f"cannot resolve the host of {_shown(url)}")
    if literal is None and policy.host_allowed(host):
        return addresses
    for text in addresses:
        ip = _parse_ip(text)
        why = "not an IP address" if ip is None else policy.refusal(ip)
        if why is not None:
            raise InputFetchError.for_field(
                field,
                f"{_shown(url)} reaches {text}, a {why} address; URL inputs may only reach "
                "public addresses (an operator can allow hosts with COMFYPACK_URL_ALLOW)",
                status=422,
            )
    return addresses


async def check_url(
    url: Any, field: str, policy: UrlPolicy, *, resolve: Resolve | None = None
) -> list[str]:
    """The addresses ``url`` (a :class:`yarl.URL`) may be reached at under ``policy``: every one
    it resolves to is public or allow-listed, else :class:`InputFetchError` naming ``field``.
    The one check for every URL the service reaches on a caller's behalf (URL inputs, callbacks)."""
    return await _checked_addresses(url, field, policy, resolve or _system_resolve)


def pinned_connector(url: Any, addresses: list[str], *, ssl: Any = True) -> Any:
    """An aiohttp connector for one request to ``url`` that connects only to ``addresses`` (the
    ones :func:`check_url` checked), with no DNS cache and no connection reuse."""
    import aiohttp

    return aiohttp.TCPConnector(
        resolver=_PinnedResolver(url.raw_host, addresses),  # type: ignore[arg-type]
        use_dns_cache=False,
        ssl=ssl,
        limit=1,
        force_close=True,
    )


async def fetch_url(
    url: str,
    field: str,
    policy: UrlPolicy | None = None,
    *,
    resolve: Resolve | None = None,
    ssl: Any = True,
) -> tuple[bytes, str | None]:
    """GET an http(s) ``url`` under ``policy``; returns ``(body, content type)``."""
    policy = policy or UrlPolicy()
    try:
        return await asyncio.wait_for(
            _fetch(url, field, policy, resolve or _system_resolve, ssl), policy.timeout
        )
    except asyncio.TimeoutError:
        raise InputFetchError.for_field(
            field,
            f"fetching the URL took longer than {policy.timeout:g} s (the limit for the whole "
            "fetch)",
        ) from None


async def _fetch(
    raw: str, field: str, policy: UrlPolicy, resolve: Resolve, ssl: Any
) -> tuple[bytes, str | None]:
    import aiohttp
    from yarl import URL

    try:
        url = URL(raw.strip())
    except (ValueError, TypeError) as e:
        raise InputFetchError.for_field(field, "is not a valid URL") from e
    for hop in range(policy.max_redirects + 1):
        if url.scheme not in ("http", "https"):
            raise InputFetchError.for_field(
                field, "redirected to a non-http(s) URL" if hop else "must be an http(s) URL"
            )
        addresses = await _checked_addresses(url, field, policy, resolve)
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(url.raw_host, addresses),  # type: ignore[arg-type]
            use_dns_cache=False,
            ssl=ssl,
            limit=1,
            force_close=True,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
        ) as session:
            try:
                resp = await session.get(
                    url,
                    allow_redirects=False,
                    headers={"Accept-Encoding": "identity", "User-Agent": "comfypack-url-input"},
                )
            except (aiohttp.ClientError, OSError) as e:
                logger.debug("fetching %s failed: %r", _shown(url), e)
                raise InputFetchError.for_field(
                    field, f"cannot fetch {_shown(url)}: the connection failed"
                ) from e
            async with resp:
                if resp.status in _REDIRECTS and resp.headers.get("Location"):
                    try:
                        url = url.join(URL(resp.headers["Location"]))
                    except (ValueError, TypeError) as e:
                        raise InputFetchError.for_field(
                            field, "redirected to an invalid URL"
                        ) from e
                    continue
                if resp.status != 200:
                    raise InputFetchError.for_field(
                        field, f"fetching {_shown(url)} answered HTTP {resp.status}"
                    )
                return await _read_capped(resp, url, field, policy), resp.headers.get(
                    "Content-Type"
                )
    raise InputFetchError.for_field(field, f"more than {policy.max_redirects} redirects")


async def _read_capped(resp: Any, url: Any, field: str, policy: UrlPolicy) -> bytes:
    import aiohttp

    too_big = InputFetchError.for_field(
        field, f"the file at {_shown(url)} is larger than {policy.max_bytes} bytes", status=413
    )
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > policy.max_bytes:
                raise too_big
            chunks.append(chunk)
    except (aiohttp.ClientError, OSError) as e:
        raise InputFetchError.for_field(
            field, f"cannot fetch {_shown(url)}: the transfer broke off"
        ) from e
    return b"".join(chunks)
