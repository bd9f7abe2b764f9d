"""The hub on its own: who gets which frames, in what order, and what happens
to connections that cannot keep up. Sinks here are recording fakes; the same
hub over real sockets is in tests/api/test_inbox_ws.py."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from retenshund.channels.hub import AsgiTab, Hub, encode
from retenshund.channels.wsserver import PUSH_EXTENSION, text_frame


class FakeSocket:
    """Stands in for the protocol's push extension: records writes, reports a
    write-buffer size the test controls."""

    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered
        self.closed = False
        self.aborted = False
        self.close_code: int | None = None
        self.keepalive_args: tuple[Any, Any] | None = None

    def push(self, data: bytes) -> int:
        if self.closed or self.aborted:
            return -1
        self.writes.append(data)
        return self.buffered + len(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self, code: int, reason: str) -> None:
        self.closed = True
        self.close_code = code

    def keepalive(self, interval: float | None, timeout: float | None) -> None:
        self.keepalive_args = (interval, timeout)


def scope_for(sock: FakeSocket) -> dict[str, Any]:
    return {"type": "websocket", "extensions": {PUSH_EXTENSION: sock}}


async def no_send(message: dict[str, Any]) -> None:  # pragma: no cover - never called with a push extension
    raise AssertionError("the hub must write through the push extension")


def attach(hub: Hub, user_id: str, sock: FakeSocket, hello: bytes = b'{"type":"hello"}') -> Any:
    tab = hub.attach(user_id, scope_for(sock), no_send)
    tab.ready(hello)
    return tab


def parse_frames(data: bytes) -> list[Frame]:
    """Parse server frames the way a client would (websockets' own parser)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while True:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
        except EOFError:
            return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_a_valid_unmasked_text_frame_of_any_length(size: int) -> None:
    payload = b"a" * size
    [frame] = parse_frames(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


def test_send_and_broadcast_are_plain_functions_not_coroutines() -> None:
    # The dispatcher calls them from synchronous code: they must never await.
    assert not inspect.iscoroutinefunction(Hub.send)
    assert not inspect.iscoroutinefunction(Hub.broadcast_users)


def test_send_reaches_every_connection_of_the_user_with_the_same_bytes() -> None:
    hub = Hub()
    tabs = [FakeSocket() for _ in range(3)]
    for sock in tabs:
        attach(hub, "alice", sock)
    other = FakeSocket()
    attach(hub, "bob", other)
    frames = [b'{"type":"message","message":{"id":"m1"}}', b'{"type":"unread_count","count":1}']

    assert hub.send("alice", frames) == 3

    written = [sock.writes[-1] for sock in tabs]
    assert all(w is written[0] for w in written)  # framed once, the same object written everywhere
    assert [f.data for f in parse_frames(written[0])] == frames
    assert other.writes == [text_frame(b'{"type":"hello"}')]  # bob only ever got his hello
    assert hub.connections("alice") == 3 and hub.connections("bob") == 1 and hub.total == 4


def test_sending_to_a_user_with_no_connection_reaches_nobody() -> None:
    hub = Hub()
    attach(hub, "alice", FakeSocket())
    assert hub.send("nobody", [b"{}"]) == 0
    assert hub.send("alice", []) == 0


def test_frames_pushed_before_the_hello_wait_for_it() -> None:
    hub = Hub()
    sock = FakeSocket()
    tab = hub.attach("alice", scope_for(sock), no_send)
    assert hub.send("alice", [b'{"n":1}']) == 1
    assert hub.send("alice", [b'{"n":2}']) == 1
    assert sock.writes == []  # nothing before the hello

    tab.ready(b'{"type":"hello","unread_count":2}')

    assert [f.data for f in parse_frames(b"".join(sock.writes))] == [
        b'{"type":"hello","unread_count":2}', b'{"n":1}', b'{"n":2}']


def test_too_many_frames_before_the_hello_drops_the_connection() -> None:
    hub = Hub(max_held=3)
    sock = FakeSocket()
    hub.attach("alice", scope_for(sock), no_send)
    reached = [hub.send("alice", [b"{}"]) for _ in range(5)]
    assert reached == [1, 1, 1, 0, 0]
    assert sock.aborted


def test_a_connection_over_the_buffer_limit_is_dropped_and_the_others_still_served() -> None:
    hub = Hub(max_buffer=1000)
    slow, fast = FakeSocket(), FakeSocket()
    attach(hub, "alice", slow)
    attach(hub, "alice", fast)
    slow.buffered = 2000  # its peer stopped reading

    assert hub.send("alice", [b'{"type":"message"}']) == 1

    assert slow.aborted and hub.slow_closed == 1
    assert not fast.aborted and len(fast.writes) == 2
    # A dropped connection is not written to again, even before the endpoint detaches it.
    writes = len(slow.writes)
    slow.aborted = False  # (as if the abort had not taken effect yet)
    assert hub.send("alice", [b"{}"]) == 1
    assert len(slow.writes) == writes


def test_a_closed_socket_is_not_counted_as_reached() -> None:
    hub = Hub()
    gone, alive = FakeSocket(), FakeSocket()
    attach(hub, "alice", gone)
    attach(hub, "alice", alive)
    gone.closed = True
    assert hub.send("alice", [b"{}"]) == 1


def test_detach_forgets_the_connection_and_the_user() -> None:
    hub = Hub()
    a, b = FakeSocket(), FakeSocket()
    ta = attach(hub, "alice", a)
    tb = attach(hub, "alice", b)
    hub.detach(ta)
    assert hub.connections("alice") == 1 and hub.total == 1
    hub.detach(ta)  # twice is harmless
    assert hub.total == 1
    hub.detach(tb)
    assert hub.connections("alice") == 0 and hub.total == 0 and hub.users() == 0
    assert hub.send("alice", [b"{}"]) == 0


def test_broadcast_users_frames_once_and_counts_connections() -> None:
    hub = Hub()
    socks = {f"u{i}": [FakeSocket() for _ in range(1 + i % 2)] for i in range(6)}
    for user, ss in socks.items():
        for s in ss:
            attach(hub, user, s)
    frame = b'{"type":"message","message":{"id":"all"}}'

    reached = hub.broadcast_users(["u0", "u1", "u2", "missing"], [frame])

    assert reached == 1 + 2 + 1
    written = [s.writes[-1] for u in ("u0", "u1", "u2") for s in socks[u]]
    assert all(w is written[0] for w in written)
    assert all(len(s.writes) == 1 for u in ("u3", "u4", "u5") for s in socks[u])  # only their hello


def test_attach_hands_the_heartbeat_settings_to_the_socket() -> None:
    hub = Hub(ping_interval=0.5, ping_timeout=0.25)
    sock = FakeSocket()
    attach(hub, "alice", sock)
    assert sock.keepalive_args == (0.5, 0.25)


def test_close_user_closes_all_of_that_users_connections_only() -> None:
    hub = Hub()
    a1, a2, b = FakeSocket(), FakeSocket(), FakeSocket()
    for user, s in (("alice", a1), ("alice", a2), ("bob", b)):
        attach(hub, user, s)
    assert hub.close_user("alice", 4401, "user deleted") == 2
    assert a1.close_code == a2.close_code == 4401
    assert not b.closed


def test_encode_joins_frames_in_order() -> None:
    frames = [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    assert [f.data for f in parse_frames(encode(frames))] == frames


async def test_without_the_push_extension_frames_go_through_asgi_send_in_order() -> None:
    hub = Hub(max_buffer=10_000)
    sent: list[dict[str, Any]] = []
    gate = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        await gate.wait()  # a socket that is slow to take frames
        sent.append(message)

    tab = hub.attach("alice", {"type": "websocket", "extensions": {}}, send)
    assert isinstance(tab, AsgiTab)
    tab.ready(b'{"type":"hello"}')
    for i in range(5):
        assert hub.send("alice", [f'{{"n":{i}}}'.encode()]) == 1
    gate.set()
    deadline = asyncio.get_running_loop().time() + 5
    while len(sent) < 6:
        assert asyncio.get_running_loop().time() < deadline, sent
        await asyncio.sleep(0.001)
    assert [m["text"] for m in sent] == ['{"type":"hello"}'] + [f'{{"n":{i}}}' for i in range(5)]
    assert all(m["type"] == "websocket.send" for m in sent)


async def test_without_the_push_extension_a_slow_consumer_is_closed_too() -> None:
    hub = Hub(max_buffer=1000)
    sent: list[dict[str, Any]] = []
    stuck = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.send":
            await stuck.wait()  # never set: the peer stopped reading

    tab = hub.attach("alice", {"type": "websocket", "extensions": {}}, send)
    tab.ready(b'{"type":"hello"}')
    reached = [hub.send("alice", [b"x" * 300]) for _ in range(6)]
    assert reached == [1, 1, 1, 0, 0, 0]  # hello + 3 x 300 bytes fit in 1000; the 4th does not
    assert hub.slow_closed == 1
    deadline = asyncio.get_running_loop().time() + 5
    while not any(m["type"] == "websocket.close" for m in sent):
        assert asyncio.get_running_loop().time() < deadline, sent
        await asyncio.sleep(0.001)


def test_metrics_show_connections_users_and_slow_drops() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    hub = Hub(max_buffer=100)
    hub.register_metrics(registry)
    slow = FakeSocket()
    attach(hub, "alice", slow)
    attach(hub, "alice", FakeSocket())
    attach(hub, "bob", FakeSocket())
    slow.buffered = 1000
    hub.send("alice", [b"{}"])

    text = generate_latest(registry).decode()
    assert "retenshun_inbox_connections 3.0" in text
    assert "retenshun_inbox_users_connected 2.0" in text
    assert "retenshun_inbox_slow_dropped_total 1.0" in text
