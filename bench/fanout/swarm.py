"""Many WebSocket clients in one process, cheap enough not to be the bottleneck.

A bench that times a fan-out to 5,000 sockets must not spend more time in its
own clients than the server spends sending, or every server looks the same.
The ``websockets`` client costs tens of microseconds per received message (a
task wake-up per frame); these clients are plain asyncio protocols on uvloop:
one callback per TCP read, a minimal RFC 6455 frame parser, pongs for the
server's pings, and (for socket.io) the Engine.IO v4 handshake and ping/pong.

Frame arrival times are taken with ``time.monotonic()`` (CLOCK_MONOTONIC, the
same clock in every process on the machine), so a harness can compare them with
a trigger time taken in another process.

Clients offer ``permessage-deflate`` like browsers do only when asked
(``deflate=True``); they count compressed frames but never inflate them (the
benches only count arrivals).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import Any

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client-to-server frame (RFC 6455 5.3: clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


class Client(asyncio.Protocol):
    """One WebSocket connection. ``mode`` is "ws" or "socketio"."""

    __slots__ = ("swarm", "index", "request", "mode", "transport", "buf", "upgraded", "ready",
                 "closed", "close_code", "frames", "ready_waiter", "first_text")

    def __init__(self, swarm: "Swarm", index: int, request: bytes, mode: str) -> None:
        self.swarm = swarm
        self.index = index
        self.request = request
        self.mode = mode
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.ready = False
        self.closed = False
        self.close_code: int | None = None
        self.frames = 0
        self.first_text: bytes | None = None
        self.ready_waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready_waiter.done():
            self.ready_waiter.set_result(False)
        self.swarm.on_lost(self)

    def send_text(self, text: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(TEXT, text))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[:end + 4]
            if status[9:12] != b"101":
                self.swarm.rejected += 1
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            # Plain WebSocket: the server's first text frame (the hello) marks it ready.
        while True:
            n = len(buf)
            if n < 2:
                return
            b0 = buf[0]
            length = buf[1] & 0x7F
            start = 2
            if length == 126:
                if n < 4:
                    return
                length = (buf[2] << 8) | buf[3]
                start = 4
            elif length == 127:
                if n < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                start = 10
            end = start + length
            if n < end:
                return
            opcode = b0 & 0x0F
            if opcode == TEXT or opcode == BINARY or opcode == 0:
                self.on_text(bytes(buf[start:end]))
            elif opcode == PING:
                self.transport.write(client_frame(PONG, bytes(buf[start:end])))  # type: ignore[union-attr]
            elif opcode == CLOSE:
                self.close_code = (buf[start] << 8 | buf[start + 1]) if length >= 2 else 1005
                self.closed = True
                self.transport.close()  # type: ignore[union-attr]
            del buf[:end]

    def on_text(self, payload: bytes) -> None:
        if self.mode == "socketio":
            if payload == b"2":  # Engine.IO ping (a text frame): answer pong
                self.send_text(b"3")
                return
            if not self.ready:
                if payload[:1] == b"0":  # Engine.IO open: join the default namespace
                    self.send_text(b"40")
                elif payload[:2] == b"40":  # namespace joined
                    self._ready(payload)
                return
            self.frames += 1
            self.swarm.on_frame(self, payload)
            return
        if not self.ready:
            self._ready(payload)
            return
        self.frames += 1
        self.swarm.on_frame(self, payload)

    def _ready(self, payload: bytes) -> None:
        self.ready = True
        self.first_text = payload
        if not self.ready_waiter.done():
            self.ready_waiter.set_result(True)


class Swarm:
    """Opens ``n`` clients against one server and counts frames as they land."""

    def __init__(self, host: str, port: int, *, mode: str = "ws", deflate: bool = False,
                 origin: str | None = None) -> None:
        self.host = host
        self.port = port
        self.mode = mode
        self.deflate = deflate
        self.origin = origin
        self.clients: list[Client] = []
        self.rejected = 0
        self.lost = 0
        self.received = 0
        self.target = 0
        self.arrivals: list[float] = []
        self.done: asyncio.Future[float] | None = None
        # Called for every frame after the first (hello / namespace join) with the arrival time.
        self.on_arrival: Callable[[Client, float, bytes], None] | None = None

    def request(self, path: str) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if self.deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        if self.origin:
            lines.append(f"Origin: {self.origin}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def open(self, paths: list[str], concurrency: int = 200, timeout: float = 120.0) -> float:
        """Connect one client per path (concurrency-limited); returns seconds taken."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int, path: str) -> None:
            async with sem:
                client = Client(self, len(self.clients), self.request(path), self.mode)
                self.clients.append(client)
                await loop.create_connection(lambda: client, self.host, self.port)
                await client.ready_waiter

        await asyncio.wait_for(asyncio.gather(*(one(i, p) for i, p in enumerate(paths))), timeout)
        not_ready = sum(1 for c in self.clients if not c.ready)
        if not_ready:
            raise RuntimeError(f"{not_ready} of {len(paths)} clients did not get ready "
                               f"({self.rejected} rejected, {self.lost} lost)")
        return time.monotonic() - started

    def expect(self, frames: int) -> asyncio.Future[float]:
        """A future resolved with the monotonic time at which ``frames`` more frames arrived."""
        self.received = 0
        self.target = frames
        self.arrivals = []
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def on_frame(self, client: Client, payload: bytes) -> None:
        now = time.monotonic()
        if self.on_arrival is not None:
            self.on_arrival(client, now, payload)
            return
        self.received += 1
        self.arrivals.append(now)
        if self.done is not None and self.received >= self.target and not self.done.done():
            self.done.set_result(now)

    def on_lost(self, client: Client) -> None:
        self.lost += 1

    def close(self) -> None:
        for c in self.clients:
            if c.transport is not None:
                c.transport.close()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def summary(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "p50": percentile(values, 50), "max": max(values)}
