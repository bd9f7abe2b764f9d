"""Dashboard sessions: a signed, expiring cookie instead of a key in the browser.

The cookie is ``v1.<payload>.<mac>``: the payload says how the person signed in
(a secret key, by its SHA-256, or the admin password), a random nonce and the
expiry; the MAC is HMAC-SHA256 under a key derived from the signing secret, so
it can never be mistaken for a user token. The CSRF token is another MAC of the
nonce: the page gets it from the login answer (the cookie itself is HttpOnly)
and sends it as ``X-CSRF-Token`` on every state-changing request. A cross-site
page can neither read it nor send a custom header without a CORS preflight."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import HTTPConnection

from .auth import Caller
from .credentials import key_hash
from .errors import ApiError

COOKIE = "retenshun_session"
CSRF_HEADER = "x-csrf-token"
TTL_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_decode = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True)
class Session:
    method: str  # "secret_key" | "admin_password"
    key_digest: str  # SHA-256 of the secret key, or password_digest() of the admin password
    nonce: str
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(signing_secret: str, purpose: str) -> bytes:
    return hmac.new(signing_secret.encode(), f"retenshun dashboard {purpose}".encode(), hashlib.sha256).digest()


def password_digest(signing_secret: str, password: str) -> str:
    """What a password session remembers of the password: a keyed MAC, so a
    changed password ends the session and the cookie reveals nothing."""
    return _b64(hmac.new(_key(signing_secret, "admin password"), password.encode(), hashlib.sha256).digest())


def new_session(method: str, key_digest: str, now_s: float) -> Session:
    return Session(method, key_digest, _b64(os.urandom(18)), int(now_s) + TTL_S)


def encode(signing_secret: str, s: Session) -> str:
    payload = _b64(msgspec.json.encode({"m": s.method, "h": s.key_digest, "n": s.nonce, "exp": s.expires_at}))
    mac = hmac.new(_key(signing_secret, "session"), payload.encode(), hashlib.sha256).digest()
    return f"v1.{payload}.{_b64(mac)}"


def decode(signing_secret: str, cookie: str, now_s: float) -> Session | None:
    """The session in a cookie, or None when it is forged, malformed or expired."""
    parts = cookie.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        return None
    expected = hmac.new(_key(signing_secret, "session"), parts[1].encode(), hashlib.sha256).digest()
    try:
        mac = _unb64(parts[2])
        claims = _decode(_unb64(parts[1]))
    except (ValueError, msgspec.DecodeError):
        return None
    if not hmac.compare_digest(mac, expected):
        return None
    exp, method, digest, nonce = claims.get("exp"), claims.get("m"), claims.get("h"), claims.get("n")
    if not isinstance(exp, int) or exp < now_s or method not in ("secret_key", "admin_password"):
        return None
    if not isinstance(digest, str) or not isinstance(nonce, str) or not nonce:
        return None
    return Session(method, digest, nonce, exp)


def csrf_token(signing_secret: str, s: Session) -> str:
    return _b64(hmac.new(_key(signing_secret, "csrf"), s.nonce.encode(), hashlib.sha256).digest())


async def still_valid(conn: HTTPConnection, s: Session) -> bool:
    """A session lives no longer than what it was opened with: a revoked key or a
    changed admin password ends it at once."""
    svc = conn.app.state.services
    if s.method == "admin_password":
        password = svc.config.auth.admin_password
        return bool(password) and hmac.compare_digest(s.key_digest, password_digest(svc.signing_secret, password))
    for key in svc.config.auth.secret_keys:
        if hmac.compare_digest(key_hash(key), s.key_digest):
            return True
    found = await svc.store.find_api_key(s.key_digest)
    return found is not None and found.revoked_at is None and found.kind == "secret"


async def current(conn: HTTPConnection) -> Session | None:
    """The valid session of this request or websocket, if it has one."""
    cookie = conn.cookies.get(COOKIE)
    if not cookie:
        return None
    svc = conn.app.state.services
    s = decode(svc.signing_secret, cookie, svc.clock.now_ms() / 1000)
    if s is None or not await still_valid(conn, s):
        return None
    return s


async def caller(conn: HTTPConnection) -> Caller:
    """A secret-scope caller from the session cookie; state-changing requests
    must also carry the session's CSRF token."""
    s = await current(conn)
    if s is None:
        raise ApiError(401, "session_expired",
                       "the dashboard session is missing, expired or was revoked; sign in again")
    method = conn.scope.get("method", "GET")
    if method not in SAFE_METHODS:
        sent = conn.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, csrf_token(conn.app.state.services.signing_secret, s)):
            raise ApiError(403, "csrf_token_invalid",
                           "X-CSRF-Token: send the csrf_token from POST /dashboard/login with every change")
    who = s.key_digest[:12] if s.method == "secret_key" else "admin"
    return Caller(kind="secret", key_id=f"dashboard:{who}")
