"""Our uvicorn WebSocket protocol as an ASGI server: a small Starlette app on a
real uvicorn, real clients (``websockets`` and a raw one for what a polite
client library would never send)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from retenshund.channels.wsserver import PUSH_EXTENSION, text_frame
from tests.support.ws import BINARY, CLOSE, CONT, TEXT, Live, RawClient, serving, until

events: list[Any] = []


async def echo(ws: WebSocket) -> None:
    """Echoes text; reports what it sees into ``events``."""
    await ws.accept(subprotocol="inbox.v1" if "inbox.v1" in ws.scope["subprotocols"] else None,
                    headers=[(b"x-served-by", b"retenshun")])
    events.append(("scope", ws.scope["path"], ws.scope["query_string"], PUSH_EXTENSION in ws.scope["extensions"]))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                events.append(("disconnect", message["code"]))
                return
            if message.get("text") is not None:
                text = message["text"]
                if text == "close-4000":
                    await ws.close(4000, "asked to")
                    return
                if text == "crash":
                    raise RuntimeError("boom")
                if text == "return":
                    return
                if text == "push":
                    sock = ws.scope["extensions"][PUSH_EXTENSION]
                    sock.push(text_frame(b"pushed-1") + text_frame(b"pushed-2"))
                    continue
                await ws.send_text("echo:" + text)
            else:
                await ws.send_bytes(b"echo:" + message["bytes"])
    except WebSocketDisconnect as exc:
        events.append(("disconnect", exc.code))


async def refuse(ws: WebSocket) -> None:
    await ws.close(code=1008)


async def never_accepts(ws: WebSocket) -> None:
    return


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    events.clear()
    app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/refuse", refuse),
                            WebSocketRoute("/never", never_accepts)])
    async with serving(app, ws_max_size=64 * 1024) as server:
        yield server


async def test_text_and_binary_round_trip_with_path_query_and_extension(live: Live) -> None:
    async with connect(live.ws_url("/echo?x=1")) as ws:
        await ws.send("hi")
        assert await ws.recv() == "echo:hi"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"echo:\x00\x01"
    assert ("scope", "/echo", b"x=1", True) in events


async def test_subprotocol_and_accept_headers_reach_the_client(live: Live) -> None:
    async with connect(live.ws_url("/echo"), subprotocols=["inbox.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "inbox.v1"
        assert ws.response is not None
        assert ws.response.headers["x-served-by"] == "retenshun"


async def test_compression_is_not_negotiated_even_when_offered(live: Live) -> None:
    async with connect(live.ws_url("/echo"), compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send("x" * 5000)
        assert await ws.recv() == "echo:" + "x" * 5000


async def test_the_push_extension_writes_frames_in_order(live: Live) -> None:
    async with connect(live.ws_url("/echo")) as ws:
        await ws.send("push")
        assert await ws.recv() == "pushed-1"
        assert await ws.recv() == "pushed-2"
        await ws.send("after")
        assert await ws.recv() == "echo:after"


async def test_close_before_accept_is_an_http_403(live: Live) -> None:
    with pytest.raises(InvalidStatus) as err:
        async with connect(live.ws_url("/refuse")):
            pass
    assert err.value.response.status_code == 403


async def test_an_unknown_path_is_refused_with_403(live: Live) -> None:
    with pytest.raises(InvalidStatus) as err:
        async with connect(live.ws_url("/nope")):
            pass
    assert err.value.response.status_code == 403


async def test_an_app_that_never_accepts_gets_a_500(live: Live) -> None:
    with pytest.raises(InvalidStatus) as err:
        async with connect(live.ws_url("/never")):
            pass
    assert err.value.response.status_code == 500


async def test_the_apps_close_code_and_reason_reach_the_client(live: Live) -> None:
    async with connect(live.ws_url("/echo")) as ws:
        await ws.send("close-4000")
        with pytest.raises(ConnectionClosed) as err:
            await ws.recv()
    assert err.value.rcvd is not None
    assert (err.value.rcvd.code, err.value.rcvd.reason) == (4000, "asked to")


async def test_an_app_crash_after_accept_closes_with_1011(live: Live) -> None:
    async with connect(live.ws_url("/echo")) as ws:
        await ws.send("crash")
        with pytest.raises(ConnectionClosed) as err:
            await ws.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 1011


async def test_an_app_that_returns_without_closing_closes_normally(live: Live) -> None:
    async with connect(live.ws_url("/echo")) as ws:
        await ws.send("return")
        with pytest.raises(ConnectionClosed) as err:
            await ws.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 1000


async def test_the_clients_close_code_reaches_the_app(live: Live) -> None:
    async with connect(live.ws_url("/echo")) as ws:
        await ws.send("hi")
        await ws.recv()
        await ws.close(4321, "bye")
    await until(lambda: ("disconnect", 4321) in events, 5, "the app to see the close code")


async def test_fragmented_messages_are_reassembled(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    assert c.status == 101
    c.send(TEXT, b"frag", fin=False)
    c.send(CONT, b"men", fin=False)
    c.send(CONT, b"ted", fin=True)
    assert await c.text() == b"echo:fragmented"
    await c.close()


async def test_invalid_utf8_closes_with_1007(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    c.send(TEXT, b"\xff\xfe")
    with pytest.raises(ConnectionAbortedError) as err:
        await c.text()
    assert err.value.args[0] == 1007
    await c.close()


async def test_a_message_over_the_size_limit_closes_with_1009(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    c.send(BINARY, b"x" * (64 * 1024 + 1))
    with pytest.raises(ConnectionAbortedError) as err:
        await c.text()
    assert err.value.args[0] == 1009
    await c.close()


async def test_an_unmasked_client_frame_is_a_protocol_error(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    c.writer.write(bytes((0x81, 2)) + b"hi")  # clients must mask
    with pytest.raises(ConnectionAbortedError) as err:
        await c.text()
    assert err.value.args[0] == 1002
    await c.close()


async def test_a_bad_handshake_gets_an_http_error_not_a_socket(live: Live) -> None:
    reader, writer = await asyncio.open_connection(live.host, live.port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")  # no Sec-WebSocket-Key
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 400")
    writer.close()


async def test_server_pings_are_sent_and_answered_pongs_keep_the_socket(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    sock = await _server_socket(live)
    sock.keepalive(0.05, 0.1)
    reader = asyncio.create_task(_read_forever(c))
    await until(lambda: c.pings >= 3, 10, "three server pings")
    c.send(TEXT, b"still here")
    await until(lambda: b"echo:still here" in c.seen, 5, "the echo after the pings")  # type: ignore[attr-defined]
    reader.cancel()
    await c.close()


async def test_a_peer_that_stops_answering_is_dropped_after_the_ping_timeout(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    sock = await _server_socket(live)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sock.keepalive(0.1, 0.2)  # and the client never reads again
    await until(lambda: ("disconnect", 1011) in events, 5, "the server to give up on the silent peer")
    assert 0.1 <= loop.time() - started < 0.3 + 1.0
    with pytest.raises((EOFError, ConnectionAbortedError)):
        while True:
            await c.text(answer_pings=False)
    await c.close()


async def test_shutdown_closes_open_sockets_with_1012() -> None:
    events.clear()
    app = Starlette(routes=[WebSocketRoute("/echo", echo)])
    async with serving(app) as live:
        ws = await connect(live.ws_url("/echo"))
        await ws.send("hi")
        assert await ws.recv() == "echo:hi"
        live.server.should_exit = True
        with pytest.raises(ConnectionClosed) as err:
            await asyncio.wait_for(ws.recv(), 10)
    assert err.value.rcvd is not None and err.value.rcvd.code == 1012


async def test_a_close_frame_from_the_client_is_echoed(live: Live) -> None:
    c = await RawClient.connect(live.host, live.port, "/echo")
    c.send(CLOSE, struct.pack("!H", 1000) + b"done")
    opcode, payload = await c.frame()
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1000
    with pytest.raises(EOFError):
        await c.frame()
    await c.close()


# -- helpers -------------------------------------------------------------------

async def _server_socket(live: Live) -> Any:
    """The protocol object of the only open connection (via the scope the app saw)."""
    conns = await until(lambda: [c for c in live.server.server_state.connections
                                 if getattr(c, "accepted", False)], 5, "the connection to open")
    assert len(conns) == 1
    return conns[0]


async def _read_forever(c: RawClient) -> None:
    c.seen = []  # type: ignore[attr-defined]
    while True:
        c.seen.append(await c.text())  # type: ignore[attr-defined]


async def test_an_upgraded_connection_leaves_nothing_for_the_garbage_collector(live: Live) -> None:
    # Its HTTP half is freed by reference counting at the upgrade: while thousands
    # of sockets connect, no cyclic collections pile up behind them.
    import gc

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    def http_halves() -> int:
        return sum(1 for o in gc.get_objects() if issubclass(type(o), HttpToolsProtocol))

    gc.collect()
    gc.disable()
    try:
        before = http_halves()
        for _ in range(20):
            async with connect(f"ws://{live.host}:{live.port}/echo") as ws:
                await ws.send("hi")
                assert await ws.recv() == "echo:hi"
        assert http_halves() == before
    finally:
        gc.enable()
