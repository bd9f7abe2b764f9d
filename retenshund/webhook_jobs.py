"""Background work for inbound webhooks: forget old seen ids and unmatched
webhooks, and replay unmatched ones when a user gets the trait they wait for.

Replay follows the event bus: an ``identify`` that sets a trait some webhook map
looks users up by probes the unmatched webhooks for that value (one indexed
query). At start, one sweep retries every pending unmatched webhook, which covers
an identify that committed just before a crash."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import webhooks
from .bus import EventBus, Subscription
from .clock import Clock
from .store.base import StoredEvent

log = logging.getLogger("retenshund.webhooks")
PRUNE_EVERY_S = 3600.0


class WebhookJobs:
    def __init__(self, store: Any, bus: EventBus, clock: Clock, traits: list[str]) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.traits = set(traits)
        self.cursor = 0  # last event id the replayer has looked at
        self._progress = asyncio.Condition()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.ensure_trait_indexes(sorted(self.traits))
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="webhooks-prune"))
        if not self.traits:
            return  # no map looks users up by a trait: nothing can be replayed
        self.cursor = await self.store.last_event_id()
        self._sub = self.bus.subscribe("webhook-replay", self.cursor)
        await self._replay(None, None)
        self._tasks.append(asyncio.create_task(self._follow(self._sub), name="webhooks-replay"))

    async def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def caught_up(self, event_id: int) -> None:
        """Until the replayer has handled every event up to ``event_id`` (for tests)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.cursor >= event_id or not self.traits)

    async def _follow(self, sub: Subscription) -> None:
        while not sub.closed:
            batch = await sub.next_batch()
            if not batch:
                continue
            for event in batch:
                for trait, value in self._trait_values(event):
                    await self._replay(trait, value)
            async with self._progress:
                self.cursor = batch[-1].id
                self._progress.notify_all()

    def _trait_values(self, event: StoredEvent) -> list[tuple[str, str | int]]:
        if event.type != "identify" or event.profile_user_id is None:
            return []
        traits = event.data.get("traits")
        if not isinstance(traits, dict):
            return []
        return [(name, value) for name, value in traits.items()
                if name in self.traits and isinstance(value, (str, int)) and not isinstance(value, bool)]

    async def _replay(self, trait: str | None, value: str | int | None) -> None:
        now = self.clock.now_ms()
        try:
            count = await self.store.replay_unmatched_webhooks(trait, value, since_ms=now - webhooks.REPLAY_WINDOW_MS,
                                                              now_ms=now)
        except Exception:
            log.exception("replaying unmatched webhooks failed", extra={"trait": trait})
            return
        if count:
            log.info("replayed unmatched webhooks", extra={"count": count, "trait": trait})

    async def _prune_loop(self) -> None:
        while True:
            now = self.clock.now_ms()
            try:
                await self.store.prune_webhooks(seen_before_ms=now - webhooks.DEDUPE_MS,
                                                unmatched_before_ms=now - webhooks.UNMATCHED_KEEP_MS)
            except Exception:
                log.exception("pruning webhook records failed")
            await asyncio.sleep(PRUNE_EVERY_S)
