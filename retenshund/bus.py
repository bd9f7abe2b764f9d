"""The in-process event bus: committed events, in commit order, to subscribers.

Publishing never waits on a subscriber. Each subscriber has a bounded buffer;
when it overflows the buffer is dropped and the subscriber reads what it missed
from the store by event id, then goes back to live delivery. So a slow
subscriber costs memory up to its bound and never blocks ingestion or loses an
event."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from .store.base import StoredEvent

CatchUp = Callable[[int, int], Awaitable[list[StoredEvent]]]


class Subscription:
    def __init__(self, bus: EventBus, name: str, cursor: int, max_buffer: int) -> None:
        self.name = name
        self.cursor = cursor  # id of the last event handed out
        self._bus = bus
        self._buffer: deque[StoredEvent] = deque()
        self._max = max_buffer
        self._lagging = False
        self._wake = asyncio.Event()
        self.closed = False

    def _offer(self, events: list[StoredEvent]) -> None:
        if self._lagging:
            return
        if len(self._buffer) + len(events) > self._max:
            # Too far behind: forget the buffer, catch up from the store later.
            self._buffer.clear()
            self._lagging = True
        else:
            self._buffer.extend(events)
        self._wake.set()

    @property
    def lag(self) -> int:
        return len(self._buffer)

    async def next_batch(self, limit: int = 1000) -> list[StoredEvent]:
        """The next events after ``cursor`` (waits until there is at least one)."""
        while not self.closed:
            if self._lagging:
                # Leave catch-up mode before reading, so events committed while
                # we read land in the buffer and nothing falls in between.
                self._lagging = False
                self._buffer.clear()
                missed = await self._bus.catch_up(self.cursor, limit)
                if missed:
                    if len(missed) == limit:
                        self._lagging = True  # more to read from the store
                    self.cursor = missed[-1].id
                    self._drop_seen()
                    return missed
                continue
            self._drop_seen()
            if self._buffer:
                batch = []
                while self._buffer and len(batch) < limit:
                    batch.append(self._buffer.popleft())
                self.cursor = batch[-1].id
                return batch
            self._wake.clear()
            await self._wake.wait()
        return []

    def _drop_seen(self) -> None:
        while self._buffer and self._buffer[0].id <= self.cursor:
            self._buffer.popleft()

    def close(self) -> None:
        self.closed = True
        self._wake.set()
        self._bus._subs.discard(self)

    async def __aiter__(self) -> AsyncIterator[StoredEvent]:
        while not self.closed:
            for event in await self.next_batch():
                yield event


class EventBus:
    def __init__(self, catch_up: CatchUp) -> None:
        self.catch_up = catch_up
        self._subs: set[Subscription] = set()
        self.published = 0

    def subscribe(self, name: str, cursor: int, max_buffer: int = 10_000) -> Subscription:
        """Events with id greater than ``cursor`` will be delivered."""
        sub = Subscription(self, name, cursor, max_buffer)
        # Start from the store, so events committed before subscribing are not missed.
        sub._lagging = True
        sub._wake.set()
        self._subs.add(sub)
        return sub

    def lags(self) -> dict[str, int]:
        """Events buffered per subscriber name (for the metrics)."""
        out: dict[str, int] = {}
        for sub in self._subs:
            out[sub.name] = max(out.get(sub.name, 0), sub.lag)
        return out

    def publish(self, events: list[StoredEvent]) -> None:
        self.published += len(events)
        for sub in tuple(self._subs):
            sub._offer(events)

    def close(self) -> None:
        for sub in tuple(self._subs):
            sub.close()
