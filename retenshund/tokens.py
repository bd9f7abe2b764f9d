"""Signed user tokens for the browser: JWT (RFC 7519) with HS256 only.

The algorithm is pinned: a token whose header says anything but HS256 (``none``
included) is refused before its signature is looked at."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import msgspec

_HEADER = b'{"alg":"HS256","typ":"JWT"}'
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class TokenError(Exception):
    """Why a token was refused (never shown in detail to the client)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(secret: str | bytes, user_id: str, ttl_s: int, *, now: float | None = None, **claims: Any) -> str:
    """A token for ``user_id`` valid for ``ttl_s`` seconds."""
    key = secret.encode() if isinstance(secret, str) else secret
    issued = int(time.time() if now is None else now)
    body = {"sub": user_id, "iat": issued, "exp": issued + ttl_s, **claims}
    signing_input = _b64(_HEADER) + "." + _b64(msgspec.json.encode(body))
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


def verify(secret: str | bytes, token: str, *, now: float | None = None, leeway_s: int = 30) -> dict[str, Any]:
    """The claims of a valid, unexpired token; TokenError otherwise."""
    key = secret.encode() if isinstance(secret, str) else secret
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT")
    try:
        header = _decode(_unb64(parts[0]))
        claims = _decode(_unb64(parts[1]))
        sig = _unb64(parts[2])
    except (ValueError, msgspec.DecodeError):
        raise TokenError("malformed token") from None
    if header.get("alg") != "HS256":
        raise TokenError("algorithm must be HS256")
    expected = hmac.new(key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(sig, expected):
        raise TokenError("bad signature")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise TokenError("token has no exp")
    current = time.time() if now is None else now
    if exp + leeway_s < current:
        raise TokenError("token expired")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("token has no sub")
    return claims
