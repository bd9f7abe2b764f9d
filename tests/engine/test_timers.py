"""Durable-time wake-ups: a wake-up asked for while a handler runs is never lost."""

from __future__ import annotations

import asyncio

from retenshund.clock import FakeClock
from retenshund.engine.timers import Timers, parse_cron

import pytest

from retenshund.durations import DefinitionError


async def test_a_wake_up_requested_while_the_handler_runs_happens_after_it() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    calls: list[int] = []
    second = asyncio.Event()

    async def handler(now: int) -> int | None:
        calls.append(now)
        if len(calls) == 1:
            timers.wake_at("k", now)  # more work arrived meanwhile (e.g. a run started waiting)
            return None
        second.set()
        return None

    timers.register("k", handler)
    timers.start()
    try:
        await asyncio.wait_for(second.wait(), 5)
        assert len(calls) == 2
    finally:
        timers.shutdown()


async def test_the_handler_says_when_it_is_next_needed() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    seen: list[int] = []
    done = asyncio.Event()

    async def handler(now: int) -> int | None:
        seen.append(now)
        if len(seen) == 3:
            done.set()
            return None
        return now + 10  # 10 ms later (clock time)

    timers.register("k", handler)
    timers.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        timers.shutdown()
    assert len(seen) == 3


async def test_run_due_runs_every_handler_at_the_clocks_now() -> None:
    clock = FakeClock(1000)
    timers = Timers(clock)
    seen: dict[str, int] = {}

    async def a(now: int) -> None:
        seen["a"] = now

    async def b(now: int) -> None:
        seen["b"] = now

    timers.register("a", a)
    timers.register("b", b)
    clock.advance(500)
    await timers.run_due()
    assert seen == {"a": 1500, "b": 1500}


def test_cron_expressions_are_validated_with_the_field_named() -> None:
    assert parse_cron("0 9 * * 1", "trigger.schedule") is not None
    with pytest.raises(DefinitionError) as info:
        parse_cron("every monday", "trigger.schedule")
    assert info.value.field == "trigger.schedule"


def test_cron_weekdays_count_from_sunday_as_in_crontab() -> None:
    import datetime as dt

    thursday = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    monday_9 = parse_cron("0 9 * * 1", "schedule").get_next_fire_time(None, thursday)
    sunday = parse_cron("30 8 * * 0", "schedule").get_next_fire_time(None, thursday)
    also_sunday = parse_cron("30 8 * * 7", "schedule").get_next_fire_time(None, thursday)
    assert (monday_9.strftime("%A %H:%M"), sunday.strftime("%A"), also_sunday) == ("Monday 09:00", "Sunday", sunday)
    with pytest.raises(DefinitionError):
        parse_cron("0 9 * * 8", "schedule")


async def test_stopping_while_a_handler_waits_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    # The scheduler cancels the jobs in flight when it shuts down: that is the
    # daemon stopping, not a failure to log with a traceback.
    timers = Timers(FakeClock())
    running = asyncio.Event()

    async def handler(now: int) -> int | None:
        running.set()
        await asyncio.Event().wait()  # e.g. a store read still in flight
        return None

    timers.register("k", handler)
    timers.start()
    await asyncio.wait_for(running.wait(), 5)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    timers.shutdown()
    await asyncio.wait(pending, timeout=5)
    assert all(t.done() for t in pending)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
