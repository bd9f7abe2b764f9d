"""The webhook step against a real loopback HTTP(S) server.

Nothing here sends a packet beyond loopback: every client used with the SSRF
guard on sits on a RecordingBackend that refuses non-loopback addresses
itself, so even a broken guard could not reach 10.1.2.3 or the metadata
service; it would fail the test by recording the attempt instead.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from retenshund.channels.webhook import (
    RESPONSE_CAP,
    WebhookClient,
    call_webhook,
    refusal_reason,
    sign_standard_webhook,
    verify_standard_webhook,
)

SECRET = b"test-webhook-secret-0123456789ab"
NOW = 1_780_000_000.0


# --------------------------------------------------------------------------- test doubles


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HookServer:
    """A tiny HTTP/1.1 responder on 127.0.0.1 that records what reaches it.

    Routes: ``/status/<code>``, ``/redirect`` (302 to ``/target``), ``/hang``
    (never answers), ``/huge-error`` (500 announcing 10 MB, sends 100 KB, then
    stalls); anything else is 200.
    """

    ssl_context: ssl.SSLContext | None = None
    hits: list[Hit] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.hits.append(Hit(method, path, headers, body))
            await self._respond(path, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away or never spoke: nothing to record
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _respond(self, path: str, writer: asyncio.StreamWriter) -> None:
        def send(status: int, body: bytes, extra: str = "") -> None:
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n".encode()
                + body
            )

        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            send(code, f"status {code} body".encode())
        elif path == "/redirect":
            send(302, b"", f"location: http://127.0.0.1:{self.port}/target\r\n")
        elif path == "/hang":
            await self.release.wait()
            return
        elif path == "/huge-error":
            writer.write(b"HTTP/1.1 500 X\r\ncontent-length: 10000000\r\n\r\n" + b"E" * 100_000)
            await writer.drain()
            await self.release.wait()
            return
        else:
            send(200, b'{"received":true}', "content-type: application/json\r\n")
        await writer.drain()


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Real sockets, loopback only, and a record of every connect asked for."""

    def __init__(self, redirect_to: tuple[str, int] | None = None) -> None:
        self.connects: list[tuple[str, int]] = []
        # When set, connect there whatever was asked: a misbehaving backend.
        self._redirect_to = redirect_to
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        target_host, target_port = self._redirect_to or (host, port)
        if target_host not in ("127.0.0.1", "::1"):
            raise httpcore.ConnectError(f"test backend never leaves loopback (asked for {host})")
        return await self._real.connect_tcp(target_host, target_port, timeout=timeout)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("not in tests")

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


class FakeDNS:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.records[host]


