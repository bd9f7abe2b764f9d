"""WS /v1/inbox/ws: the live inbox of one user (new messages, unread count).

Auth is the signed user token (``?token=`` or ``Authorization: Bearer``); the
socket belongs to the token's subject and nothing sent over it names another
user. A bad token is accepted, then closed with 4401 (browsers only see close
codes of sockets that opened); a browser page from an origin not in
``[server] allowed_origins`` (``["*"]`` allows any; an empty list allows only
this server's own origin and clients that send no Origin, i.e. non-browsers) is
closed with 4403, checked before the token.

Frames from the server: ``{"type": "hello", "unread_count": N}`` first, then
``{"type": "message", "message": {...}}`` and ``{"type": "unread_count",
"count": N}`` as the hub pushes them. From the client: ``{"type": "ping"}`` ->
``{"type": "pong"}``; ``{"type": "read", "id": "..."}`` marks that message read
(every tab of the user then gets the new count). Anything else gets an
``{"type": "error", ...}`` frame and the socket stays open.

This is a raw ASGI endpoint rather than a Starlette ``WebSocket`` function: the
wrapper and its exception-handling frames would live as long as each idle
socket does (about 2 KB each, measured), and the socket is all this needs.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.routing import WebSocketRoute

from .. import tokens
from ..channels.hub import Hub, Tab
from ..jsonbody import DECODE_ERRORS

log = logging.getLogger("retenshund.inbox_ws")

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403

PONG = b'{"type":"pong"}'
_encode = msgspec.json.Encoder().encode


class ClientFrame(msgspec.Struct, forbid_unknown_fields=False):
    type: str
    id: Any = None


_decode_frame = msgspec.json.Decoder(ClientFrame).decode


def _error(code: str, message: str) -> bytes:
    return _encode({"type": "error", "code": code, "message": message})


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _token(scope: dict[str, Any]) -> str | None:
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    query = scope.get("query_string", b"").decode("latin-1")
    if "token=" not in query:
        return None
    values = parse_qs(query).get("token")
    return values[-1] if values else None


def origin_allowed(scope: dict[str, Any], allowed: list[str], public_url: str = "") -> bool:
    """Browsers always send Origin on a WebSocket handshake; other clients
    usually do not, and cannot be stopped by an Origin check anyway."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in {a.rstrip("/").lower() for a in allowed}:
        return True
    # Same origin: the page was served by this daemon (the dashboard, a demo page).
    host = _header(scope, b"host")
    if host:
        scheme = "https" if scope.get("scheme") == "wss" else "http"
        if origin == f"{scheme}://{host.strip().lower()}":
            return True
    if public_url:
        scheme, sep, rest = public_url.partition("://")
        if sep and origin == f"{scheme}://{rest.split('/', 1)[0]}".lower():
            return True
    return False


class InboxSocket:
    """The ASGI endpoint (``WebSocketRoute`` calls it with scope, receive, send)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        svc = scope["app"].state.services
        server = svc.config.server
        await send({"type": "websocket.accept"})
        if not origin_allowed(scope, server.allowed_origins, server.public_url):
            await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN_ORIGIN,
                        "reason": "origin not allowed (server.allowed_origins)"})
            return
        token = _token(scope)
        try:
            if not token:
                raise tokens.TokenError("no token")
            user_id = tokens.verify(svc.signing_secret, token)["sub"]
        except tokens.TokenError:
            await send({"type": "websocket.close", "code": CLOSE_UNAUTHORIZED,
                        "reason": "invalid or expired user token"})
            return
        hub: Hub = svc.extra["hub"]
        tab = hub.attach(user_id, scope, send)
        try:
            # Attached first, counted second: a message committed meanwhile is in
            # the count and is held until the hello has gone out.
            unread = await svc.store.inbox_unread(user_id)
            tab.ready(_encode({"type": "hello", "unread_count": unread}))
            await self._listen(svc, user_id, tab, receive)
        finally:
            hub.detach(tab)

    async def _listen(self, svc: Any, user_id: str, tab: Tab, receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                frame = _decode_frame(raw)
            except (*DECODE_ERRORS, ValueError):
                tab.reply(_error("bad_frame", 'send JSON objects like {"type": "ping"}'))
                continue
            if frame.type == "ping":
                tab.reply(PONG)
            elif frame.type == "read":
                if not isinstance(frame.id, str) or not frame.id:
                    tab.reply(_error("bad_frame", 'read: send {"type": "read", "id": "<message id>"}'))
                    continue
                try:
                    found = await svc.extra["inbox"].read(user_id, frame.id)
                except Exception:
                    log.exception("inbox read over the WebSocket failed", extra={"user_id": user_id})
                    tab.reply(_error("internal_error", "could not mark the message read; try again"))
                    continue
                if not found:
                    tab.reply(_error("not_found", f"no inbox message {frame.id!r}"))
            else:
                tab.reply(_error("unknown_type", f"unknown frame type {frame.type!r}; use ping or read"))


routes = [WebSocketRoute("/v1/inbox/ws", InboxSocket())]
