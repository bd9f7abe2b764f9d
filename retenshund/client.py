"""A Python client for a retenshun daemon, for your backend.

    from retenshund.client import Retenshun

    r = Retenshun("http://127.0.0.1:8470", "sk_...", signing_secret="...")
    r.identify("user_123", {"email": "ada@example.com", "plan": "pro"})
    r.group("user_123", "acme", {"name": "Acme", "plan": "team"})
    r.track("user_123", "report_generated", {"report_type": "weekly_summary"})
    r.messages.send("user_123", "milestone_celebration", channel="email",
                    variables={"milestone": "10,000 messages"})
    token = r.user_token("user_123")   # for retenshun.init({userToken}) in the browser

``AsyncRetenshun`` has the same methods as coroutines. Both retry network errors,
429 (after ``Retry-After``) and 5xx with backoff, and only where a retry cannot
do anything twice: events carry a ``messageId`` the daemon dedupes on, and every
send carries an idempotency key (yours, or one made up for the call). Errors
from the API raise :class:`RetenshunError` with the contract's ``status``,
``code`` and ``message``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

from . import tokens
from .durations import DefinitionError, parse_duration

__all__ = ["AsyncRetenshun", "Retenshun", "RetenshunError"]

_DEFAULT_TOKEN_TTL = "24h"
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BACKOFF_BASE_S = 0.25
_BACKOFF_MAX_S = 8.0
_RETRY_AFTER_MAX_S = 60.0
_USER_AGENT = "retenshun-python/0.1.0"


class RetenshunError(Exception):
    """The daemon refused a request (or could not be reached: ``status`` 0).

    ``code`` and ``message`` come from the contract's error body
    ``{"error": {"code", "message"}}``; ``retry_after`` is in seconds when the
    daemon sent ``Retry-After``."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body


@dataclass
class _Call:
    """One API request, described once and performed by the sync or async client."""

    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: bool = True  # safe to repeat (deduplicated or read-only)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return _now_iso()
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ttl_seconds(expires_in: float | str | None) -> int:
    if expires_in is None:
        expires_in = _DEFAULT_TOKEN_TTL
    if isinstance(expires_in, str):
        try:
            seconds = parse_duration(expires_in, "expires_in") // 1000
        except DefinitionError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from None
    else:
        seconds = int(expires_in)
    if not 1 <= seconds <= 366 * 86_400:
        raise ValueError("expires_in: between 1 second and 366 days")
    return seconds


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _error(response: httpx.Response) -> RetenshunError:
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = response.text or None
    code, message = f"http_{response.status_code}", response.reason_phrase or "request failed"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or code)
        message = str(body["error"].get("message") or message)
    return RetenshunError(response.status_code, code, message, retry_after=_retry_after(response), body=body)


def _result(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise _error(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def _delay(attempt: int, response: httpx.Response | None) -> float:
    """How long to wait before retry number ``attempt`` (1-based)."""
    if response is not None:
        after = _retry_after(response)
        if after is not None:
            return min(after, _RETRY_AFTER_MAX_S)
    exp = min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))
    return exp / 2 + random.random() * exp / 2


class _Base:
    """What both clients share: validation, request bodies, tokens."""

    def __init__(self, host: str, secret_key: str, *, signing_secret: str | None = None,
                 max_retries: int = 2) -> None:
        if not host:
            raise ValueError("host: the daemon's URL, e.g. http://127.0.0.1:8470")
        if not secret_key:
            raise ValueError("secret_key: a secret key (sk_...); publishable keys cannot send messages")
        if signing_secret is not None and len(signing_secret) < 16:
            raise ValueError("signing_secret: the daemon's [auth] signing_secret (at least 16 characters)")
        self.host = host.rstrip("/")
        self._secret_key = secret_key
        self._signing_secret = signing_secret
        self._max_retries = max(0, max_retries)
        self._headers = {"Authorization": f"Bearer {secret_key}", "User-Agent": _USER_AGENT}

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}({self.host!r})"

    @staticmethod
    def _event(type_: str, user_id: str, fields: dict[str, Any], *, timestamp: datetime | str | None,
               message_id: str | None, context: dict[str, Any] | None) -> _Call:
        if not user_id:
            raise ValueError("user_id: required")
        event = {"type": type_, "userId": user_id, **fields,
                 "messageId": message_id or str(uuid.uuid4()), "timestamp": _iso(timestamp),
                 "context": {"library": {"name": "retenshun-python", "version": "0.1.0"}, **(context or {})}}
        # messageId makes a retried request a no-op on the daemon: retry freely.
        return _Call("POST", f"/v1/{type_}", event)

    @staticmethod
    def _send(user_id: str, template_id: str, channel: str | list[str], variables: dict[str, Any] | None,
              idempotency_key: str | None, category: str | None) -> _Call:
        body: dict[str, Any] = {"user_id": user_id, "channel": channel, "template_id": template_id,
                                "variables": variables or {}}
        if category is not None:
            body["category"] = category
        # A key per call (made up when not given) makes a retry return the first answer.
        key = idempotency_key or f"py_{uuid.uuid4().hex}"
        return _Call("POST", "/v1/messages/send", body, {"Idempotency-Key": key})

    def _local_token(self, user_id: str, expires_in: float | str | None) -> str | None:
        if not user_id:
            raise ValueError("user_id: required")
        ttl = _ttl_seconds(expires_in)
        if self._signing_secret is None:
            return None
        return tokens.mint(self._signing_secret, user_id, ttl)

    @staticmethod
    def _token_call(user_id: str, expires_in: float | str | None) -> _Call:
        ttl = _ttl_seconds(expires_in)
        return _Call("POST", f"/v1/users/{_quote(user_id)}/token", {"expires_in": f"{ttl}s"})


