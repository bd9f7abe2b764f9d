"""The event bus: committed events reach subscribers in order; a slow one catches up from the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retenshund.bus import EventBus
from retenshund.store.base import EventIn
from retenshund.store.sqlite import SqliteStore


def ev(i: int) -> EventIn:
    return EventIn(message_id=f"m{i}", type="track", event="e", user_id=f"u{i % 5}",
                   timestamp=1_780_000_000_000 + i, received_at=1_780_000_000_000 + i)


async def collect(sub, n: int, timeout: float = 5.0) -> list[str]:  # type: ignore[no-untyped-def]
    got: list[str] = []

    async def run() -> None:
        while len(got) < n:
            got.extend(e.message_id for e in await sub.next_batch())

    await asyncio.wait_for(run(), timeout)
    return got


Wired = tuple[SqliteStore, EventBus]


@pytest.fixture
async def wired(tmp_path: Path) -> AsyncIterator[Wired]:
    """A real store whose commits are published on a bus."""
    store = SqliteStore(tmp_path)
    await store.open()
    bus = EventBus(store.events_after)
    store.on_events = bus.publish
    try:
        yield store, bus
    finally:
        bus.close()
        await store.close()


async def test_subscriber_sees_every_committed_event_in_order(wired: Wired) -> None:
    store, bus = wired
    sub = bus.subscribe("engine", cursor=0)
    await asyncio.gather(*(store.ingest([ev(i)]) for i in range(100)))
    got = await collect(sub, 100)
    assert sorted(got, key=lambda m: int(m[1:])) == [f"m{i}" for i in range(100)]
    assert len(set(got)) == 100


async def test_a_slow_subscriber_never_blocks_publishing_and_catches_up_from_the_store(wired: Wired) -> None:
    store, bus = wired
    sub = bus.subscribe("slow", cursor=0, max_buffer=10)
    # Nobody reads while 300 events are committed: the buffer overflows.
    for start in range(0, 300, 30):
        await store.ingest([ev(i) for i in range(start, start + 30)])
    assert sub.lag <= 10
    got = await collect(sub, 300)
    assert got == [f"m{i}" for i in range(300)]


async def test_subscribing_late_replays_from_the_cursor(wired: Wired) -> None:
    store, bus = wired
    first = await store.ingest([ev(i) for i in range(5)])
    sub = bus.subscribe("late", cursor=first.stored[1].id)
    await store.ingest([ev(5)])
    assert await collect(sub, 4) == ["m2", "m3", "m4", "m5"]
