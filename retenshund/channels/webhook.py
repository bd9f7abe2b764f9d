"""Webhook step: POST a signed JSON body to the app's own URL, safely.

An automation step ``{"webhook": {"url", "body", "headers"}}`` ends up in
:func:`call_webhook`. Three concerns shape this module:

- **Signing** follows the Standard Webhooks spec (https://www.standardwebhooks.com):
  ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64
  HMAC-SHA256 of "{id}.{timestamp}.{payload}">``, so receivers can use any
  Standard Webhooks library. The id is the caller's and stays the same across
  retries, which is what receivers dedupe on.
- **SSRF**: the URL is chosen by whoever edits automations, so without a guard
  the daemon becomes a proxy into its own network (cloud metadata at
  169.254.169.254, admin ports on localhost, RFC 1918 services). The check
  lives in the network backend (:class:`GuardedNetworkBackend`) that opens the
  TCP connection: it resolves the host itself, refuses if *any* resolved
  address is forbidden, then connects to the checked IP literal, so nothing
  resolves the name a second time (no DNS-rebinding window), and finally looks
  at the peer address of the socket it got. The URL's hostname still goes into
  the ``Host`` header and into TLS SNI and certificate verification, because
  httpcore takes those from the request origin, not from the backend.
- **Bounded cost**: no redirects (a 3xx could point anywhere, and following it
  would re-open the SSRF question), one overall deadline, and at most
  :data:`RESPONSE_CAP` bytes of an error response read for the detail text.

``allow_private=True`` switches the address check off, for self-hosters whose
webhooks target internal services.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
import msgspec

from retenshund import __version__

log = logging.getLogger(__name__)

__all__ = [
    "RESPONSE_CAP",
    "USER_AGENT",
    "AddressRefusedError",
    "GuardedNetworkBackend",
    "Resolver",
    "WebhookClient",
    "WebhookResult",
    "call_webhook",
    "refusal_reason",
    "sign_standard_webhook",
    "system_resolver",
    "verify_standard_webhook",
]

USER_AGENT = f"retenshun-webhook/{__version__}"

# Enough of an error page to explain a failure; a receiver cannot make us
# buffer more than this however big (or endless) its response is.
RESPONSE_CAP = 64 * 1024
# How much of that goes into WebhookResult.detail, which ends up in logs/UI.
_DETAIL_SNIPPET = 300

# Standard Webhooks receivers reject timestamps more than 5 minutes away.
DEFAULT_TOLERANCE_S = 300

# (host, port) -> IP address strings, in preference order.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Headers this module owns. A step's ``headers`` may not set them: the
# signature headers must match what was signed, and the framing/routing ones
# would let a step smuggle a different request or Host past the check.
_MANAGED_HEADERS = frozenset({
    "webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent",
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
    "upgrade", "expect", "proxy-connection", "proxy-authorization", "accept-encoding",
})
# RFC 9110 token characters for field names.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Visible ASCII, space and tab: anything else is either a protocol error or an
# encoding question we do not want to answer on the receiver's behalf.
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")

# Names that point at the daemon's own host or the cloud metadata service
# whatever DNS says; refused before any lookup.
_BLOCKED_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata.google.internal"})

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_PRIVATE_V4 = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
)
_UNIQUE_LOCAL_V6 = ipaddress.IPv6Network("fc00::/7")


# --------------------------------------------------------------------------- signing


def sign_standard_webhook(secret: bytes, webhook_id: str, timestamp: int, payload: bytes) -> str:
    """The ``webhook-signature`` header value for one message.

    ``secret`` is the raw HMAC key, i.e. what follows ``whsec_`` after base64
    decoding.
    """
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, payload)
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_standard_webhook(
    secret: bytes,
    headers: Mapping[str, str],
    payload: bytes,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver does: check the signature and that the timestamp is fresh.

    ``headers`` keys are matched case-insensitively. Any one of the
    space-separated ``v1,`` signatures matching is enough, as the spec allows
    several during key rotation.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        webhook_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign_standard_webhook(secret, webhook_id, timestamp, payload)
    # compare_digest on every candidate: no early exit that leaks timing.
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


# --------------------------------------------------------------------------- address policy


def refusal_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` may not be called (``"is a private address"``), or ``None``.

    Tunnelled IPv6 forms (IPv4-mapped, NAT64, 6to4) are judged by the IPv4
    address they reach, so ``::ffff:10.0.0.5`` is as private as ``10.0.0.5``
    and the NAT64 form of a public address stays callable (IPv6-only hosts
    reach every IPv4-only receiver that way).
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            noun = _v4_kind(embedded)
            return None if noun is None else f"embeds {embedded}, {noun}"
        noun = _v6_kind(ip)
    else:
        noun = _v4_kind(ip)
    return None if noun is None else f"is {noun}"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _v4_kind(ip: ipaddress.IPv4Address) -> str | None:
    # Most specific first, so the detail names the reason an operator would
    # recognise; the final is_global test catches the long tail (documentation
    # ranges, 0.0.0.0/8, benchmarking, ...).
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip == _METADATA:
        return "the link-local cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in net for net in _PRIVATE_V4):
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _v6_kind(ip: ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _UNIQUE_LOCAL_V6:
        return "a private address"
    if ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _normalise_host(host: str) -> str:
    return host.rstrip(".").lower()


def _blocked_name(host: str) -> bool:
    name = _normalise_host(host)
    # RFC 6761: every *.localhost name is loopback, whatever a resolver says.
    return name in _BLOCKED_NAMES or name.endswith(".localhost")


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class AddressRefusedError(httpx.ConnectError):
    """The URL's host is, or resolves to, an address webhooks may not reach.

    A ``ConnectError`` so generic httpx error handling treats it as a failed
    connection; :func:`call_webhook` turns it into a non-retryable result.
    """

    def __init__(self, host: str, address: str | None, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if address is None:
            message = f"refused: {host} {reason}"
        elif _parse_ip(_normalise_host(host)) is not None:
            message = f"refused: {address} {reason}"
        else:
            message = f"refused: {host} resolves to {address}, which {reason}"
        super().__init__(message)


# --------------------------------------------------------------------------- network backend


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the OS resolver (off-loop, via ``loop.getaddrinfo``)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(sockaddr[0]) for *_rest, sockaddr in infos))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that only opens connections to allowed IPs.

    ``connect_tcp`` is the one place every outgoing connection passes through
    (redirects or not, keep-alive or not), so the check here is the check on
    what is actually connected to. ``inner`` does the real socket work; it is
    always handed an IP literal, never a name.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self._resolver: Resolver = resolver or system_resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self.allow_private and _blocked_name(host):
            raise AddressRefusedError(host, None, "is a local hostname")
        addresses = await self._resolve(host, port, timeout)
        if not self.allow_private:
            # All of them, not just the one we would try first: a name that
            # mixes public and private answers is an attack, not a fallback.
            for address in addresses:
                reason = refusal_reason(address)
                if reason is not None:
                    raise AddressRefusedError(host, str(address), reason)
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            if not self.allow_private:
                await self._check_peer(stream, host)
            return stream
        assert last_error is not None  # _resolve never returns an empty list
        raise last_error

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = _parse_ip(host)
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(timeout):
                answers = await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        addresses: list[IPAddress] = []
        for answer in answers:
            ip = _parse_ip(answer)
            if ip is None:
                # Not an address we can judge, so not one we connect to.
                raise AddressRefusedError(host, answer, "is not an IP address")
            addresses.append(ip)
        if not addresses:
            raise httpcore.ConnectError(f"could not resolve {host}: no addresses")
        return addresses

    async def _check_peer(self, stream: httpcore.AsyncNetworkStream, host: str) -> None:
        # Belt and braces: the inner backend was given a checked IP literal,
        # but whatever it did, the socket's real peer is what matters.
        peer = stream.get_extra_info("server_addr")
        peer_ip = _parse_ip(str(peer[0])) if isinstance(peer, tuple) and peer else None
        if peer_ip is None:
            return
        reason = refusal_reason(peer_ip)
        if reason is not None:
            await stream.aclose()
            raise AddressRefusedError(host, str(peer_ip), reason)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # A Unix socket is by definition local; webhooks never need one.
        raise httpcore.ConnectError("webhooks do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# --------------------------------------------------------------------------- httpx glue

# httpcore errors -> the httpx errors callers catch. Looked up along the MRO,
# so the most specific class wins.
_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProxyError: httpx.ProxyError,
}


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for cls in type(exc).__mro__:
            target = _HTTPX_ERRORS.get(cls)
            if target is not None:
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _httpx_errors():
                await close()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """httpx transport over an httpcore pool that uses the guarded backend.

    httpx's own transport does not let us choose httpcore's network backend,
    hence this small adapter. No proxy support on purpose: a proxy would make
    the connection we check the proxy's, not the receiver's.
    """

    def __init__(self, backend: GuardedNetworkBackend, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# Plenty for one daemon's webhook steps; keep-alive only pays off for busy receivers.
_DEFAULT_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=10)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs milliseconds; one context serves every
    # client (httpcore only sets ALPN on it, to the same value each time).
    return httpx.create_ssl_context()


class WebhookClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose every connection goes through the SSRF guard.

    Share one across calls to reuse connections; pass it as ``client=`` to
    :func:`call_webhook`. ``verify`` is an ``ssl.SSLContext`` (e.g. trusting a
    private CA) or ``True``; ``network_backend`` replaces the socket layer under
    the guard (tests use it to observe or forbid connections).
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool = True,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        limits: httpx.Limits = _DEFAULT_LIMITS,
    ) -> None:
        if verify is True:
            ssl_context = _default_ssl_context()
        elif isinstance(verify, ssl.SSLContext):
            ssl_context = verify
        else:
            raise ValueError("webhooks always verify TLS certificates; pass an SSLContext to trust a private CA")
        backend = GuardedNetworkBackend(allow_private=allow_private, resolver=resolver, inner=network_backend)
        super().__init__(
            transport=_GuardedTransport(backend, ssl_context, limits),
            timeout=timeout,
            follow_redirects=False,
            # No proxies or .netrc from the environment: a proxy would bypass
            # the address check, and credentials must not leak to receivers.
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )
        self._allow_private = allow_private

    @property
    def allow_private(self) -> bool:
        return self._allow_private


# --------------------------------------------------------------------------- the call


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """Outcome of one attempt. ``retryable`` says whether trying again later
    could succeed (timeouts, 408/429/5xx, network errors), not whether to."""

    ok: bool
    status: int | None
    detail: str
    retryable: bool


def _failure(detail: str, *, retryable: bool = False, status: int | None = None) -> WebhookResult:
    return WebhookResult(ok=False, status=status, detail=detail, retryable=retryable)


def _extra_headers(headers: Mapping[str, str] | None) -> dict[str, str] | str:
    """The step's own headers minus managed ones, or an error message."""
    extra: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            return f"invalid header name {name!r}"
        if not isinstance(value, str) or not _HEADER_VALUE.match(value):
            return f"invalid value for header {name!r}"
        if name.lower() in _MANAGED_HEADERS:
            # Configs commonly repeat content-type; ours wins silently.
            log.debug("webhook header %r is managed by retenshun; ignoring the step's value", name)
            continue
        extra[name] = value
    return extra


