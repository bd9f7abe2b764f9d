"""The engine loop: committed events, in order, to segments then automations.

It remembers the id of the last event it finished in the store, so after a
restart it goes on from there; everything it does is keyed so that going over
the same events twice changes nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..bus import EventBus
from ..store.base import StoredEvent

log = logging.getLogger("retenshund.engine")
CURSOR_KEY = "engine.cursor"
SAVE_EVERY_S = 0.5


class Engine:
    def __init__(self, store: Any, bus: EventBus, segments: Any, automations: Any, metrics: Any = None) -> None:
        self.store = store
        self.bus = bus
        self.segments = segments
        self.automations = automations
        self.metrics = metrics
        self.cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._saved_at = 0.0

    async def start(self) -> None:
        saved = await self.store.get_state(CURSOR_KEY)
        # A fresh database starts at its newest event: history is not replayed
        # into automations that did not exist when it happened.
        self.cursor = int(saved) if saved is not None else await self.store.last_event_id()
        if saved is None:
            await self.store.set_state(CURSOR_KEY, str(self.cursor))
        self._sub = self.bus.subscribe("engine", self.cursor)
        self._task = asyncio.create_task(self._loop(), name="engine")

    async def close(self) -> None:
        self._sub.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.set_state(CURSOR_KEY, str(self.cursor))

    async def _loop(self) -> None:
        while True:
            batch = await self._sub.next_batch(500)
            if not batch:
                return
            self._idle.clear()
            try:
                await self.process(batch)
            except Exception:
                log.exception("engine failed on a batch", extra={"first": batch[0].id, "last": batch[-1].id})
            finally:
                if self._sub.lag == 0:
                    self._idle.set()

    async def process(self, batch: list[StoredEvent]) -> None:
        # Side by side: what segments write (memberships, their entered/exited
        # events) comes back through the bus as events of its own, so automations
        # never need to wait for it, and time-to-trigger does not include it.
        # Most batches give the segment engine nothing to do (no segment counts
        # them, their users were active today already): then no tasks to gather.
        if self.segments is not None and self.segments.wants(batch):
            await asyncio.gather(self.segments.on_events(batch), self.automations.on_events(batch))
        else:
            await self.automations.on_events(batch)
        self.cursor = batch[-1].id
        # The cursor is saved at most every SAVE_EVERY_S: after a crash the engine
        # goes over at most that much again, which its step keys make harmless.
        now = time.monotonic()
        if now - self._saved_at >= SAVE_EVERY_S:
            self._saved_at = now
            await self.store.set_state(CURSOR_KEY, str(self.cursor))

    async def settle(self, timeout: float = 10.0) -> None:
        """Until every event committed so far has been processed (tests, benchmarks)."""
        target = await self.store.last_event_id()

        async def wait() -> None:
            while self.cursor < target:
                self._idle.clear()
                await self._idle.wait()

        await asyncio.wait_for(wait(), timeout)
