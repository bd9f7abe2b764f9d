"""Durable time: the store holds every wake-up (waiting runs, segment windows,
retries); APScheduler only says *when* to look, so nothing depends on an
in-memory timer surviving a restart.

Each kind of durable item registers a handler ``handler(now_ms) -> next_due_ms |
None`` that processes everything due and says when it next needs to run. One
APScheduler date job per kind is kept at that next time. Cron schedules are
APScheduler cron jobs. Tests drive time with a FakeClock and call ``run_due``."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from ..clock import Clock
from ..durations import DefinitionError

log = logging.getLogger("retenshund.timers")

Handler = Callable[[int], Awaitable[int | None]]


_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DOW_NUMBER = re.compile(r"(?<![/\d])\d+")


def _standard_dow(field: str) -> str:
    """Cron counts weekdays from Sunday = 0 (7 also Sunday); APScheduler from
    Monday = 0. Numbers become names, which both read the same way."""
    def name(m: re.Match[str]) -> str:
        n = int(m.group(0))
        if n > 7:
            raise ValueError(f"day of week {n} is out of range (0-7, 0 and 7 are Sunday)")
        return _DOW_NAMES[n]
    return _DOW_NUMBER.sub(name, field)


def parse_cron(expr: str, field: str, timezone: str = "UTC") -> CronTrigger:
    """A five-field crontab expression (standard meaning: weekday 0 = Sunday),
    or DefinitionError naming the field."""
    try:
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(f"expected 5 fields, got {len(parts)}")
        minute, hour, day, month, dow = parts
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_standard_dow(dow),
                           timezone=timezone)
    except (ValueError, TypeError) as exc:
        raise DefinitionError(field, f"{expr!r} is not a cron expression ({exc}); use five fields like "
                                     "\"0 9 * * 1\" (09:00 every Monday)") from None


class Timers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._scheduler = AsyncIOScheduler(timezone=_dt.UTC)
        self._handlers: dict[str, Handler] = {}
        self._next: dict[str, int] = {}
        # While a kind's handler runs, wake-ups asked for meanwhile are kept
        # here and scheduled when it returns (APScheduler would skip a job
        # whose previous run is still going, and a date job never comes back).
        self._busy: dict[str, int | None] = {}
        self._stopping = False

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def start(self) -> None:
        self._scheduler.start()
        for kind in self._handlers:
            self.wake_at(kind, self.clock.now_ms())

    def shutdown(self) -> None:
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def _job(self, fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """``fn`` as a scheduler job. The scheduler's shutdown cancels the jobs in
        flight; that is the daemon stopping, not a failure to log with a traceback."""
        async def run(*args: Any) -> None:
            try:
                await fn(*args)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
        return run

    def wake_at(self, kind: str, due_ms: int) -> None:
        """Make sure ``kind``'s handler runs no later than ``due_ms`` (clock time)."""
        if kind in self._busy:
            pending = self._busy[kind]
            self._busy[kind] = due_ms if pending is None else min(pending, due_ms)
            return
        current = self._next.get(kind)
        if current is not None and current <= due_ms:
            return
        self._next[kind] = due_ms
        if not self._scheduler.running:
            return
        delay_s = max(0.0, (due_ms - self.clock.now_ms()) / 1000)
        run_at = _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=delay_s)
        # max_instances > 1: the next wake-up is scheduled from inside the
        # running job; run_kind itself keeps one handler per kind at a time.
        self._scheduler.add_job(self._job(self._fire), DateTrigger(run_at), args=[kind], id=f"due:{kind}",
                                replace_existing=True, misfire_grace_time=None, coalesce=True, max_instances=8)

    async def _fire(self, kind: str) -> None:
        self._next.pop(kind, None)
        await self.run_kind(kind)

    async def run_kind(self, kind: str) -> None:
        handler = self._handlers[kind]
        if kind in self._busy:
            # Already running: make it look again when it is done.
            self.wake_at(kind, self.clock.now_ms())
            return
        self._busy[kind] = None
        try:
            nxt = await handler(self.clock.now_ms())
        except Exception:
            log.exception("timer handler failed", extra={"kind": kind})
            nxt = self.clock.now_ms() + 5_000  # try again soon
        finally:
            asked = self._busy.pop(kind)
        for due in (nxt, asked):
            if due is not None:
                self.wake_at(kind, due)

    async def run_due(self) -> None:
        """Run every handler once at the clock's now (tests move a FakeClock, then call this)."""
        for kind in list(self._handlers):
            self._next.pop(kind, None)
            await self.run_kind(kind)

    def add_cron(self, job_id: str, trigger: CronTrigger, callback: Callable[[], Awaitable[None]]) -> None:
        self._scheduler.add_job(self._job(callback), trigger, id=f"cron:{job_id}", replace_existing=True,
                                misfire_grace_time=300, coalesce=True)

    def remove_cron(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(f"cron:{job_id}")
        except Exception:
            pass

    def cron_jobs(self) -> list[str]:
        return [j.id.removeprefix("cron:") for j in self._scheduler.get_jobs() if j.id.startswith("cron:")]