def _quote(part: str) -> str:
    return quote(part, safe="")


# -- sync ----------------------------------------------------------------------


class Messages:
    def __init__(self, client: Retenshun) -> None:
        self._c = client

    def send(self, user_id: str, template_id: str, *, channel: str | list[str] = "email",
             variables: dict[str, Any] | None = None, idempotency_key: str | None = None,
             category: str | None = None) -> dict[str, Any]:
        """Queue a template for a user on one channel or several -> the 202 body
        (``{"message_id", "status"}``, or ``{"messages": [...]}`` for a list)."""
        return self._c._do(_Base._send(user_id, template_id, channel, variables, idempotency_key, category))  # type: ignore[no-any-return]

    def get(self, message_id: str) -> dict[str, Any]:
        """A message with its status history."""
        return self._c._do(_Call("GET", f"/v1/messages/{_quote(message_id)}"))  # type: ignore[no-any-return]


class Retenshun(_Base):
    """The synchronous client. Use it as a context manager, or call ``close()``."""

    def __init__(self, host: str, secret_key: str, *, signing_secret: str | None = None, timeout: float = 10.0,
                 max_retries: int = 2, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(host, secret_key, signing_secret=signing_secret, max_retries=max_retries)
        self._http = httpx.Client(base_url=self.host, headers=self._headers, timeout=timeout, transport=transport)
        self.messages = Messages(self)

    def track(self, user_id: str, event: str, properties: dict[str, Any] | None = None, *,
              timestamp: datetime | str | None = None, message_id: str | None = None,
              context: dict[str, Any] | None = None) -> None:
        """Record an event for a user (stored once however often it is retried)."""
        if not event:
            raise ValueError("event: the event name is required")
        self._do(self._event("track", user_id, {"event": event, "properties": properties or {}},
                             timestamp=timestamp, message_id=message_id, context=context))

    def identify(self, user_id: str, traits: dict[str, Any] | None = None, *,
                 timestamp: datetime | str | None = None, message_id: str | None = None,
                 context: dict[str, Any] | None = None) -> None:
        """Merge traits into the user's profile (``None`` removes a trait)."""
        self._do(self._event("identify", user_id, {"traits": traits or {}},
                             timestamp=timestamp, message_id=message_id, context=context))

    def group(self, user_id: str, group_id: str, traits: dict[str, Any] | None = None, *,
              message_id: str | None = None) -> None:
        """Record the user as a member of a group (team, account) with its traits."""
        if not group_id:
            raise ValueError("group_id: required")
        self._do(self._event("group", user_id, {"groupId": group_id, "traits": traits or {}},
                             timestamp=None, message_id=message_id, context=None))

    def alias(self, user_id: str, previous_id: str, *, message_id: str | None = None) -> None:
        """Merge the history of ``previous_id`` (e.g. an anonymous id) into ``user_id``."""
        if not previous_id:
            raise ValueError("previous_id: required")
        self._do(self._event("alias", user_id, {"previousId": previous_id},
                             timestamp=None, message_id=message_id, context=None))

    def user_token(self, user_id: str, *, expires_in: float | str | None = None) -> str:
        """A signed token for the browser SDK. Minted here when the client was
        given ``signing_secret`` (no round trip), else asked of the daemon."""
        token = self._local_token(user_id, expires_in)
        if token is not None:
            return token
        return str(self._do(self._token_call(user_id, expires_in))["token"])

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self._do(_Call("GET", f"/v1/users/{_quote(user_id)}"))  # type: ignore[no-any-return]

    def _do(self, call: _Call) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(call.method, call.path, json=call.body, headers=call.headers)
            except httpx.TransportError as exc:
                if not call.retry or attempt >= self._max_retries:
                    raise RetenshunError(0, "network_error", f"{self.host} did not answer: {exc}") from exc
            else:
                if response.status_code not in _RETRY_STATUSES or not call.retry or attempt >= self._max_retries:
                    return _result(response)
            attempt += 1
            time.sleep(_delay(attempt, response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- async ---------------------------------------------------------------------


class AsyncMessages:
    def __init__(self, client: AsyncRetenshun) -> None:
        self._c = client

    async def send(self, user_id: str, template_id: str, *, channel: str | list[str] = "email",
                   variables: dict[str, Any] | None = None, idempotency_key: str | None = None,
                   category: str | None = None) -> dict[str, Any]:
        return await self._c._do(_Base._send(user_id, template_id, channel, variables, idempotency_key,  # type: ignore[no-any-return]
                                             category))

    async def get(self, message_id: str) -> dict[str, Any]:
        return await self._c._do(_Call("GET", f"/v1/messages/{_quote(message_id)}"))  # type: ignore[no-any-return]


class AsyncRetenshun(_Base):
    """The asyncio client (``async with AsyncRetenshun(...) as r``, or ``await r.aclose()``)."""

    def __init__(self, host: str, secret_key: str, *, signing_secret: str | None = None, timeout: float = 10.0,
                 max_retries: int = 2, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(host, secret_key, signing_secret=signing_secret, max_retries=max_retries)
        self._http = httpx.AsyncClient(base_url=self.host, headers=self._headers, timeout=timeout,
                                       transport=transport)
        self.messages = AsyncMessages(self)

    async def track(self, user_id: str, event: str, properties: dict[str, Any] | None = None, *,
                    timestamp: datetime | str | None = None, message_id: str | None = None,
                    context: dict[str, Any] | None = None) -> None:
        if not event:
            raise ValueError("event: the event name is required")
        await self._do(self._event("track", user_id, {"event": event, "properties": properties or {}},
                                   timestamp=timestamp, message_id=message_id, context=context))

    async def identify(self, user_id: str, traits: dict[str, Any] | None = None, *,
                       timestamp: datetime | str | None = None, message_id: str | None = None,
                       context: dict[str, Any] | None = None) -> None:
        await self._do(self._event("identify", user_id, {"traits": traits or {}},
                                   timestamp=timestamp, message_id=message_id, context=context))

    async def group(self, user_id: str, group_id: str, traits: dict[str, Any] | None = None, *,
                    message_id: str | None = None) -> None:
        if not group_id:
            raise ValueError("group_id: required")
        await self._do(self._event("group", user_id, {"groupId": group_id, "traits": traits or {}},
                                   timestamp=None, message_id=message_id, context=None))

    async def alias(self, user_id: str, previous_id: str, *, message_id: str | None = None) -> None:
        if not previous_id:
            raise ValueError("previous_id: required")
        await self._do(self._event("alias", user_id, {"previousId": previous_id},
                                   timestamp=None, message_id=message_id, context=None))

    async def user_token(self, user_id: str, *, expires_in: float | str | None = None) -> str:
        token = self._local_token(user_id, expires_in)
        if token is not None:
            return token
        return str((await self._do(self._token_call(user_id, expires_in)))["token"])

    async def get_user(self, user_id: str) -> dict[str, Any]:
        return await self._do(_Call("GET", f"/v1/users/{_quote(user_id)}"))  # type: ignore[no-any-return]

    async def _do(self, call: _Call) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(call.method, call.path, json=call.body, headers=call.headers)
            except httpx.TransportError as exc:
                if not call.retry or attempt >= self._max_retries:
                    raise RetenshunError(0, "network_error", f"{self.host} did not answer: {exc}") from exc
            else:
                if response.status_code not in _RETRY_STATUSES or not call.retry or attempt >= self._max_retries:
                    return _result(response)
            attempt += 1
            await asyncio.sleep(_delay(attempt, response))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
