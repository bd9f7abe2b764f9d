"""The WebSocket protocol uvicorn runs for every upgraded connection
(``uvicorn.Config(ws="retenshund.channels.wsserver:WebSocketProtocol")``).

Why our own and not one of uvicorn's: bench/fanout (the retenshun app, 5,000
idle inbox sockets, clients offering permessage-deflate as browsers do; fan-out
of one message to all 5,000, timed by the clients in another process):

=========================================  ==================  ===========
server                                     RSS per connection  fan-out p50
=========================================  ==================  ===========
this protocol + the hub                    14.0 KB              36 ms
bare ``websockets`` + ``broadcast()``      14.6 KB              48 ms
socket.io on Node, ``io.emit``             17.2 KB              56 ms
uvicorn ``websockets-sansio``              62.3 KB (24 KB *)    154 ms
uvicorn ``wsproto``                        114.6 KB (23 KB *)   446 ms
uvicorn ``websockets`` (legacy)            129.5 KB (31 KB *)   209 ms
=========================================  ==================  ===========

(*) when the client offers no compression.

uvicorn's implementations always accept permessage-deflate (a zlib compressor
and decompressor per socket) and carry an ``asyncio.Queue``, an
``asyncio.Event`` and the handshake's request and response objects for the
whole life of the connection. This protocol uses the same sans-I/O core as
uvicorn's ``websockets-sansio`` (``websockets.server.ServerProtocol``: the
handshake, frame parsing, close codes, size limits), refuses compression (inbox
frames are a few hundred bytes), drops the handshake objects once the socket is
open, and allocates a receive queue only when the application falls behind.

It is a complete ASGI ``websocket`` server (accept with subprotocol/headers,
text and bytes, close with code and reason, close-before-accept -> HTTP 403,
backpressure on ``send``, ``websocket.disconnect`` with the peer's code), so
every Starlette WebSocket route (the dashboard's too) runs on it unchanged.

On top of ASGI it offers one extension, ``scope["extensions"]["retenshun.push"]``:
this protocol object, whose ``push(data)`` writes already-framed bytes straight
to the transport without awaiting, the way ``websockets.broadcast()`` does. The
hub (retenshund/channels/hub.py) uses it to fan one message out to thousands of
sockets from synchronous code; without the extension (another ASGI server) the
hub falls back to ordinary ASGI ``send``.

Keepalive: a WebSocket ping every ``ping_interval`` seconds (uvicorn's
``ws_ping_interval``/``ws_ping_timeout`` by default; an endpoint can set its own
with ``keepalive()``); a connection from which nothing at all (pong, message)
arrived within ``ping_timeout`` after a ping is closed with 1011 and dropped.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from typing import Any
from urllib.parse import unquote

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

try:  # the exception uvicorn's own protocols raise from send() after a disconnect
    from uvicorn.protocols.utils import ClientDisconnected
except ImportError:  # pragma: no cover
    class ClientDisconnected(OSError):  # type: ignore[no-redef]
        pass

log = logging.getLogger("uvicorn.error")

PUSH_EXTENSION = "retenshun.push"
_MAX_PENDING = 32  # received messages the app has not read yet before reading from the socket pauses
_CLOSE_TIMEOUT = 5.0  # after our close frame, wait this long for the peer's before dropping the socket


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked server-to-client text frame (RFC 6455 5.2) around
    ``payload``, which must be UTF-8. Encode once, write to many sockets."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126, n >> 8, n & 0xFF)) + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class WebSocketProtocol(asyncio.Protocol):
    """One upgraded connection. Constructed by uvicorn's HTTP protocol with
    (config, server_state, app_state) like uvicorn's own WebSocket protocols."""

    __slots__ = (
        "config", "server_state", "app_state", "loop", "transport", "ws", "connected", "response",
        "client", "pending", "waiter", "drain_waiter", "write_paused", "read_paused", "accepted",
        "closing", "lost", "disconnected", "frags", "frag_text", "timer", "ping_interval",
        "ping_timeout", "heard", "__weakref__",
    )

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:  # pragma: no cover - uvicorn loads it before serving
            config.load()
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        # No extensions offered: permessage-deflate would cost a zlib pair per socket.
        self.ws: ServerProtocol = ServerProtocol(max_size=config.ws_max_size, logger=log)
        self.connected = False  # websocket.connect was handed to the app
        self.response: Any = None  # the 101 answer, held from the request until the app accepts
        self.client: tuple[str, int] | None = None
        self.pending: deque[dict[str, Any]] | None = None  # messages the app has not received yet
        self.waiter: asyncio.Future[dict[str, Any]] | None = None  # the app waiting in receive()
        self.drain_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False
        self.accepted = False  # the 101 went out
        self.closing = False  # we sent (or are about to send) our close frame / HTTP refusal
        self.lost = False  # the TCP connection is gone
        self.disconnected = False  # the app was given websocket.disconnect
        self.frags: list[bytes] | None = None
        self.frag_text = False
        self.timer: asyncio.TimerHandle | None = None
        self.ping_interval: float | None = config.ws_ping_interval
        self.ping_timeout: float | None = config.ws_ping_timeout
        self.heard = True

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, (tuple, list)) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.closing = True
        self.server_state.connections.discard(self)
        self._cancel_timer()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        if self.ws.close_rcvd is not None:
            self._deliver_disconnect(self.ws.close_rcvd.code, self.ws.close_rcvd.reason)
        else:
            self._deliver_disconnect(1006)

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        return None  # let the transport close

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        events = ws.events_received()
        if events:
            self.heard = True
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._request(event)
        if not self.accepted and ws.handshake_exc is not None and not self.closing:
            # A request websockets could not take (header too long, ...): it queued the answer.
            self.closing = True
            self._flush()
            self.transport.close()
            return
        if ws.parser_exc is not None and not self.closing:
            # A protocol error (bad frame, too big, ...): websockets queued the close frame.
            code = ws.close_sent.code if ws.close_sent is not None else 1002
            self.closing = True
            self._deliver_disconnect(code)
        self._flush()

    # -- uvicorn hooks -----------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: say so with 1012 (service restart) and close."""
        self._cancel_timer()
        if self.accepted and not self.closing:
            self.closing = True
            self._send_close(1012, "server restarting")
            self._deliver_disconnect(1012)
        elif not self.accepted and not self.closing:
            self.closing = True
            self._refuse(http.HTTPStatus.SERVICE_UNAVAILABLE)
            self._deliver_disconnect(1006)
        self.transport.close()

    # -- handshake -------------------------------------------------------------

    def _request(self, request: Request) -> None:
        response = self.ws.accept(request)
        if response.status_code != 101:  # not a valid WebSocket handshake: websockets says why
            self.closing = True
            self.ws.send_response(response)
            self._flush()
            self.transport.close()
            return
        self.response = response
        raw_path, _, query = request.path.partition("?")
        root = self.config.root_path
        subprotocols = []
        for value in request.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend(token.strip() for token in value.split(",") if token.strip())
        sock = self.transport.get_extra_info("sockname")
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if self.transport.get_extra_info("sslcontext") else "ws",
            "server": (str(sock[0]), int(sock[1])) if isinstance(sock, (tuple, list)) else None,
            "client": self.client,
            "root_path": root,
            "path": root + unquote(raw_path),
            "raw_path": (root + raw_path).encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in request.headers.raw_items()],
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {PUSH_EXTENSION: self},
        }
        # websockets' parser generator keeps the request alive for the life of the
        # connection; its headers are in the scope now, so let them go (~1.5 KB).
        request.headers.clear()
        task = self.loop.create_task(self._run_asgi(scope))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run_asgi(self, scope: dict[str, Any]) -> None:
        try:
            result = await self.config.loaded_app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("Exception in ASGI application", exc_info=exc)
            if not self.accepted and not self.closing:
                self.closing = True
                self._refuse(http.HTTPStatus.INTERNAL_SERVER_ERROR)
            elif not self.closing:
                self.closing = True
                self._send_close(1011, "internal error")
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned %r", result)
            if not self.accepted and not self.closing:
                log.error("ASGI callable returned without completing the WebSocket handshake")
                self.closing = True
                self._refuse(http.HTTPStatus.INTERNAL_SERVER_ERROR)
            elif not self.closing:
                # The app returned without closing: close normally for it.
                self.closing = True
                self._send_close(1000, "")
        finally:
            self.response = None
            if not self.lost and self.timer is None:
                self.transport.close()

    def _refuse(self, status: http.HTTPStatus) -> None:
        self.response = None
        response = self.ws.reject(status, "" if status == http.HTTPStatus.FORBIDDEN else status.phrase)
        self.ws.send_response(response)
        self._flush()
        self.transport.close()

    # -- ASGI receive / send ---------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        pending = self.pending
        if pending:
            message = pending.popleft()
            if self.read_paused and len(pending) < _MAX_PENDING // 2 and not self.lost:
                self.read_paused = False
                self.transport.resume_reading()
            return message
        if self.disconnected:
            # Asked again after websocket.disconnect: say it again rather than hang.
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        waiter = self.loop.create_future()
        self.waiter = waiter
        try:
            return await waiter
        finally:
            self.waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if not self.accepted:
            if self.closing or self.lost:
                raise ClientDisconnected()
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                # Refused before the handshake completed: an HTTP 403, as ASGI says.
                self.closing = True
                self._refuse(http.HTTPStatus.FORBIDDEN)
                self._deliver_disconnect(1006)
                return
            raise RuntimeError(f"Expected 'websocket.accept' or 'websocket.close', got {kind!r}")
        if self.closing or self.lost:
            if kind == "websocket.close":
                return
            raise ClientDisconnected()
        if kind == "websocket.send":
            data = message.get("bytes")
            try:
                if data is not None:
                    self.ws.send_binary(data)
                else:
                    text = message.get("text")
                    if text is None:
                        raise RuntimeError("websocket.send needs 'text' or 'bytes'")
                    self.ws.send_text(text.encode())
            except InvalidState:
                raise ClientDisconnected() from None
            self._flush()
            if self.write_paused and not self.lost:
                # Backpressure: wait until the transport's buffer drains (shared
                # by every send waiting at the same time).
                waiter = self.drain_waiter
                if waiter is None or waiter.done():
                    waiter = self.drain_waiter = self.loop.create_future()
                await waiter
                if self.lost:
                    raise ClientDisconnected()
            return
        if kind == "websocket.close":
            self.closing = True
            self._send_close(message.get("code") or 1000, message.get("reason") or "")
            self._deliver_disconnect(message.get("code") or 1000, message.get("reason") or "")
            return
        raise RuntimeError(f"Expected 'websocket.send' or 'websocket.close', got {kind!r}")

    def _accept(self, message: dict[str, Any]) -> None:
        response, self.response = self.response, None
        headers = response.headers
        # Date and Server headers follow uvicorn's settings (server_header, date_header).
        del headers["Date"]
        for name, value in self.server_state.default_headers:
            headers[name.decode("latin-1")] = value.decode("latin-1")
        for name, value in message.get("headers") or ():
            headers[name.decode("latin-1")] = value.decode("latin-1")
        if message.get("subprotocol"):
            headers["Sec-WebSocket-Protocol"] = message["subprotocol"]
        self.accepted = True
        self.ws.send_response(response)
        self._flush()
        self._arm_ping()

    # -- the push extension ------------------------------------------------------

    def push(self, data: bytes) -> int:
        """Write already-framed bytes (see ``text_frame``) now, without awaiting.
        Returns the bytes waiting in the write buffer afterwards, or -1 when the
        connection is closing (nothing written)."""
        if self.closing or not self.accepted:
            return -1
        transport = self.transport
        try:
            transport.write(data)
        except Exception:  # the transport died under us (uvloop raises once its handle is closed)
            self.closing = True
            return -1
        return transport.get_write_buffer_size()

    def buffered(self) -> int:
        return -1 if self.lost else self.transport.get_write_buffer_size()

    def abort(self) -> None:
        """Drop the connection at once, discarding anything not yet written
        (a consumer too slow to keep up, a dead peer)."""
        self.closing = True
        self._cancel_timer()
        if not self.lost:
            self.transport.abort()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake from synchronous code."""
        if self.closing or self.lost:
            return
        self.closing = True
        if self.accepted:
            self._send_close(code, reason)
            self._deliver_disconnect(code, reason)
        else:
            self._refuse(http.HTTPStatus.FORBIDDEN)

    def keepalive(self, interval: float | None, timeout: float | None) -> None:
        """Ping every ``interval`` s; drop the connection when nothing arrives
        within ``timeout`` s of a ping. None turns keepalive off."""
        self.ping_interval = interval
        self.ping_timeout = timeout
        if self.accepted and not self.closing:
            self._cancel_timer()
            self._arm_ping()

    # -- internals -------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(opcode is Opcode.TEXT, frame.data)
            else:
                self.frags = [frame.data]
                self.frag_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            if self.frags is not None:
                self.frags.append(frame.data)
                if frame.fin:
                    data, self.frags = b"".join(self.frags), None
                    self._message(self.frag_text, data)
        elif opcode is Opcode.CLOSE:
            # websockets queued the echo (and the end of the stream): flush, then we're done.
            close = self.ws.close_rcvd
            if not self.closing:
                self.closing = True
            self._cancel_timer()
            self._deliver_disconnect(close.code if close else 1005, close.reason if close else "")
        # PING: websockets queued the pong; PONG: ``heard`` was set; both flushed by the caller.

    def _message(self, text: bool, data: bytes) -> None:
        if self.closing:
            return  # past our close frame: discard, as RFC 6455 allows
        if text:
            try:
                message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                self.ws.fail(1007, "invalid UTF-8")
                self.closing = True
                self._deliver_disconnect(1007)
                return
        else:
            message = {"type": "websocket.receive", "bytes": bytes(data)}
        self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            self.waiter = None
            return
        if self.pending is None:
            self.pending = deque()
        self.pending.append(message)
        if len(self.pending) >= _MAX_PENDING and not self.read_paused and not self.lost:
            self.read_paused = True
            self.transport.pause_reading()

    def _deliver_disconnect(self, code: int, reason: str = "") -> None:
        if self.disconnected:
            return
        self.disconnected = True
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()

    def _send_close(self, code: int, reason: str) -> None:
        self._cancel_timer()
        try:
            self.ws.send_close(code, reason)
        except InvalidState:
            return
        self._flush()
        if not self.lost:
            # Wait a moment for the peer's close frame; then drop the socket.
            self.timer = self.loop.call_later(_CLOSE_TIMEOUT, self._close_timeout)

    def _close_timeout(self) -> None:
        self.timer = None
        if not self.lost:
            self.transport.abort()

    def _flush(self) -> None:
        chunks = self.ws.data_to_send()
        if self.lost:
            return
        try:
            for chunk in chunks:
                if chunk:
                    self.transport.write(chunk)
                else:  # websockets' "end of stream": the closing handshake is over
                    self._cancel_timer()
                    self.transport.close()
        except Exception:  # the transport died under us; connection_lost follows
            self.closing = True

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm_ping(self) -> None:
        if self.ping_interval and self.ping_interval > 0 and not self.closing:
            self.timer = self.loop.call_later(self.ping_interval, self._ping)

    def _ping(self) -> None:
        self.timer = None
        if self.closing or self.lost or self.ws.state is not OPEN:
            return
        self.heard = False
        self.ws.send_ping(b"")
        self._flush()
        if self.ping_timeout and self.ping_timeout > 0:
            self.timer = self.loop.call_later(self.ping_timeout, self._pong_deadline)
        else:
            self._arm_ping()

    def _pong_deadline(self) -> None:
        self.timer = None
        if self.closing or self.lost:
            return
        if self.heard:
            # Alive. The next ping goes ``ping_interval`` after the last one
            # (or now, when the timeout is the longer of the two).
            assert self.ping_interval is not None and self.ping_timeout is not None
            self.timer = self.loop.call_later(max(0.0, self.ping_interval - self.ping_timeout), self._ping)
            return
        # Nothing at all since the ping: a half-dead peer. Tell it (it may not
        # read it) and drop the socket without waiting for a closing handshake.
        self.closing = True
        try:
            self.ws.fail(1011, "keepalive ping timeout")
        except InvalidState:  # pragma: no cover
            pass
        self._flush()
        self._deliver_disconnect(1011, "keepalive ping timeout")
        self.transport.abort()
