"""Who is calling: API keys (secret / publishable) and browser user tokens."""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from . import tokens
from .credentials import key_hash, key_id, key_kind
from .errors import ApiError
from .store.base import Store

# How long a key looked up in the store is trusted before it is looked up again
# (so `retenshund keys revoke` takes effect within this many seconds).
_CACHE_S = 5.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Caller:
    kind: str  # "secret" | "publishable" | "user"
    key_id: str
    user_id: str | None = None


class Keyring:
    def __init__(self, store: Store, secret_keys: list[str], publishable_keys: list[str]) -> None:
        self._store = store
        self._static: dict[str, str] = {}
        for key in secret_keys:
            self._static[key_hash(key)] = "secret"
        for key in publishable_keys:
            self._static[key_hash(key)] = "publishable"
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._recent: dict[str, tuple[Caller | None, float]] = {}

    async def identify(self, key: str) -> Caller | None:
        # Every ingestion request carries a key: remember recent answers by the
        # key itself for a few seconds instead of hashing and looking it up again.
        now = time.monotonic()
        hit = self._recent.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        caller = await self._identify(key)
        if len(self._recent) >= _CACHE_MAX:
            self._recent.clear()
        self._recent[key] = (caller, now + _CACHE_S)
        return caller

    async def _identify(self, key: str) -> Caller | None:
        digest = key_hash(key)
        kind = self._static.get(digest)
        if kind is None:
            kind = await self._lookup(digest)
        if kind is None:
            return None
        return Caller(kind=kind, key_id=key_id(key))

    async def _lookup(self, digest: str) -> str | None:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self._store.find_api_key(digest)
        kind = None
        if found is not None and found.revoked_at is None:
            # The store matched on the hash; compare once more in constant time
            # so no code path compares secrets byte by byte.
            if hmac.compare_digest(found.key_id, "key_" + digest[:12]):
                kind = found.kind
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (kind, now + _CACHE_S)
        return kind


def key_from_headers(conn: HTTPConnection) -> str | None:
    """The API key from ``Authorization``: Basic (key as user name) or Bearer."""
    return key_from_header(conn.headers.get("authorization"))


def key_from_header(header: str | None) -> str | None:
    """The API key in an ``Authorization`` value: Basic (key as user name) or Bearer."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, "invalid_authorization",
                           "Authorization: Basic credentials are not valid base64 of \"<key>:\"") from None
        return decoded.partition(":")[0] or None
    raise ApiError(401, "invalid_authorization",
                   "Authorization: use \"Bearer <key>\" or HTTP Basic with the key as user name")


async def require_key(conn: HTTPConnection, keyring: Keyring, *, scope: str, body_key: str | None = None) -> Caller:
    """The caller's key, which must allow ``scope`` ("secret" or "ingest")."""
    return await check_key(keyring, key_from_headers(conn) or body_key, scope=scope)


async def check_key(keyring: Keyring, key: str | None, *, scope: str) -> Caller:
    """The caller of ``key``, which must allow ``scope`` ("secret" or "ingest")."""
    if not key:
        raise ApiError(401, "missing_api_key",
                       "send an API key: Authorization: Bearer <key>, HTTP Basic with the key as user name,"
                       " or writeKey in the body (ingestion only)")
    caller = await keyring.identify(key)
    if caller is None:
        hint = "" if key_kind(key) else " (keys start with sk_ or pk_)"
        raise ApiError(401, "invalid_api_key", f"the API key is not valid or was revoked{hint}")
    if scope == "secret" and caller.kind != "secret":
        raise ApiError(403, "forbidden",
                       "this endpoint needs a secret key (sk_...); publishable keys may only ingest events")
    return caller


def require_user(conn: HTTPConnection, signing_secret: str, now_s: float | None = None) -> Caller:
    """A browser caller, from its signed user token (Bearer or ?token=)."""
    token = conn.query_params.get("token")
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        raise ApiError(401, "missing_user_token",
                       "send the user token from POST /v1/users/{id}/token as Authorization: Bearer <token>")
    try:
        claims = tokens.verify(signing_secret, token, now=now_s)
    except tokens.TokenError:
        raise ApiError(401, "invalid_user_token",
                       "the user token is invalid or expired; mint a new one with POST /v1/users/{id}/token") from None
    return Caller(kind="user", key_id="", user_id=claims["sub"])
