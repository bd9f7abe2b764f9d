"""The dispatcher: takes due delivery jobs from the outbox, renders, hands them to
the channel's sender and records what happened.

Jobs made by a send in this process are handed over directly (already leased
in the same transaction that created them), so a message goes out without
waiting for a poll; everything else (retries, deferred sends, jobs of a
process that died) is claimed from the store when due."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Protocol

import msgspec

from .clock import Clock
from .metrics import Metrics
from .store.base import InboxItem, Job, JournalEntry, Message, NewMessage, Profile
from .template_cache import TemplateCache
from .templates import RenderError, build_context, render

log = logging.getLogger("retenshund.dispatch")


class Delivery(msgspec.Struct, kw_only=True):
    # delivered | sent | retry | failed | bounced | suppressed
    status: str
    detail: str | None = None
    retry_after_s: float | None = None
    inbox: InboxItem | None = None
    # Push subscriptions the push service says are gone (404/410): deleted in
    # the transaction that records this delivery.
    gone_endpoints: list[str] = []


class Sender(Protocol):
    channel: str
    # True when delivering has a side effect outside our database: then the
    # (message, attempt) is recorded before it goes out.
    external: bool

    async def deliver(self, message: Message, content: dict[str, Any], profile: Profile | None,
                      job: Job) -> Delivery: ...

    def committed(self, message: Message, delivery: Delivery, unread: int | None) -> None: ...

    def retry_delay(self, failures: int, elapsed_s: float, delivery: Delivery) -> float | None: ...


def backoff(failures: int, *, base_s: float = 5.0, cap_s: float = 1800.0, max_failures: int = 10,
            rng: random.Random | None = None) -> float | None:
    """Exponential backoff with full jitter; None after ``max_failures``."""
    if failures >= max_failures:
        return None
    nominal = min(cap_s, base_s * 2 ** (failures - 1))
    return (rng or random).uniform(nominal / 2, nominal)


def preference_block(channel: str, category: str, preferences: dict[str, Any]) -> str | None:
    """Why the user's own preferences forbid this message, or None."""
    if preferences.get("channels", {}).get(channel) is False:
        return f"unsubscribed: {channel} turned off by the user"
    if category != "transactional" and preferences.get("categories", {}).get(category) is False:
        return f"unsubscribed: category {category} turned off by the user"
    return None