def _snippet(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:_DETAIL_SNIPPET] + ("…" if len(text) > _DETAIL_SNIPPET else "")


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    # Raw bytes: decoding gzip here would let a small body expand without bound.
    buffer = bytearray()
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= cap:
                break
    return bytes(buffer[:cap])


def _classify(response: httpx.Response, body: bytes) -> WebhookResult:
    status = response.status_code
    if 200 <= status < 300:
        return WebhookResult(ok=True, status=status, detail=f"HTTP {status}", retryable=False)
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        target = f" to {location}" if location else ""
        return _failure(f"HTTP {status}: redirect{target} not followed", status=status)
    retryable = status in (408, 429) or status >= 500
    text = _snippet(body)
    return _failure(f"HTTP {status}" + (f": {text}" if text else ""), status=status, retryable=retryable)


async def call_webhook(
    url: str,
    body: Any,
    *,
    secret: bytes,
    webhook_id: str,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    allow_private: bool = False,
    client: httpx.AsyncClient | None = None,
    now: float | None = None,
    resolver: Resolver | None = None,
) -> WebhookResult:
    """POST ``body`` as JSON to ``url``, signed per Standard Webhooks.

    ``timeout`` bounds the whole attempt (resolution, connect, TLS, sending
    and the response headers); ``now`` overrides the clock for the
    ``webhook-timestamp``. Without ``client`` a :class:`WebhookClient` is made
    for this call with ``allow_private`` and ``resolver``. A given ``client``
    must be a :class:`WebhookClient` whose guard is at least as strict as
    ``allow_private`` asks, because the guard lives in the client's transport;
    anything else is a programming error and raises ``ValueError``.

    Problems with the step itself (bad URL, headers, body) come back as
    non-retryable results rather than exceptions, as they are configuration.
    """
    if client is not None:
        if resolver is not None:
            raise ValueError("resolver applies only to the client call_webhook creates; configure it on the client")
        if not allow_private and not (isinstance(client, WebhookClient) and not client.allow_private):
            raise ValueError("with allow_private=False, client must be a WebhookClient(allow_private=False)")
    if not webhook_id or not _HEADER_VALUE.match(webhook_id):
        raise ValueError("webhook_id must be non-empty printable ASCII")

    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        return _failure(f"invalid url: {exc}")
    if target.scheme not in ("http", "https") or not target.host:
        return _failure(f"invalid url {url!r}: need an http(s) URL with a host")
    try:
        payload = msgspec.json.encode(body)
    except (TypeError, msgspec.EncodeError) as exc:
        return _failure(f"body is not JSON-serialisable: {exc}")
    extra = _extra_headers(headers)
    if isinstance(extra, str):
        return _failure(extra)

    timestamp = int(time.time() if now is None else now)
    request_headers = {
        **extra,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        # Identity so the capped read below sees the bytes the receiver sent.
        "accept-encoding": "identity",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(secret, webhook_id, timestamp, payload),
    }

    async def attempt(http: httpx.AsyncClient) -> WebhookResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        request = http.build_request("POST", target, content=payload, headers=request_headers, timeout=timeout)
        # httpx's timeout is per phase; this one caps the sum, so a receiver
        # that trickles bytes cannot hold the step for longer than `timeout`.
        async with asyncio.timeout_at(deadline):
            response = await http.send(request, stream=True, follow_redirects=False)
        try:
            body_start = b""
            if not response.is_success and not response.is_redirect:
                # Only for the detail text; the status has already decided the
                # outcome, so failing to read it changes nothing.
                with contextlib.suppress(TimeoutError, httpx.TransportError):
                    async with asyncio.timeout_at(deadline):
                        body_start = await _read_capped(response, RESPONSE_CAP)
            return _classify(response, body_start)
        finally:
            await response.aclose()

    try:
        if client is not None:
            return await attempt(client)
        async with WebhookClient(allow_private=allow_private, resolver=resolver, timeout=timeout) as own:
            return await attempt(own)
    except AddressRefusedError as exc:
        log.warning("webhook to %s %s", target.host, exc)
        return _failure(str(exc))
    except (TimeoutError, httpx.TimeoutException):
        return _failure(f"timed out after {timeout:g}s", retryable=True)
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        return _failure(f"request error: {exc}")
    except httpx.TransportError as exc:
        return _failure(f"network error: {type(exc).__name__}: {exc}", retryable=True)
