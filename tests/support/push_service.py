"""A real, loopback Web Push service for tests: it checks VAPID (RFC 8292), decrypts
aes128gcm payloads (RFC 8291) with the browser-side keys, records what arrived and
answers with scripted statuses.

    async with running_push_service() as service:
        subscription, _ = make_subscription(service)
        ...send to subscription["endpoint"]...
        [push] = await service.wait_for(1)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import os
import secrets
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_BODY = 4096
MAX_EXP_AHEAD_S = 24 * 60 * 60
URGENCIES = {"very-low", "low", "normal", "high"}


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ReceivedPush:
    endpoint_id: str
    payload: bytes
    headers: dict[str, str]
    jwt_claims: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """Every POST the service saw, accepted or not."""
    endpoint_id: str
    status: int
    reason: str
    """Why it was rejected ("" when the request itself was valid)."""
    push: ReceivedPush | None
    """The decrypted push when the request was valid (even if a scripted error was answered)."""


@dataclass
class _Subscriber:
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: bytes | None


@dataclass
class _Scripted:
    status: int
    headers: dict[str, str]
    times: int


@dataclass
class PushService:
    origin: str
    received: list[ReceivedPush] = field(default_factory=list)
    """Pushes accepted (2xx) and decrypted."""
    attempts: list[Attempt] = field(default_factory=list)
    _subscribers: dict[str, _Subscriber] = field(default_factory=dict)
    _scripts: dict[str | None, collections.deque[_Scripted]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def rejections(self) -> list[Attempt]:
        return [a for a in self.attempts if a.reason]

    def register(self, private_key: ec.EllipticCurvePrivateKey, auth_secret: bytes,
                 application_server_key: bytes | None = None) -> str:
        """A new endpoint for a browser key pair; returns the endpoint URL."""
        endpoint_id = secrets.token_urlsafe(16)
        self._subscribers[endpoint_id] = _Subscriber(private_key, auth_secret, application_server_key)
        return f"{self.origin}/push/{endpoint_id}"

    def respond(self, endpoint_id: str | None, status: int, headers: dict[str, str] | None = None,
                times: int = 1) -> None:
        """Answer the next ``times`` valid pushes to ``endpoint_id`` (``None``: any endpoint)
        with ``status`` and ``headers`` instead of 201. Endpoint-specific scripts win."""
        self._scripts[endpoint_id].append(_Scripted(status, dict(headers or {}), times))

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedPush]:
        """Wait until at least ``n`` pushes were accepted; returns them all."""
        await self._wait(lambda: len(self.received) >= n, timeout)
        return list(self.received)

    async def wait_for_attempts(self, n: int, timeout: float = 5.0) -> list[Attempt]:
        await self._wait(lambda: len(self.attempts) >= n, timeout)
        return list(self.attempts)

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def _record(self, attempt: Attempt) -> None:
        async with self._changed:
            self.attempts.append(attempt)
            if attempt.push is not None and 200 <= attempt.status < 300:
                self.received.append(attempt.push)
            self._changed.notify_all()

    def _next_script(self, endpoint_id: str) -> _Scripted | None:
        for key in (endpoint_id, None):
            queue = self._scripts.get(key)
            if queue:
                script = queue[0]
                script.times -= 1
                if script.times <= 0:
                    queue.popleft()
                return script
        return None

    async def handle_push(self, request: Request) -> Response:
        endpoint_id = request.path_params["endpoint_id"]
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            push = self._accept(endpoint_id, headers, body)
        except Rejected as rejected:
            await self._record(Attempt(endpoint_id, rejected.status, rejected.reason, None))
            return Response(rejected.reason, status_code=rejected.status)
        script = self._next_script(endpoint_id)
        status = script.status if script else 201
        extra = script.headers if script else {"Location": f"{self.origin}/message/{uuid.uuid4()}"}
        await self._record(Attempt(endpoint_id, status, "", push))
        return Response(status_code=status, headers=extra)

    def _accept(self, endpoint_id: str, headers: dict[str, str], body: bytes) -> ReceivedPush:
        subscriber = self._subscribers.get(endpoint_id)
        if subscriber is None:
            raise Rejected(404, "unknown endpoint")
        claims = self._check_vapid(headers.get("authorization"), subscriber)
        ttl = headers.get("ttl")
        if ttl is None or not ttl.isdigit():
            raise Rejected(400, f"TTL header missing or not a non-negative integer: {ttl!r}")
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Rejected(400, f"bad Urgency {urgency!r}")
        if headers.get("content-encoding") != "aes128gcm":
            raise Rejected(400, f"Content-Encoding must be aes128gcm, got {headers.get('content-encoding')!r}")
        if len(body) > MAX_BODY:
            raise Rejected(413, f"body is {len(body)} bytes, limit {MAX_BODY}")
        try:
            payload = decrypt_aes128gcm(body, subscriber.private_key, subscriber.auth_secret)
        except ValueError as exc:
            raise Rejected(400, f"decryption failed: {exc}") from None
        return ReceivedPush(endpoint_id, payload, headers, claims)

    def _check_vapid(self, authorization: str | None, subscriber: _Subscriber) -> dict[str, Any]:
        if not authorization:
            raise Rejected(401, "vapid: missing Authorization")
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Rejected(401, f"vapid: wrong auth scheme {scheme!r}")
        params = {}
        for part in rest.split(","):
            name, eq, value = part.strip().partition("=")
            if eq:
                params[name.strip().lower()] = value.strip()
        if "t" not in params or "k" not in params:
            raise Rejected(401, "vapid: Authorization needs t= and k=")
        try:
            key_bytes = b64url_decode(params["k"])
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
        except ValueError:
            raise Rejected(401, "vapid: k is not a P-256 public key") from None
        if len(key_bytes) != 65 or key_bytes[0] != 4:
            raise Rejected(401, "vapid: k must be an uncompressed point")
        claims = verify_es256_jwt(params["t"], public_key)
        if subscriber.application_server_key is not None and key_bytes != subscriber.application_server_key:
            raise Rejected(403, "vapid: key does not match the subscription's applicationServerKey")
        if claims.get("aud") != self.origin:
            raise Rejected(401, f"vapid: aud {claims.get('aud')!r} is not {self.origin!r}")
        exp = claims.get("exp")
        now = time.time()
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise Rejected(401, "vapid: exp missing or not an integer")
        if exp <= now:
            raise Rejected(401, "vapid: token expired")
        if exp > now + MAX_EXP_AHEAD_S:
            raise Rejected(401, "vapid: exp more than 24 hours ahead")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise Rejected(401, f"vapid: sub must be a mailto: or https: URL, got {sub!r}")
        return claims


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("bad base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def verify_es256_jwt(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The claims of a compact ES256 JWT whose signature verifies against ``public_key``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected(401, "vapid: JWT must have three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError:
        raise Rejected(401, "vapid: JWT is not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise Rejected(401, f"vapid: JWT alg must be ES256, header {header!r}")
    if not isinstance(claims, dict):
        raise Rejected(401, "vapid: JWT claims are not an object")
    if len(signature) != 64:
        raise Rejected(401, "vapid: ES256 signature must be 64 bytes")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public_key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Rejected(401, "vapid: bad JWT signature") from None
    return claims


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def decrypt_aes128gcm(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """Decrypt a Web Push message (RFC 8291 over RFC 8188 aes128gcm) as the browser would.

    Raises ``ValueError`` naming what is wrong."""
    if len(body) < 21:
        raise ValueError("shorter than the aes128gcm header")
    salt = body[:16]
    (rs,) = struct.unpack("!L", body[16:20])
    idlen = body[20]
    keyid = body[21:21 + idlen]
    ciphertext = body[21 + idlen:]
    if rs < 18:
        raise ValueError(f"record size {rs} below 18")
    if idlen != 65:
        raise ValueError(f"keyid must be the 65-byte sender public key, idlen={idlen}")
    if not ciphertext:
        raise ValueError("no ciphertext")
    if len(ciphertext) > rs:
        raise ValueError("web push messages must be a single record")
    try:
        as_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keyid)
    except ValueError:
        raise ValueError("keyid is not a P-256 point") from None
    ecdh_secret = ua_private.exchange(ec.ECDH(), as_public)
    key_info = b"WebPush: info\x00" + _point(ua_private.public_key()) + keyid
    ikm = _hkdf(auth_secret, ecdh_secret, key_info, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    try:
        # A single record has sequence number 0, so the nonce is used as derived.
        plain = AESGCM(cek).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise ValueError("authentication tag mismatch") from None
    end = len(plain.rstrip(b"\x00"))
    if end == 0 or plain[end - 1] != 0x02:
        raise ValueError("last record must end with the 0x02 padding delimiter")
    return plain[:end - 1]


def make_subscription(service: PushService, application_server_key: str | None = None,
                      ) -> tuple[dict[str, Any], ec.EllipticCurvePrivateKey]:
    """What ``PushManager.subscribe()`` gives a page: a fresh browser key pair and auth secret
    registered with ``service``. With ``application_server_key`` (base64url), the service
    answers 403 to pushes signed by any other VAPID key, like browsers' push services."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    auth_secret = os.urandom(16)
    restrict = b64url_decode(application_server_key) if application_server_key else None
    endpoint = service.register(private_key, auth_secret, restrict)
    subscription = {
        "endpoint": endpoint,
        "keys": {"p256dh": b64url_encode(_point(private_key.public_key())), "auth": b64url_encode(auth_secret)},
    }
    return subscription, private_key


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def running_push_service(host: str = "127.0.0.1") -> AsyncIterator[PushService]:
    """Serve a :class:`PushService` on ``host`` and a free port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    service = PushService(origin=f"http://{host}:{port}")
    app = Starlette(routes=[Route("/push/{endpoint_id}", service.handle_push, methods=["POST"])])
    server = _Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    try:
        await asyncio.wait({serving, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not server.ready.is_set():
            if serving.done():
                serving.result()
            raise RuntimeError("push service did not start within 10 s")
        yield service
    finally:
        ready.cancel()
        server.should_exit = True
        await serving
        sock.close()
