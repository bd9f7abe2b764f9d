"""WS /v1/inbox/ws against the real app on a real uvicorn, with real WebSocket
clients: auth, origins, the frames of the contract, tabs, heartbeats and
consumers that cannot keep up."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from retenshund import tokens
from retenshund.app import create_app
from tests.conftest import SECRET, make_config
from tests.support.ws import OURS, Live, RawClient, serving, until

SIGNING = "test-signing-secret-0123456789"  # tests/conftest.py's signing secret
ALLOWED = "https://app.example.com"

TEMPLATE = {"name": "Note", "in_app": {"title": "Hello {{ name }}", "body": "Body {{ name }}",
                                         "url": "https://app.example.com/x", "data": {"k": 1}}}


def token(user_id: str, ttl: int = 600, secret: str = SIGNING) -> str:
    return tokens.mint(secret, user_id, ttl)


def inbox(live: Live, user_id: str | None = None, *, tok: str | None = None) -> str:
    tok = tok if tok is not None else token(user_id or "nobody")
    return live.ws_url(f"/v1/inbox/ws?token={tok}")


async def frame(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def opened(live: Live, user_id: str, **kw: Any) -> ClientConnection:
    """A connected tab of ``user_id`` that has had its hello."""
    ws = await connect(inbox(live, user_id), **kw)
    hello = await frame(ws)
    assert hello["type"] == "hello"
    return ws


async def closed_with(url: str, **kw: Any) -> int:
    """Connect and return the close code the server ends the socket with."""
    async with connect(url, **kw) as ws:
        with pytest.raises(ConnectionClosed) as err:
            await asyncio.wait_for(ws.recv(), 5)
    assert err.value.rcvd is not None, "the server closed without a close frame"
    return err.value.rcvd.code


@pytest.fixture(params=[OURS], ids=["retenshun-protocol"])
async def live(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    config = make_config(tmp_path / "data", server={"allowed_origins": [ALLOWED]})
    async with serving(create_app(config, announce=False), ws=request.param) as server:
        yield server


# Tests that also run on uvicorn's stock protocol, where the hub falls back to ASGI send.
both_protocols = pytest.mark.parametrize("live", [OURS, "websockets-sansio"], indirect=True,
                                         ids=["retenshun-protocol", "uvicorn-sansio"])


async def in_app_messages(live: Live, user_id: str, n: int) -> list[str]:
    """Send ``n`` in-app messages through the real send API; their inbox ids once delivered."""
    async with httpx.AsyncClient(base_url=live.http_url, headers={"Authorization": f"Bearer {SECRET}"}) as http:
        r = await http.put("/v1/templates/note", json=TEMPLATE)
        assert r.status_code in (200, 201), r.text
        for i in range(n):
            r = await http.post("/v1/messages/send", json={"user_id": user_id, "channel": "in_app",
                                                             "template_id": "note",
                                                             "variables": {"name": f"n{i}"}})
            assert r.status_code == 202, r.text

        async def listed() -> list[str]:
            r = await http.get("/v1/inbox", headers={"Authorization": f"Bearer {token(user_id)}"})
            ids = [m["id"] for m in r.json()["messages"]]
            return ids if len(ids) == n else []

        return await until(listed, 10, f"{n} inbox messages for {user_id}")


# -- the contract's frames ---------------------------------------------------------

@both_protocols
async def test_hello_carries_the_unread_count(live: Live) -> None:
    await in_app_messages(live, "counted", 2)
    async with connect(inbox(live, "counted")) as ws:
        assert await frame(ws) == {"type": "hello", "unread_count": 2}
    async with connect(inbox(live, "fresh")) as ws:
        assert await frame(ws) == {"type": "hello", "unread_count": 0}


@both_protocols
async def test_ping_gets_pong(live: Live) -> None:
    async with connect(inbox(live, "pinger")) as ws:
        await frame(ws)
        await ws.send('{"type":"ping"}')
        assert await frame(ws) == {"type": "pong"}


async def test_a_message_sent_through_the_api_arrives_with_the_new_count(live: Live) -> None:
    async with connect(inbox(live, "receiver")) as ws:
        assert (await frame(ws))["unread_count"] == 0
        [item_id] = await in_app_messages(live, "receiver", 1)
        message = await frame(ws)
        assert message["type"] == "message"
        assert message["message"]["id"] == item_id
        assert message["message"]["title"] == "Hello n0"
        assert message["message"]["data"] == {"k": 1}
        assert set(message["message"]) == {"id", "title", "body", "url", "data", "created_at", "read_at",
                                           "archived_at"}
        assert await frame(ws) == {"type": "unread_count", "count": 1}


@both_protocols
async def test_every_tab_of_a_user_gets_what_the_hub_sends(live: Live) -> None:
    hub = live.services.extra["hub"]
    tabs = [await opened(live, "tabby") for _ in range(5)]
    try:
        assert hub.connections("tabby") == 5
        assert hub.send("tabby", [b'{"type":"message","message":{"id":"m1"}}']) == 5
        for ws in tabs:
            assert await frame(ws) == {"type": "message", "message": {"id": "m1"}}
    finally:
        for ws in tabs:
            await ws.close()
    await until(lambda: hub.connections("tabby") == 0, 5, "the closed tabs to be forgotten")


@both_protocols
async def test_frames_for_one_user_never_reach_another(live: Live) -> None:
    hub = live.services.extra["hub"]
    alice = [await opened(live, "alice") for _ in range(3)]
    bob = [await opened(live, "bob") for _ in range(2)]
    for i in range(20):
        hub.send("alice", [f'{{"type":"message","message":{{"id":"a{i}"}}}}'.encode()])
    hub.broadcast_users(["alice"], [b'{"type":"unread_count","count":20}'])
    # Anything that leaked to bob would sit in his socket before this sentinel.
    assert hub.send("bob", [b'{"type":"sentinel"}']) == 2
    for ws in bob:
        assert await frame(ws) == {"type": "sentinel"}
    for ws in alice:
        got = [await frame(ws) for _ in range(21)]
        assert [g["message"]["id"] for g in got[:20]] == [f"a{i}" for i in range(20)]
        assert got[20] == {"type": "unread_count", "count": 20}

    # The same through the real send path.
    [item] = await in_app_messages(live, "alice", 1)
    for ws in alice:
        assert (await frame(ws))["message"]["id"] == item
    hub.send("bob", [b'{"type":"sentinel"}'])
    for ws in bob:
        assert await frame(ws) == {"type": "sentinel"}
    for ws in alice + bob:
        await ws.close()


@both_protocols
async def test_reading_in_one_tab_updates_the_count_in_every_tab(live: Live) -> None:
    first, second = await in_app_messages(live, "reader", 2)
    hub = live.services.extra["hub"]
    a = await opened(live, "reader")
    b = await opened(live, "reader")
    other = await opened(live, "bystander")
    await a.send(json.dumps({"type": "read", "id": first}))
    assert await frame(a) == {"type": "unread_count", "count": 1}
    assert await frame(b) == {"type": "unread_count", "count": 1}
    # Only the reader's tabs heard of it.
    hub.send("bystander", [b'{"type":"sentinel"}'])
    assert await frame(other) == {"type": "sentinel"}
    async with httpx.AsyncClient(base_url=live.http_url) as http:
        r = await http.get("/v1/inbox", headers={"Authorization": f"Bearer {token('reader')}"})
    read = {m["id"]: m["read_at"] for m in r.json()["messages"]}
    assert read[first] is not None and read[second] is None
    for ws in (a, b, other):
        await ws.close()


async def test_a_token_cannot_read_another_users_message(live: Live) -> None:
    [theirs] = await in_app_messages(live, "victim", 1)
    async with connect(inbox(live, "attacker")) as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "read", "id": theirs}))
        reply = await frame(ws)
        assert reply["type"] == "error" and reply["code"] == "not_found"
    async with connect(inbox(live, "victim")) as ws:
        assert await frame(ws) == {"type": "hello", "unread_count": 1}


@pytest.mark.parametrize("raw", [
    "not json", "[1, 2]", '"ping"', '{"no_type": 1}', '{"type": "nope"}', '{"type": "read"}',
    '{"type": "read", "id": 5}', '{"type": "read", "id": ""}', b"\x00\x01binary",
])
async def test_malformed_frames_get_an_error_and_the_socket_lives_on(live: Live, raw: str | bytes) -> None:
    async with connect(inbox(live, "sloppy")) as ws:
        await frame(ws)
        await ws.send(raw)
        reply = await frame(ws)
        assert reply["type"] == "error" and reply["code"] in ("bad_frame", "unknown_type")
        await ws.send('{"type":"ping"}')
        assert await frame(ws) == {"type": "pong"}


async def test_a_read_the_store_cannot_do_is_an_error_frame_not_a_crash(live: Live) -> None:
    class Broken:
        async def read(self, user_id: str, item_id: str) -> bool:
            raise RuntimeError("database is locked")

    live.services.extra["inbox"] = Broken()
    async with connect(inbox(live, "unlucky")) as ws:
        await frame(ws)
        await ws.send('{"type":"read","id":"x"}')
        assert (await frame(ws))["code"] == "internal_error"
        await ws.send('{"type":"ping"}')
        assert await frame(ws) == {"type": "pong"}


# -- auth ----------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(user_id: str) -> str:
    claims = {"sub": user_id, "iat": 0, "exp": 4_102_444_800}
    return _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(msgspec.json.encode(claims)) + "."


def _retargeted(user_id: str) -> str:
    """A valid token of someone else with its subject swapped (signature no longer matches)."""
    head, _, sig = token("someone").split(".")
    body = _b64(msgspec.json.encode({"sub": user_id, "iat": 0, "exp": 4_102_444_800}))
    return f"{head}.{body}.{sig}"


@pytest.mark.parametrize("bad", ["missing", "garbage", "expired", "alg_none", "wrong_secret", "tampered"])
async def test_a_bad_token_is_closed_with_4401(live: Live, bad: str) -> None:
    tok = {"missing": "", "garbage": "not-a-jwt", "expired": token("u", ttl=-3600),
           "alg_none": _unsigned("u"), "wrong_secret": token("u", secret="another-secret-0123456789"),
           "tampered": _retargeted("u")}[bad]
    assert await closed_with(inbox(live, tok=tok)) == 4401
    assert live.services.extra["hub"].total == 0


async def test_the_token_may_come_as_a_bearer_header(live: Live) -> None:
    async with connect(live.ws_url("/v1/inbox/ws"),
                       additional_headers={"Authorization": f"Bearer {token('header_user')}"}) as ws:
        assert (await frame(ws))["type"] == "hello"
        assert live.services.extra["hub"].connections("header_user") == 1


# -- origins -------------------------------------------------------------------------

async def test_an_origin_not_allowed_is_closed_with_4403(live: Live) -> None:
    assert await closed_with(inbox(live, "u"), origin="https://evil.example") == 4403  # type: ignore[arg-type]
    # Checked before the token: a foreign page learns nothing about tokens.
    assert await closed_with(inbox(live, tok="bad"), origin="https://evil.example") == 4403  # type: ignore[arg-type]


async def test_allowed_same_and_no_origin_are_let_in(live: Live) -> None:
    for origin in (ALLOWED, f"http://{live.host}:{live.port}", None):
        async with connect(inbox(live, "u"), origin=origin) as ws:  # type: ignore[arg-type]
            assert (await frame(ws))["type"] == "hello", origin


@pytest.mark.parametrize("allowed,origin,ok", [
    ([], "https://app.example.com", False),
    ([], None, True),
    (["*"], "https://anything.example", True),
    (["https://a.example", "https://b.example/"], "https://b.example", True),
    (["https://a.example"], "http://a.example", False),
])
async def test_allowed_origins_setting(tmp_path: Path, allowed: list[str], origin: str | None, ok: bool) -> None:
    config = make_config(tmp_path / "data", server={"allowed_origins": allowed})
    async with serving(create_app(config, announce=False)) as live:
        url = inbox(live, "u")
        if ok:
            async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                assert (await frame(ws))["type"] == "hello"
        else:
            assert await closed_with(url, origin=origin) == 4403  # type: ignore[arg-type]


# -- heartbeats and slow consumers ---------------------------------------------------

async def test_a_half_dead_client_is_closed_by_the_heartbeat(live: Live) -> None:
    hub = live.services.extra["hub"]
    hub.ping_interval, hub.ping_timeout = 0.2, 0.3

    healthy = await RawClient.connect(live.host, live.port, f"/v1/inbox/ws?token={token('healthy')}")
    assert json.loads(await healthy.text())["type"] == "hello"
    seen: list[bytes] = []

    async def keep_reading() -> None:  # answers pings, as browsers do
        while True:
            seen.append(await healthy.text())

    reading = asyncio.create_task(keep_reading())

    dead = await RawClient.connect(live.host, live.port, f"/v1/inbox/ws?token={token('dead')}")
    assert json.loads(await dead.text())["type"] == "hello"
    loop = asyncio.get_running_loop()
    started = loop.time()
    # From here on the dead client reads nothing and answers no ping.
    await until(lambda: hub.connections("dead") == 0, 5, "the heartbeat to drop the silent client")
    elapsed = loop.time() - started
    assert 0.2 <= elapsed <= 0.2 + 0.3 + 1.0, elapsed
    with pytest.raises((EOFError, ConnectionAbortedError)):  # its socket was really closed
        while True:
            await dead.text(answer_pings=False)

    # The client that answers stays through several more rounds of pings.
    await until(lambda: healthy.pings >= 4, 10, "more pings to the healthy client")
    assert hub.connections("healthy") == 1
    assert hub.send("healthy", [b'{"type":"still_there"}']) == 1
    await until(lambda: b'{"type":"still_there"}' in seen, 5, "a frame to the healthy client")
    reading.cancel()
    await healthy.close()
    await dead.close()


async def test_a_slow_consumer_is_dropped_instead_of_buffered(live: Live) -> None:
    hub = live.services.extra["hub"]
    hub.max_buffer = 64 * 1024
    slow = await RawClient.connect(live.host, live.port, f"/v1/inbox/ws?token={token('slow')}", rcvbuf=4096)
    assert json.loads(await slow.text())["type"] == "hello"
    fast = await opened(live, "slow")  # another tab of the same user, reading normally
    slow_tab = hub._users["slow"][0]  # the raw client attached first
    big = json.dumps({"type": "message", "message": {"id": "m", "body": "x" * 8000}}).encode()

    peak = 0
    sent = 0
    for _ in range(20_000):  # at most 160 MB if nothing stopped it
        before = slow_tab.sink.buffered()
        peak = max(peak, before)
        reached = hub.send("slow", [big])
        assert (await frame(fast))["type"] == "message"  # the healthy tab keeps up (and lets the loop run)
        if reached < 2:
            assert reached == 1
            break
        sent += 1
    else:
        pytest.fail("the slow consumer was never dropped")

    assert hub.slow_closed == 1
    assert peak <= hub.max_buffer  # never let it hold more than the limit (plus the frame that tipped it)
    assert sent * len(big) < 32 * 1024 * 1024
    await until(lambda: hub.connections("slow") == 1, 5, "the slow tab to be detached")
    assert hub.send("slow", [b'{"type":"after"}']) == 1
    assert await frame(fast) == {"type": "after"}
    await fast.close()
    await slow.close()


async def test_shutdown_tells_clients_to_come_back(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    async with serving(create_app(config, announce=False)) as live:
        ws = await opened(live, "u")
        live.server.should_exit = True
        with pytest.raises(ConnectionClosed) as err:
            await asyncio.wait_for(ws.recv(), 10)
    assert err.value.rcvd is not None and err.value.rcvd.code == 1012
