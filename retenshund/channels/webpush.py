"""Web Push sender: aes128gcm payload encryption (RFC 8291) via pywebpush, VAPID (RFC 8292),
and a classification of the push service's answer the dispatcher can act on.

pywebpush and requests block, and encryption costs two ECDH operations per message, so
the whole encrypt-sign-POST step runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import functools
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal

import http_ece
import msgspec
import requests
from pywebpush import WebPusher, WebPushException
from requests.adapters import HTTPAdapter

from retenshund.vapid import VapidKeys, origin_of, vapid_authorization

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "gone", "retry", "too_large", "vapid_error", "failed"]

#: Push services must accept encrypted bodies up to this size (RFC 8030 section 7.2);
#: bigger ones are refused with 413, so we never send them.
MAX_ENCRYPTED_BYTES = 4096
#: aes128gcm overhead per push: 86-byte header (salt, rs, idlen, 65-byte key id),
#: 1-byte padding delimiter, 16-byte GCM tag. So 3993 bytes of plaintext fit.
ENCRYPTION_OVERHEAD = 86 + 1 + 16
URGENCIES = frozenset({"very-low", "low", "normal", "high"})


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    """``delivered``; ``gone`` (delete the subscription); ``retry`` (after ``retry_after_s``
    when the service said so); ``too_large``, ``vapid_error`` and ``failed`` (do not retry)."""
    status_code: int | None
    retry_after_s: float | None
    detail: str


def push_payload(title: str, body: str | None = None, url: str | None = None,
                 icon: str | None = None, message_id: str | None = None) -> bytes:
    """The compact JSON the service worker receives; ``None`` fields are left out."""
    fields = {"title": title, "body": body, "url": url, "icon": icon, "message_id": message_id}
    return msgspec.json.encode({k: v for k, v in fields.items() if v is not None})


def new_push_session(max_connections: int = 32) -> requests.Session:
    """A ``requests.Session`` for :func:`send_webpush`, shared across sends so connections to
    each push service are reused. Size ``max_connections`` to the number of worker threads.
    Create it where the app starts and close it on shutdown."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max_connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


async def send_webpush(subscription: Mapping[str, Any], payload: bytes, keys: VapidKeys, subject: str, *,
                       ttl: int = 86400, urgency: str = "normal", timeout: float = 10.0,
                       session: requests.Session | None = None,
                       executor: Executor | None = None) -> PushResult:
    """Encrypt ``payload`` for ``subscription`` (``{"endpoint", "keys": {"p256dh", "auth"}}``),
    sign VAPID for the endpoint's origin with ``subject`` as ``sub``, POST it and classify the answer.

    Encryption, signing and the blocking HTTP call run in ``executor`` (default: the loop's
    default executor via ``asyncio.to_thread``). Pass a shared ``session`` for connection reuse.
    Raises ``ValueError`` for bad arguments; every outcome of the push itself is a ``PushResult``."""
    if urgency not in URGENCIES:
        raise ValueError(f"urgency must be one of {sorted(URGENCIES)}, got {urgency!r}")
    if ttl < 0:
        raise ValueError(f"ttl must be >= 0 seconds, got {ttl}")
    if not payload:
        raise ValueError("payload must not be empty")
    call = functools.partial(_send_blocking, subscription, bytes(payload), keys, subject,
                             ttl, urgency, timeout, session)
    if executor is None:
        return await asyncio.to_thread(call)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


def _send_blocking(subscription: Mapping[str, Any], payload: bytes, keys: VapidKeys, subject: str,
                   ttl: int, urgency: str, timeout: float,
                   session: requests.Session | None) -> PushResult:
    endpoint = subscription.get("endpoint")
    try:
        origin_of(endpoint if isinstance(endpoint, str) else "")
    except ValueError:
        return PushResult("failed", None, None, f"invalid subscription endpoint: {endpoint!r}")
    assert isinstance(endpoint, str)
    try:
        body: bytes = WebPusher(subscription).encode(payload, "aes128gcm")["body"]
    except (WebPushException, http_ece.ECEException, KeyError, TypeError, ValueError) as exc:
        return PushResult("failed", None, None, f"invalid subscription keys: {exc}")
    if len(body) > MAX_ENCRYPTED_BYTES:
        return PushResult(
            "too_large", None, None,
            f"encrypted payload is {len(body)} bytes; push services accept at most "
            f"{MAX_ENCRYPTED_BYTES} bytes ({MAX_ENCRYPTED_BYTES - ENCRYPTION_OVERHEAD} bytes of "
            f"plaintext), got {len(payload)} bytes of plaintext",
        )
    try:
        authorization = vapid_authorization(endpoint, keys, subject)
    except ValueError as exc:
        logger.error("web push VAPID configuration problem: %s", exc)
        return PushResult("vapid_error", None, None, str(exc))
    headers = {
        "Authorization": authorization,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(ttl),
        "Urgency": urgency,
    }
    http = session if session is not None else requests
    try:
        response = http.post(endpoint, data=body, headers=headers, timeout=timeout)
    except requests.Timeout:
        return PushResult("retry", None, None, f"push service did not answer within {timeout} s")
    except requests.ConnectionError as exc:
        return PushResult("retry", None, None, f"could not reach push service: {exc}")
    except requests.RequestException as exc:
        return PushResult("failed", None, None, f"push request failed: {exc}")
    return classify_response(endpoint, response.status_code, response.headers, response.text)


def classify_response(endpoint: str, status: int, headers: Mapping[str, str], text: str = "") -> PushResult:
    """Map a push service's HTTP answer to an outcome (``headers`` must be case-insensitive)."""
    detail = f"HTTP {status}" + (f": {text.strip()[:200]}" if text.strip() else "")
    if 200 <= status < 300:
        return PushResult("delivered", status, None, detail)
    if status in (404, 410):
        return PushResult("gone", status, None, detail)
    if status == 413:
        return PushResult("too_large", status, None, detail)
    if status in (401, 403):
        logger.error(
            "web push refused our VAPID credentials (%s from %s): check the [push] VAPID key pair "
            "and subject, and that the subscription was made with our public key",
            detail, endpoint,
        )
        return PushResult("vapid_error", status, None, detail)
    if status == 429 or status >= 500:
        return PushResult("retry", status, parse_retry_after(headers.get("Retry-After")), detail)
    return PushResult("failed", status, None, detail)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` if absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
