"""The real app under a real uvicorn in this process (for WebSocket tests), and
a bare-bones WebSocket client for the behaviours a polite client library
hides: never reading (a half-dead or slow peer) and counting server pings."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

OURS = "retenshund.channels.wsserver:WebSocketProtocol"
OURS_HTTP = "retenshund.channels.httpserver:HttpProtocol"


@dataclass
class Live:
    app: Any
    server: uvicorn.Server
    host: str
    port: int

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}:{self.port}{path}"

    @property
    def services(self) -> Any:
        return self.app.state.services


@contextlib.asynccontextmanager
async def serving(app: Any, *, ws: str = OURS, http: str = OURS_HTTP, timeout: float = 20.0,
                  **options: Any) -> AsyncIterator[Live]:
    """Serve ``app`` on a free port of 127.0.0.1 with uvicorn (lifespan on)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, ws=ws, http=http, lifespan="on", log_level="warning", server_header=False,
                            date_header=False, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done(), timeout, "uvicorn to start")
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped right after starting")
        yield Live(app, server, "127.0.0.1", port)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout)
        sock.close()


async def until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class RawClient:
    """A WebSocket client on plain asyncio streams: reads only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.pings = 0

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                      rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket()
        if rcvbuf is not None:  # set before connecting so the TCP window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer, int(head.split(b" ", 2)[1]))

    async def frame(self) -> tuple[int, bytes]:
        """The next frame (opcode, payload); EOFError when the server closed TCP."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise EOFError("the server closed the connection") from None

    async def text(self, *, answer_pings: bool = True) -> bytes:
        """The next text frame, answering (and counting) pings on the way."""
        while True:
            opcode, payload = await self.frame()
            if opcode == PING:
                self.pings += 1
                if answer_pings:
                    self.send(PONG, payload)
                continue
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise ConnectionAbortedError(code)
            return payload

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, fin=fin))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