@pytest.fixture
async def server() -> AsyncIterator[HookServer]:
    srv = HookServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _independent_signature(secret: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    # Written from the spec text, not via the module, so a shared bug cannot hide.
    mac = hmac.new(secret, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# --------------------------------------------------------------------------- signing


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The vector published with the Standard Webhooks libraries.
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    sig = sign_standard_webhook(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_fresh_and_rejects_tampered_stale_or_foreign() -> None:
    payload = b'{"a":1}'
    good = {"webhook-id": "msg_1", "webhook-timestamp": str(int(NOW)),
            "webhook-signature": "v1,bm9wZQ== " + sign_standard_webhook(SECRET, "msg_1", int(NOW), payload)}
    assert verify_standard_webhook(SECRET, good, payload, now=NOW + 10)
    assert not verify_standard_webhook(SECRET, good, b'{"a":2}', now=NOW)
    assert not verify_standard_webhook(b"other-secret", good, payload, now=NOW)
    assert not verify_standard_webhook(SECRET, good, payload, now=NOW + 301)
    assert not verify_standard_webhook(SECRET, {**good, "webhook-id": "msg_2"}, payload, now=NOW)
    assert not verify_standard_webhook(SECRET, {"webhook-id": "msg_1"}, payload, now=NOW)


# --------------------------------------------------------------------------- delivery


async def test_posts_signed_json_with_managed_headers(server: HookServer) -> None:
    body = {"event": "order.paid", "user": {"id": "u1", "name": "Adà"}, "amount": 12.5}
    result = await call_webhook(
        server.url("/hook"), body, secret=SECRET, webhook_id="msg_abc", allow_private=True, now=NOW,
        # The step may add headers but not replace the ones we sign or own.
        headers={"X-App-Token": "t0k", "Content-Type": "text/plain", "webhook-id": "forged",
                 "User-Agent": "curl/8", "Host": "evil.example"},
    )
    assert result.ok and result.status == 200 and not result.retryable, result
    [hit] = server.hits
    assert (hit.method, hit.path) == ("POST", "/hook")
    assert json.loads(hit.body) == body
    h = hit.headers
    assert h["content-type"] == "application/json"
    assert h["user-agent"].startswith("retenshun-webhook/")
    assert h["x-app-token"] == "t0k"
    assert h["host"] == f"127.0.0.1:{server.port}"
    assert (h["webhook-id"], h["webhook-timestamp"]) == ("msg_abc", str(int(NOW)))
    assert h["webhook-signature"] == _independent_signature(SECRET, "msg_abc", h["webhook-timestamp"], hit.body)
    assert verify_standard_webhook(SECRET, h, hit.body, now=NOW)


async def test_retries_keep_the_webhook_id_and_resign(server: HookServer) -> None:
    for attempt_at in (NOW, NOW + 60):
        r = await call_webhook(server.url("/hook"), {"n": 1}, secret=SECRET, webhook_id="msg_same",
                               allow_private=True, now=attempt_at)
        assert r.ok
    first, second = server.hits
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "msg_same"
    assert (first.headers["webhook-timestamp"], second.headers["webhook-timestamp"]) == (
        str(int(NOW)), str(int(NOW + 60)))
    assert verify_standard_webhook(SECRET, second.headers, second.body, now=NOW + 60)


@pytest.mark.parametrize(
    ("code", "ok", "retryable"),
    [(200, True, False), (204, True, False), (500, False, True), (503, False, True), (408, False, True),
     (429, False, True), (404, False, False), (400, False, False), (410, False, False)],
)
async def test_status_classification(server: HookServer, code: int, ok: bool, retryable: bool) -> None:
    r = await call_webhook(server.url(f"/status/{code}"), {}, secret=SECRET, webhook_id="m",
                           allow_private=True)
    assert (r.ok, r.status, r.retryable) == (ok, code, retryable)
    if not ok:
        assert r.detail == f"HTTP {code}: status {code} body"


async def test_redirect_is_a_failure_and_not_followed(server: HookServer) -> None:
    r = await call_webhook(server.url("/redirect"), {}, secret=SECRET, webhook_id="m", allow_private=True)
    assert (r.ok, r.status, r.retryable) == (False, 302, False)
    assert f"http://127.0.0.1:{server.port}/target" in r.detail
    assert [h.path for h in server.hits] == ["/redirect"]


async def test_timeout_is_retryable(server: HookServer) -> None:
    r = await call_webhook(server.url("/hang"), {}, secret=SECRET, webhook_id="m", allow_private=True,
                           timeout=0.3)
    assert (r.ok, r.status, r.retryable) == (False, None, True)
    assert "timed out" in r.detail
    assert [h.path for h in server.hits] == ["/hang"]  # it was the response that never came


async def test_error_body_is_read_only_up_to_the_cap(server: HookServer) -> None:
    # The server announces 10 MB, sends 100 KB and stalls. Reading to the end
    # would hit the deadline and lose the snippet; stopping at the cap returns
    # the snippet well before it.
    assert RESPONSE_CAP < 100_000
    r = await call_webhook(server.url("/huge-error"), {}, secret=SECRET, webhook_id="m",
                           allow_private=True, timeout=30)
    assert (r.ok, r.status, r.retryable) == (False, 500, True)
    assert r.detail.startswith("HTTP 500: EEEE")
    assert len(r.detail) < 400


async def test_step_configuration_errors_are_not_retryable(server: HookServer) -> None:
    common = {"secret": SECRET, "webhook_id": "m", "allow_private": True}
    bad_header = await call_webhook(server.url("/hook"), {}, headers={"X-A": "1\r\nX-Injected: 2"}, **common)
    bad_name = await call_webhook(server.url("/hook"), {}, headers={"X A": "1"}, **common)
    bad_scheme = await call_webhook("ftp://127.0.0.1/x", {}, **common)
    bad_body = await call_webhook(server.url("/hook"), {"x": object()}, **common)
    for r in (bad_header, bad_name, bad_scheme, bad_body):
        assert (r.ok, r.retryable, r.status) == (False, False, None), r
    assert "header" in bad_header.detail and "header" in bad_name.detail
    assert "JSON" in bad_body.detail
    assert server.hits == []


# --------------------------------------------------------------------------- SSRF


def test_refusal_reason_policy() -> None:
    assert refusal_reason("10.0.0.5") == "is a private address"
    for forbidden in ("127.0.0.1", "127.8.9.1", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                      "169.254.169.254", "169.254.1.1", "fe80::1", "fc00::1", "fd12:3456::1", "100.64.0.1",
                      "100.127.255.254", "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255", "192.0.2.1",
                      "::ffff:127.0.0.1", "::ffff:10.0.0.5", "::ffff:169.254.169.254", "64:ff9b::a00:5",
                      "2002:a00:5::1"):
        assert refusal_reason(forbidden) is not None, forbidden
    assert refusal_reason("::ffff:169.254.169.254") == "embeds 169.254.169.254, the link-local cloud metadata address"
    for public in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert refusal_reason(public) is None, public


def _refused_cases(port: int) -> list[tuple[str, str]]:
    return [
        (f"http://127.0.0.1:{port}/hook", "refused: 127.0.0.1 is a loopback address"),
        (f"http://localhost:{port}/hook", "refused: localhost is a local hostname"),
        (f"http://LocalHost.:{port}/hook", "is a local hostname"),
        (f"http://api.localhost:{port}/hook", "is a local hostname"),
        (f"http://[::1]:{port}/hook", "refused: ::1 is a loopback address"),
        (f"http://0.0.0.0:{port}/hook", "refused: 0.0.0.0 is an unspecified address"),
        ("http://10.1.2.3/hook", "refused: 10.1.2.3 is a private address"),
        ("http://10.0.0.5/hook", "refused: 10.0.0.5 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "refused: 169.254.169.254 is the link-local cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "refused: metadata.google.internal is a local"),
        ("http://192.168.1.1/", "refused: 192.168.1.1 is a private address"),
        ("https://172.20.0.1/", "refused: 172.20.0.1 is a private address"),
        ("http://100.64.0.1/", "refused: 100.64.0.1 is a carrier-grade NAT"),
        ("http://[fe80::1]/", "refused: fe80::1 is a link-local address"),
        ("http://[fd00::1]/", "refused: fd00::1 is a private address"),
        ("http://[::ffff:10.0.0.5]/", "embeds 10.0.0.5, a private address"),
        (f"http://internal.example.test:{port}/hook",
         "refused: internal.example.test resolves to 127.0.0.1, which is a loopback address"),
        # One bad answer among good ones is enough: no trying the public one.
        ("http://mixed.example.test/", "refused: mixed.example.test resolves to 10.0.0.7, which is a private"),
        ("http://meta.example.test/", "resolves to 169.254.169.254, which is the link-local cloud metadata"),
        ("http://mapped.example.test/", "resolves to ::ffff:7f00:1, which embeds 127.0.0.1, a loopback"),
    ]


DNS_RECORDS = {
    "internal.example.test": ["127.0.0.1"],
    "mixed.example.test": ["93.184.216.34", "10.0.0.7"],
    "meta.example.test": ["169.254.169.254"],
    "mapped.example.test": ["::ffff:127.0.0.1"],
}


async def _control_call(server: HookServer) -> None:
    """A permitted call, proving the server counts what reaches it."""
    r = await call_webhook(server.url("/hook"), {}, secret=SECRET, webhook_id="control", allow_private=True)
    assert r.ok


@pytest.mark.parametrize("case", range(len(_refused_cases(0))))
async def test_forbidden_destinations_are_refused_before_connecting(server: HookServer, case: int) -> None:
    url, expected = _refused_cases(server.port)[case]
    backend = RecordingBackend()
    dns = FakeDNS(DNS_RECORDS)
    async with WebhookClient(resolver=dns, network_backend=backend) as client:
        r = await call_webhook(url, {"x": 1}, secret=SECRET, webhook_id="m", client=client)
    assert (r.ok, r.status, r.retryable) == (False, None, False)
    assert expected in r.detail and r.detail.startswith("refused: "), r.detail
    assert backend.connects == []  # no connection was even attempted
    await _control_call(server)
    assert server.connections == 1 and [h.path for h in server.hits] == ["/hook"]
    assert server.hits[0].headers["webhook-id"] == "control"


async def test_default_client_refuses_loopback_and_rebound_names(server: HookServer) -> None:
    # No client passed: call_webhook builds its own guarded one.
    dns = FakeDNS({"hooks.example.test": ["127.0.0.1"]})
    literal = await call_webhook(server.url("/hook"), {}, secret=SECRET, webhook_id="m")
    named = await call_webhook(server.url("/hook", host="hooks.example.test"), {}, secret=SECRET,
                               webhook_id="m", resolver=dns)
    assert literal.detail == "refused: 127.0.0.1 is a loopback address" and not literal.retryable
    assert named.detail == "refused: hooks.example.test resolves to 127.0.0.1, which is a loopback address"
    assert dns.lookups == ["hooks.example.test"]
    await _control_call(server)
    assert server.connections == 1


async def test_connects_to_the_resolved_ip_and_sends_the_original_host(server: HookServer) -> None:
    # Guard off so loopback is reachable; the resolve-once-then-connect-to-the-IP
    # path is the same one the guard uses.
    dns = FakeDNS({"hooks.example.test": ["127.0.0.1"]})
    backend = RecordingBackend()
    async with WebhookClient(allow_private=True, resolver=dns, network_backend=backend) as client:
        r = await call_webhook(server.url("/hook", host="hooks.example.test"), {}, secret=SECRET,
                               webhook_id="m", allow_private=True, client=client)
    assert r.ok, r
    assert backend.connects == [("127.0.0.1", server.port)]  # an IP literal, never the name
    assert dns.lookups == ["hooks.example.test"]  # resolved once: nothing re-resolves later
    assert server.hits[0].headers["host"] == f"hooks.example.test:{server.port}"


async def test_peer_address_of_the_opened_socket_is_checked(server: HookServer) -> None:
    # DNS says public; a misbehaving socket layer lands on loopback anyway.
    # The guard looks at the socket's real peer and refuses before any request.
    dns = FakeDNS({"public.example.test": ["93.184.216.34"]})
    backend = RecordingBackend(redirect_to=("127.0.0.1", server.port))
    async with WebhookClient(resolver=dns, network_backend=backend) as client:
        r = await call_webhook(server.url("/hook", host="public.example.test"), {}, secret=SECRET,
                               webhook_id="m", client=client)
    assert r.detail == "refused: public.example.test resolves to 127.0.0.1, which is a loopback address"
    assert not r.retryable
    assert backend.connects == [("93.184.216.34", server.port)]
    await _control_call(server)
    assert [h.headers["webhook-id"] for h in server.hits] == ["control"]


async def test_unresolvable_name_is_retryable_and_connects_nowhere() -> None:
    backend = RecordingBackend()
    async with WebhookClient(resolver=FakeDNS({}), network_backend=backend) as client:
        r = await call_webhook("https://gone.example.test/hook", {}, secret=SECRET, webhook_id="m", client=client)
    assert (r.ok, r.retryable) == (False, True)
    assert "could not resolve gone.example.test" in r.detail
    assert backend.connects == []


async def test_client_must_carry_the_guard(server: HookServer) -> None:
    async with httpx.AsyncClient() as plain, WebhookClient(allow_private=True) as lax:
        for client in (plain, lax):
            with pytest.raises(ValueError, match="WebhookClient"):
                await call_webhook(server.url("/hook"), {}, secret=SECRET, webhook_id="m", client=client)
        with pytest.raises(ValueError, match="resolver"):
            await call_webhook(server.url("/hook"), {}, secret=SECRET, webhook_id="m", client=lax,
                               allow_private=True, resolver=FakeDNS({}))
        # With the check off, any client will do.
        r = await call_webhook(server.url("/hook"), {}, secret=SECRET, webhook_id="m", client=plain,
                               allow_private=True)
    assert r.ok
    assert server.connections == 1


# --------------------------------------------------------------------------- TLS to a hostname at an IP


@dataclass
class TlsMaterial:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    sni_seen: list[str | None]


def _tls_material(tmp_path: Path, hostname: str) -> TlsMaterial:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "retenshun test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    sni_seen: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni_seen.append(name)  # type: ignore[assignment,func-returns-value]
    client_ctx = ssl.create_default_context(cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    return TlsMaterial(server_ctx, client_ctx, sni_seen)


async def test_tls_uses_the_hostname_for_sni_and_verification(tmp_path: Path) -> None:
    tls = _tls_material(tmp_path, "hooks.example.test")
    srv = HookServer(ssl_context=tls.server_context)
    await srv.start()
    try:
        dns = FakeDNS({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
        backend = RecordingBackend()
        async with WebhookClient(allow_private=True, resolver=dns, network_backend=backend,
                                 verify=tls.client_context) as client:
            good = await call_webhook(srv.url("/hook", host="hooks.example.test"), {"a": 1}, secret=SECRET,
                                      webhook_id="m", allow_private=True, client=client)
            # Same IP, but the certificate is not for this name: must not pass.
            wrong = await call_webhook(srv.url("/hook", host="other.example.test"), {"a": 1}, secret=SECRET,
                                       webhook_id="m", allow_private=True, client=client)
    finally:
        await srv.stop()
    assert good.ok, good
    assert backend.connects == [("127.0.0.1", srv.port)] * 2
    assert tls.sni_seen == ["hooks.example.test", "other.example.test"]
    assert [h.headers["host"] for h in srv.hits] == [f"hooks.example.test:{srv.port}"]
    assert not wrong.ok and wrong.status is None
    assert "certificate" in wrong.detail.lower(), wrong.detail


async def test_system_resolver_passes_ip_literals_through() -> None:
    from retenshund.channels.webhook import system_resolver

    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