class Dispatcher:
    def __init__(self, store: Any, clock: Clock, templates: TemplateCache, senders: dict[str, Sender],
                 metrics: Metrics | None = None, *, lease_ms: int = 60_000, concurrency: int = 256,
                 claim_batch: int = 200) -> None:
        self.store = store
        self.clock = clock
        self.templates = templates
        self.senders = senders
        self.metrics = metrics
        self.lease_ms = lease_ms
        self.claim_batch = claim_batch
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        # One process owns a SQLite store: leases left by a dead predecessor
        # are void now, so its unfinished jobs go out at once.
        await self.store.release_leases()
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")

    async def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._tasks:
            # In-flight deliveries finish (or their lease lets a restart redo them).
            await asyncio.wait(self._tasks, timeout=timeout)

    def poke(self) -> None:
        """Look for due jobs now (after a reschedule, or when a test moved the clock)."""
        self._wake.set()

    def submit(self, messages: list[Message]) -> None:
        """Deliver freshly created, already leased messages (attempt 0) right away."""
        for m in messages:
            if m.status == "queued":
                self._spawn(Job(message=m, attempt=0, first_at=m.created_at))

    async def drain(self) -> None:
        """Until nothing is in flight (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    async def run_due(self) -> int:
        """Claim and run what is due now; returns how many jobs were claimed."""
        jobs = await self.store.claim_jobs(self.clock.now_ms(), self.lease_ms, self.claim_batch)
        for job in jobs:
            self._spawn(job)
        return len(jobs)

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._process(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _loop(self) -> None:
        while not self._closing:
            try:
                while await self.run_due() >= self.claim_batch:
                    pass
                due = await self.store.next_due()
            except Exception:
                log.exception("claiming jobs failed")
                due = None
            now = self.clock.now_ms()
            wait_s = 5.0 if due is None else max(0.0, min(5.0, (due - now) / 1000))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            except TimeoutError:
                pass

    async def _process(self, job: Job) -> None:
        m = job.message
        content: dict[str, Any] | None = None
        async with self._slots:
            try:
                profile = await self.store.profile_for_send(m.user_id)
                delivery, content = await self._prepare(m, profile)
                if delivery is None:
                    assert content is not None
                    sender = self.senders[m.channel]
                    if sender.external and not await self.store.begin_attempt(
                            m.message_id, job.attempt, self.clock.now_ms()):
                        return  # this attempt already went out, or a newer claim owns the job
                    delivery = await sender.deliver(m, content, profile, job)
            except Exception as exc:
                log.exception("delivery crashed", extra={"message_id": m.message_id})
                delivery = Delivery(status="retry", detail=f"internal error: {type(exc).__name__}")
            await self._record(job, delivery, content)

    async def _prepare(self, m: Message | NewMessage,
                       profile: Profile | None) -> tuple[Delivery | None, dict[str, Any] | None]:
        prefs = profile.preferences if profile else {}
        blocked = preference_block(m.channel, m.category, prefs)
        if blocked:
            return Delivery(status="suppressed", detail=blocked), None
        if m.channel not in self.senders:
            return Delivery(status="failed", detail=f"channel {m.channel} is not configured on this server"), None
        template = await self.templates.get(m.template_id or "")
        if template is None:
            return Delivery(status="failed", detail=f"template {m.template_id!r} does not exist any more"), None
        context = build_context(m.variables, m.user_id, profile.traits if profile else {}, m.event)
        try:
            return None, render(template, m.channel, context)
        except RenderError as exc:
            return Delivery(status="failed", detail=f"template error: {exc}"), None

    async def inline(self, new: list[NewMessage], profile: Profile | None) -> None:
        """Prepare in-app messages that are due now to be delivered in the very
        transaction that creates them (the inbox row is ours to write): rendered
        here, marked with their inbox row. Anything that would not simply be
        delivered (suppressed, failing) is left to the outbox path, which records why."""
        make_item = getattr(self.senders.get("in_app"), "inbox_item", None)
        if make_item is None:
            return
        now = self.clock.now_ms()
        for n in new:
            if n.channel != "in_app" or n.status != "queued" or n.due_at > now:
                continue
            delivery, content = await self._prepare(n, profile)
            if delivery is not None or content is None:
                continue
            n.rendered = content
            n.inbox = make_item(n.message_id, content, now)

    def delivered_inline(self, made: list[Message]) -> None:
        """After the commit: frames to the user's open tabs, metrics."""
        sender = self.senders.get("in_app")
        for m in made:
            if m.inbox is None or sender is None:
                continue
            if self.metrics is not None:
                self.metrics.message_done(m.channel, "delivered", None if m.delivered_at is None
                                          else (m.delivered_at - m.trigger_at) / 1000)
            sender.committed(m, Delivery(status="delivered", inbox=m.inbox), m.unread_after)

    async def _record(self, job: Job, delivery: Delivery, content: dict[str, Any] | None) -> None:
        m = job.message
        now = self.clock.now_ms()
        if delivery.status == "retry":
            sender = self.senders.get(m.channel)
            failures = job.attempt + 1
            elapsed_s = (now - job.first_at) / 1000
            delay = sender.retry_delay(failures, elapsed_s, delivery) if sender else None
            if delay is not None and delivery.retry_after_s is not None:
                delay = max(delay, delivery.retry_after_s)
            if delay is not None:
                await self.store.reschedule(m.message_id, job.attempt, now + int(delay * 1000), now,
                                            f"retry in {delay:.0f}s: {delivery.detail}")
                self.poke()
                return
            delivery = Delivery(status="failed",
                                detail=f"dead letter: gave up after {failures} attempts; last: {delivery.detail}")
        done, unread = await self.store.complete(m.message_id, job.attempt, delivery.status, now,
                                                 detail=delivery.detail, rendered=content, inbox=delivery.inbox,
                                                 gone_endpoints=delivery.gone_endpoints)
        if done is None:
            return
        if done.automation_id and done.status == "suppressed":
            # The decision trace answers "why didn't this user get it?".
            await self.store.add_journal(done.user_id, [JournalEntry(
                user_id=done.user_id, kind="suppressed", at=now, automation_id=done.automation_id,
                run_id=done.run_id, detail=f"{done.channel}: {done.reason}")])
        if self.metrics is not None:
            delivered = done.delivered_at is not None and delivery.status in ("sent", "delivered")
            self.metrics.message_done(m.channel, done.status, (done.delivered_at - done.trigger_at) / 1000
                                      if delivered and done.delivered_at is not None else None)
        sender = self.senders.get(m.channel)
        if sender is not None:
            try:
                sender.committed(done, delivery, unread)
            except Exception:
                log.exception("after-commit hook failed", extra={"message_id": m.message_id})
