"""The dashboard's own endpoints: sign-in and out with a session cookie, and the
live event stream over a WebSocket. Everything else the dashboard shows comes
from the public JSON API, which accepts the session cookie as a secret key
(see ``api/common.py:secret`` and ``dashboard_session.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import dashboard_session as sessions
from .. import openapi
from ..clock import iso
from ..credentials import key_hash
from ..errors import ApiError
from ..templates import CHANNEL_FIELDS, TemplateError, compile_template
from .common import IntQuery, decode, json, secret, services
from .templates import PreviewRequest, render_for, template_error
from .users import event_json

# Sign-in attempts that failed, per client address: this many in the window -> 429.
MAX_FAILURES = 10
FAILURE_WINDOW_S = 300.0
# On connect the live stream sends the events-per-minute of the last hour,
# counted from at most this many recent events, and the newest few events.
RATE_SCAN = 5000
RATE_MINUTES = 60
MAX_BACKLOG = 500
MAX_FRAME_EVENTS = 200
SESSION_RECHECK_S = 60.0

BACKLOG = IntQuery("backlog", "How many recent events to send on connect; a number outside the range is clamped"
                              " and one that is not a number counts as the default", low=0, high=MAX_BACKLOG,
                   default=100)


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # A secret key (sk_...) or the admin password from [auth] admin_password.
    secret: str


class DraftPreviewRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # The template as the editor has it now (the body of PUT /v1/templates/{id}).
    template: dict[str, Any]
    channel: str
    user_id: str | None = None
    variables: dict[str, Any] = {}
    event: dict[str, Any] | None = None


class SessionOut(msgspec.Struct, kw_only=True):
    signed_in: bool
    method: str | None = None  # secret_key | admin_password
    csrf_token: str | None = None
    expires_at: str | None = None


def own_origins(conn: HTTPConnection) -> set[str]:
    """The origins this dashboard is served from: the Host the browser used, and public_url."""
    found = set()
    host = conn.headers.get("host")
    if host:
        scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
        found.add(f"{scheme}://{host}".lower())
    public = services(conn).config.server.public_url
    if public:
        parts = urlsplit(public)
        found.add(f"{parts.scheme}://{parts.netloc}".lower())
    return found


def same_origin(conn: HTTPConnection) -> bool:
    origin = conn.headers.get("origin")
    # Browsers send Origin on every cross-origin request and on WebSockets;
    # a request without it is not a cross-site one made by a browser.
    return origin is None or origin.lower() in own_origins(conn)


def _check_origin(request: Request) -> None:
    if not same_origin(request):
        raise ApiError(403, "origin_not_allowed", "the dashboard only accepts requests from its own pages")


def _failures(request: Request) -> deque[float]:
    table: dict[str, deque[float]] = services(request).extra.setdefault("dashboard_login_failures", {})
    client = request.client.host if request.client else "?"
    if client not in table and len(table) > 10_000:
        table.clear()
    return table.setdefault(client, deque(maxlen=MAX_FAILURES))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or services(request).config.server.public_url.startswith("https://")


def _session_body(request: Request, s: sessions.Session) -> dict[str, Any]:
    return {"signed_in": True, "method": s.method, "csrf_token": sessions.csrf_token(services(request).signing_secret, s),
            "expires_at": iso(s.expires_at * 1000)}


async def _credential_method(request: Request, secret: str) -> tuple[str, str] | None:
    """("secret_key", digest) or ("admin_password", digest) when ``secret`` signs in."""
    svc = services(request)
    if secret.startswith("sk_"):
        caller = await svc.keyring.identify(secret)
        if caller is not None and caller.kind == "secret":
            return "secret_key", key_hash(secret)
        return None
    password = svc.config.auth.admin_password
    # Compared in constant time; an unset admin password signs nobody in.
    if password and hmac.compare_digest(secret.encode(), password.encode()):
        return "admin_password", sessions.password_digest(svc.signing_secret, password)
    return None


async def login(request: Request) -> Response:
    _check_origin(request)
    failures = _failures(request)
    now = time.monotonic()
    if len(failures) == MAX_FAILURES and now - failures[0] < FAILURE_WINDOW_S:
        wait = int(FAILURE_WINDOW_S - (now - failures[0])) + 1
        raise ApiError(429, "too_many_attempts", f"too many failed sign-ins from here; try again in {wait} s",
                       headers={"Retry-After": str(wait)})
    req = await decode(request, LoginRequest, limit=4096)
    found = await _credential_method(request, req.secret.strip())
    if found is None:
        failures.append(now)
        raise ApiError(401, "invalid_credentials",
                       "secret: not a valid secret key (sk_...) or admin password ([auth] admin_password)")
    failures.clear()
    svc = services(request)
    s = sessions.new_session(found[0], found[1], svc.clock.now_ms() / 1000)
    response = json(_session_body(request, s))
    response.set_cookie(sessions.COOKIE, sessions.encode(svc.signing_secret, s), max_age=sessions.TTL_S,
                        path="/", httponly=True, samesite="strict", secure=_secure(request))
    response.headers["Cache-Control"] = "no-store"
    return response


async def logout(request: Request) -> Response:
    _check_origin(request)
    response = Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


async def session(request: Request) -> Response:
    """Who is signed in (and the CSRF token again, for a reloaded page)."""
    s = await sessions.current(request)
    # 200 either way: the page asks this on every load, and "not signed in" is
    # an answer, not an error.
    response = json(_session_body(request, s) if s else {"signed_in": False})
    response.headers["Cache-Control"] = "no-store"
    return response


def _minute_counts(events: list[Any], now_ms: int) -> dict[str, Any]:
    """Events per minute (by received_at) over the last hour; ``since`` is the
    first minute fully covered by the scanned events."""
    start = (now_ms // 60_000 - RATE_MINUTES + 1) * 60_000
    since = start
    if len(events) >= RATE_SCAN and events and events[0].received_at > start:
        since = (events[0].received_at // 60_000 + 1) * 60_000
    counts: dict[int, int] = {}
    for e in events:
        if e.received_at >= since:
            minute = e.received_at // 60_000 * 60_000
            counts[minute] = counts.get(minute, 0) + 1
    return {"since": iso(since), "minutes": [[iso(m), n] for m, n in sorted(counts.items())]}


async def events_ws(ws: WebSocket) -> None:
    """Committed events as they happen, for the Live events and Overview pages.

    Frames: ``{"type": "hello", "rate": {...}}``, then
    ``{"type": "events", "events": [...], "count": N}`` (``count`` may exceed the
    events sent when a burst was thinned out); the client may send ``ping``."""
    await ws.accept()
    if not same_origin(ws):
        await ws.close(code=4403, reason="origin not allowed")
        return
    if await sessions.current(ws) is None:
        await ws.close(code=4401, reason="sign in first")
        return
    svc = services(ws)
    backlog = BACKLOG.clamp(ws)
    last = await svc.store.last_event_id()
    recent = await svc.store.events_after(max(0, last - RATE_SCAN), RATE_SCAN)
    cursor = recent[-1].id if recent else last
    sub = svc.bus.subscribe(f"dashboard-ws-{id(ws):x}", cursor, max_buffer=5000)
    try:
        await ws.send_json({"type": "hello", "rate": _minute_counts(recent, svc.clock.now_ms())})
        if backlog and recent:
            tail = recent[-backlog:]
            await ws.send_json({"type": "events", "backlog": True, "count": len(tail),
                                "events": [event_json(e) for e in tail]})
        pump = asyncio.create_task(_pump(ws, sub), name="dashboard-events-pump")
        try:
            await _listen(ws)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
    except WebSocketDisconnect:
        pass
    finally:
        sub.close()


async def _pump(ws: WebSocket, sub: Any) -> None:
    checked = time.monotonic()
    while True:
        batch = await sub.next_batch(1000)
        if not batch:  # the bus closed: the daemon is stopping
            with contextlib.suppress(Exception):
                await ws.close(code=1001, reason="server stopping")
            return
        if time.monotonic() - checked > SESSION_RECHECK_S:
            # An expired session, a revoked key or a changed password ends the stream too.
            checked = time.monotonic()
            if await sessions.current(ws) is None:
                await ws.close(code=4401, reason="the session ended; sign in again")
                return
        shown = batch[-MAX_FRAME_EVENTS:]
        await ws.send_json({"type": "events", "count": len(batch), "events": [event_json(e) for e in shown]})


async def _listen(ws: WebSocket) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text and '"ping"' in text:
            await ws.send_json({"type": "pong"})


async def preview_draft(request: Request) -> Response:
    """Render a template that is not saved yet, exactly as POST
    /v1/templates/{id}/preview would once it is: the editor's live preview."""
    await secret(request)
    svc = services(request)
    req = await decode(request, DraftPreviewRequest)
    if req.channel not in CHANNEL_FIELDS:
        raise ApiError(400, "invalid_field", "channel: use email, push or in_app")
    spec = {k: v for k, v in req.template.items() if k not in ("template_id", "version", "created_at", "updated_at")}
    try:
        compiled = compile_template("draft", spec)
    except TemplateError as exc:
        raise template_error(exc) from None
    rendered = await render_for(svc, compiled, PreviewRequest(channel=req.channel, user_id=req.user_id,
                                                              variables=req.variables, event=req.event))
    return json({"channel": req.channel, "rendered": rendered})


routes = [
    Route("/dashboard/templates/preview", preview_draft, methods=["POST"]),
    Route("/dashboard/login", login, methods=["POST"]),
    Route("/dashboard/logout", logout, methods=["POST"]),
    Route("/dashboard/session", session, methods=["GET"]),
    WebSocketRoute("/dashboard/events/ws", events_ws),
]

openapi.document(
    openapi.Endpoint("GET", "/dashboard/events/ws", "WebSocket: live committed events for the dashboard "
                     "(session cookie, same origin)", "none", query=(BACKLOG,)),
    openapi.Endpoint("POST", "/dashboard/login", "Dashboard sign-in with a secret key or the admin password: "
                     "sets an HttpOnly, SameSite=Strict session cookie and returns the CSRF token", "none",
                     LoginRequest, SessionOut),
    openapi.Endpoint("POST", "/dashboard/templates/preview", "Render an unsaved template for a user (the "
                     "dashboard editor's live preview)", "secret", DraftPreviewRequest),
    openapi.Endpoint("POST", "/dashboard/logout", "End the dashboard session (clears the cookie)", "none",
                     status=204),
    openapi.Endpoint("GET", "/dashboard/session", "The current dashboard session and its CSRF token (session cookie)", "none",
                     None, SessionOut),
)
