"""What every handler needs: the app's services, JSON in and out, auth."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote
from typing import Any, TypeVar

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

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
    """The caller of a user-token route: ``Authorization: Bearer <token>``, or
    the ``token`` query parameter (``USER_TOKEN``, read by ``auth.require_user``)."""
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


# Query parameters. Each is declared once, as one of the objects below, in the
# module of the route that reads it; the handler reads it through the object and
# the route lists it in ``openapi.Endpoint(..., query=(...))``, so the name,
# default and range that /openapi.json shows are the ones the handler applies.


@dataclass(frozen=True)
class Query:
    """A text, enum or boolean query parameter. The handler parses the value
    itself (``get`` returns it raw); ``enum`` and ``default`` should come from
    the same constants that parsing uses."""

    name: str
    description: str
    type: str = "string"  # the JSON schema type of the value: string | boolean
    enum: tuple[str, ...] = ()
    default: str | bool | None = None
    max_length: int | None = None
    required: bool = False

    def get(self, conn: HTTPConnection) -> str | None:
        """The raw value: None when absent, possibly empty."""
        return conn.query_params.get(self.name)

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.default is not None:
            schema["default"] = self.default
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return {"name": self.name, "in": "query", "required": self.required, "description": self.description,
                "schema": schema}


@dataclass(frozen=True)
class IntQuery:
    """A whole-number query parameter from ``low`` to ``high``: anything else is
    ``400 invalid_field`` (see ``int_param``); absent or empty is ``default``."""

    name: str
    description: str
    low: int
    high: int
    default: int | None = None  # None: absent means "not given" (read_optional)

    def read(self, request: Request) -> int:
        assert self.default is not None, f"{self.name} has no default: use read_optional"
        return int_param(request, self.name, self.default, low=self.low, high=self.high)

    def read_optional(self, request: Request) -> int | None:
        """The value, or None when the parameter is absent or empty."""
        if not request.query_params.get(self.name):
            return None
        return int_param(request, self.name, 0, low=self.low, high=self.high)

    def clamp(self, conn: HTTPConnection) -> int:
        """For a WebSocket, which cannot answer 400: a number outside the range is
        moved into it, and one that is not a number is the default."""
        assert self.default is not None, f"{self.name} has no default"
        try:
            return max(self.low, min(self.high, int(conn.query_params.get(self.name, str(self.default)))))
        except ValueError:
            return self.default

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.low, "maximum": self.high}
        if self.default is not None:
            schema["default"] = self.default
        return {"name": self.name, "in": "query", "required": False, "description": self.description,
                "schema": schema}


# Every route that authenticates with ``user()`` also takes the token this way.
USER_TOKEN = Query("token", "The user token, for a client that cannot send it as Authorization: Bearer <token>"
                            " (a browser WebSocket); the header wins when both are sent")


class RawRoute(Route):
    """A route whose path parameters may hold any character, ``/`` included,
    sent percent-encoded (``/v1/users/org%2F42``).

    The server decodes the path before routing, which would make that user's
    id two segments and the user unreachable (not even deletable); this route
    matches the path as sent (``raw_path``) and decodes each parameter after.
    Where the path as sent holds no encoded slash, or does not decode to the
    path being routed (a trailing-slash redirect, a rewrite), it routes like any
    route: on the decoded path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw_bytes = scope.get("raw_path")
        if scope["type"] != "http" or raw_bytes is None or scope.get("root_path"):
            return super().matches(scope)
        # Not a full URL: some clients (httpx's ASGI transport) leave the query on it.
        raw = raw_bytes.decode("latin-1").partition("?")[0]
        if "%2f" not in raw.lower() or unquote(raw) != scope["path"]:
            return super().matches(scope)
        match = self.path_regex.match(raw)
        if match is None:
            # Not super(): decoded, the slash would split the id and could reach
            # another user's route (u1%2Ftoken is a user id, not u1's token).
            return Match.NONE, {}
        params = dict(scope.get("path_params", {}))
        params.update({k: self.param_convertors[k].convert(unquote(v)) for k, v in match.groupdict().items()})
        child = {"endpoint": self.endpoint, "path_params": params}
        return (Match.PARTIAL if self.methods and scope["method"] not in self.methods else Match.FULL), child
