"""What every handler needs: the app's services, JSON in and out, auth."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from .. import dashboard_session
from ..auth import Caller, require_key, require_user
from ..errors import ApiError
from ..jsonbody import DECODE_ERRORS, check_depth, json_error, size_text
from ..ratelimit import retry_after_header
from ..services import Services

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
JSON_LIMIT = 1024 * 1024


def services(conn: HTTPConnection) -> Services:
    return conn.app.state.services  # type: ignore[no-any-return]


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status_code=status, headers=headers, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise ApiError(413, "payload_too_large", f"the body is larger than {size_text(limit)}")
        except ValueError:
            raise ApiError(400, "invalid_header", "Content-Length must be a number") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is larger than {size_text(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode(request: Request, type_: type[T], *, limit: int = JSON_LIMIT, empty_ok: bool = False) -> T:
    """The JSON body as ``type_``, or a 400 that names the field."""
    body = await read_body(request, limit)
    if not body.strip():
        if empty_ok:
            body = b"{}"
        else:
            raise ApiError(400, "invalid_json", "body: expected a JSON object")
    try:
        value = msgspec.json.decode(body, type=type_)
    except DECODE_ERRORS as exc:
        raise json_error(exc) from None
    check_depth(body, value)
    return value


async def secret(request: HTTPConnection) -> Caller:
    svc = services(request)
    if "authorization" not in request.headers and dashboard_session.COOKIE in request.cookies:
        # The dashboard: its session cookie, plus X-CSRF-Token on changes.
        caller = await dashboard_session.caller(request)
    else:
        caller = await require_key(request, svc.keyring, scope="secret")
    limit(svc, caller)
    return caller


async def ingest_key(request: HTTPConnection, body_key: str | None = None) -> Caller:
    svc = services(request)
    caller = await require_key(request, svc.keyring, scope="ingest", body_key=body_key)
    limit(svc, caller)
    return caller


def user(request: HTTPConnection) -> Caller:
    svc = services(request)
    return require_user(request, svc.signing_secret, svc.clock.now_ms() / 1000)


def limit(svc: Services, caller: Caller, client: str | None = None) -> None:
    """The key's bucket; for a publishable key (one per app, in every visitor's
    browser) also the bucket of the client address it comes from, so one
    misbehaving page cannot use up the app's whole allowance."""
    wait = svc.limiter.check(caller.kind, caller.key_id)
    what = "this key"
    if wait == 0 and client is not None and caller.kind == "publishable":
        wait = svc.limiter.check("publishable_client", f"{caller.key_id} {client}")
        what = "this key from your address"
    if wait > 0:
        svc.metrics.rate_limited.labels(caller.kind).inc()
        raise ApiError(429, "rate_limited", f"too many requests for {what}; retry in {wait:.1f} s",
                       headers={"Retry-After": retry_after_header(wait)})


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_field", f"{name}: expected a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_field", f"{name}: must be from {low} to {high}")
    return value
