"""The in-app WebSocket hub: user id -> open connections (tabs, devices).

``send`` and ``broadcast_users`` are synchronous and never wait on a socket:
the frames are framed once (``text_frame``) and the same bytes are written to
each connection's transport, the way ``websockets.broadcast()`` writes; no
coroutine per connection, no ``gather``. A connection whose unsent bytes pass
``max_buffer`` is a consumer that cannot keep up: it is dropped (its browser
reconnects and catches up from the hello's unread count and GET /v1/inbox)
instead of growing the daemon's memory.

Writing straight to the transport needs the ``retenshun.push`` ASGI extension
of our WebSocket protocol (retenshund/channels/wsserver.py, what ``retenshund``
serves with). Under another ASGI server the hub falls back to ASGI ``send``
through a small per-connection queue: same order, same slow-consumer limit.

Heartbeats: each connection is pinged every ``ping_interval`` seconds and
dropped when nothing (pong or message) comes back within ``ping_timeout``
(done by the protocol, which sees the pongs; under a fallback server the
server's own keepalive applies). Clients may also send ``{"type": "ping"}``
and get ``{"type": "pong"}`` (retenshund/api/inbox_ws.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .wsserver import text_frame

log = logging.getLogger("retenshund.hub")

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


def encode(frames: list[bytes]) -> bytes:
    """JSON text payloads -> the bytes of their WebSocket frames, ready to write."""
    if len(frames) == 1:
        return text_frame(frames[0])
    return b"".join([text_frame(f) for f in frames])


class Tab:
    """One open connection of one user, as the hub sees it."""

    __slots__ = ("hub", "user_id", "sink", "held", "closed")

    def __init__(self, hub: Hub, user_id: str, sink: Any) -> None:
        self.hub = hub
        self.user_id = user_id
        self.sink = sink
        # Frames pushed before the connection's hello went out; None once it did.
        self.held: list[bytes] | None = []
        self.closed = False

    def push(self, frames: list[bytes], data: bytes) -> bool:
        """Queue ``frames`` (``data`` is the same, framed). False when not reached."""
        if self.closed:
            return False
        held = self.held
        if held is not None:
            held.extend(frames)
            if len(held) > self.hub.max_held:
                self.drop("too many frames before the hello")
                return False
            return True
        return self._written(self.sink.push(data))

    def _written(self, size: int) -> bool:
        """After a write: ``size`` bytes are unsent (-1: the socket is gone). Past
        the buffer limit the consumer is too slow and is dropped, not buffered."""
        if size < 0:
            return False
        if size > self.hub.max_buffer:
            self.hub._dropped_slow()
            self.drop(f"slow consumer: {size} bytes unsent")
            return False
        return True

    def reply(self, frame: bytes) -> bool:
        """A frame for this connection only (pong, error), in order with pushes."""
        return self.push([frame], text_frame(frame))

    def ready(self, hello: bytes) -> None:
        """Send ``hello`` first, then whatever was pushed while it was prepared."""
        held, self.held = self.held, None
        frames = [hello, *(held or ())]
        self.push(frames, encode(frames))

    def drop(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("dropping inbox connection", extra={"user_id": self.user_id, "why": why})
        self.sink.abort()

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.sink.close(code, reason)


class AsgiSink:
    """The fallback for ASGI servers without the push extension: frames go
    through ``send`` in order, from one writer task started when needed."""

    __slots__ = ("send", "queue", "queued", "task", "dead", "__weakref__")

    def __init__(self, send: AsgiSend) -> None:
        self.send = send
        self.queue: deque[bytes] = deque()
        self.queued = 0  # bytes waiting
        self.task: asyncio.Task[None] | None = None
        self.dead = False

    def push_frames(self, frames: list[bytes]) -> int:
        if self.dead:
            return -1
        self.queue.extend(frames)
        self.queued += sum(len(f) for f in frames)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._write())
        return self.queued

    async def _write(self) -> None:
        try:
            while self.queue:
                frame = self.queue.popleft()
                self.queued -= len(frame)
                await self.send({"type": "websocket.send", "text": frame.decode()})
        except Exception:  # the connection went away under us
            self.dead = True
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    def abort(self) -> None:
        self.dead = True
        self.queue.clear()
        self.queued = 0
        if self.task is not None:
            self.task.cancel()
        self._closer(1013, "try again later")

    def close(self, code: int, reason: str) -> None:
        self.dead = True
        self._closer(code, reason)

    def _closer(self, code: int, reason: str) -> None:
        async def close() -> None:
            with contextlib.suppress(Exception):
                await self.send({"type": "websocket.close", "code": code, "reason": reason})
        # Held on self: the loop keeps only a weak reference to a task.
        self.task = asyncio.get_running_loop().create_task(close())


class AsgiTab(Tab):
    __slots__ = ()

    def push(self, frames: list[bytes], data: bytes) -> bool:
        if self.closed:
            return False
        if self.held is not None:
            return super().push(frames, data)
        return self._written(self.sink.push_frames(frames))


class Hub:
    """Connections by user id. Create one per app (lifespan); not thread-safe:
    call it from the event loop's thread."""

    def __init__(self, *, max_buffer: int = 64 * 1024, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, max_held: int = 256) -> None:
        self.max_buffer = max_buffer
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_held = max_held
        self._users: dict[str, list[Tab]] = {}
        self.total = 0
        self.slow_closed = 0  # connections dropped for not keeping up
        self._slow_counter: Any = None

    def register_metrics(self, registry: Any) -> None:
        """Expose the hub on a prometheus_client registry (the app's /metrics):
        open connections, connected users, connections dropped as too slow."""
        from prometheus_client import Counter, Gauge

        Gauge("retenshun_inbox_connections", "Open inbox WebSocket connections",
              registry=registry).set_function(lambda: self.total)
        Gauge("retenshun_inbox_users_connected", "Users with at least one open inbox WebSocket",
              registry=registry).set_function(lambda: len(self._users))
        self._slow_counter = Counter("retenshun_inbox_slow_dropped", "Inbox WebSockets dropped for not keeping up",
                                     registry=registry)

    def _dropped_slow(self) -> None:
        self.slow_closed += 1
        if self._slow_counter is not None:
            self._slow_counter.inc()

    # -- connections -------------------------------------------------------------

    def attach(self, user_id: str, scope: dict[str, Any], send: AsgiSend) -> Tab:
        """Register an accepted WebSocket of ``user_id``. Frames sent to the user
        are held until ``tab.ready(hello)``; call ``detach`` when it closes."""
        native = scope.get("extensions", {}).get("retenshun.push")
        tab: Tab
        if native is not None:
            tab = Tab(self, user_id, native)
            native.keepalive(self.ping_interval, self.ping_timeout)
        else:
            tab = AsgiTab(self, user_id, AsgiSink(send))
        tabs = self._users.get(user_id)
        if tabs is None:
            self._users[user_id] = [tab]
        else:
            tabs.append(tab)
        self.total += 1
        return tab

    def detach(self, tab: Tab) -> None:
        tab.closed = True
        tabs = self._users.get(tab.user_id)
        if tabs is None or tab not in tabs:
            return
        tabs.remove(tab)
        if not tabs:
            del self._users[tab.user_id]
        self.total -= 1

    def connections(self, user_id: str) -> int:
        return len(self._users.get(user_id, ()))

    def users(self) -> int:
        return len(self._users)

    # -- sending -----------------------------------------------------------------

    def send(self, user_id: str, frames: list[bytes]) -> int:
        """Queue JSON ``frames`` on every connection of ``user_id`` without
        waiting; returns how many connections were reached."""
        tabs = self._users.get(user_id)
        if not tabs or not frames:
            return 0
        data = encode(frames)
        reached = 0
        for tab in tabs:
            reached += tab.push(frames, data)
        return reached

    def broadcast_users(self, user_ids: Iterable[str], frames: list[bytes]) -> int:
        """The same frames to every connection of every user in ``user_ids``
        (framed once for all of them); returns the connections reached."""
        if not frames:
            return 0
        users = self._users
        data = encode(frames)
        reached = 0
        for user_id in user_ids:
            tabs = users.get(user_id)
            if tabs:
                for tab in tabs:
                    reached += tab.push(frames, data)
        return reached

    def close_user(self, user_id: str, code: int = 4401, reason: str = "user removed") -> int:
        """Close every connection of ``user_id`` (e.g. the user was deleted)."""
        tabs = list(self._users.get(user_id, ()))
        for tab in tabs:
            tab.close(code, reason)
        return len(tabs)

    def close(self, code: int = 1001, reason: str = "server stopping") -> None:
        """Close every connection (the daemon is stopping)."""
        for tabs in list(self._users.values()):
            for tab in list(tabs):
                tab.close(code, reason)
