"""Engagement below the personal baseline, end to end over the store: the daily
job, the once-per-drop event, engagement segments, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from retenshund.clock import FakeClock
from retenshund.config import ConfigError
from retenshund.durations import DAY_MS, HOUR_MS
from retenshund.engine.baseline import BaselineSettings
from retenshund.engine.engagement import settings_from_config
from retenshund.engine.segments import SegmentEngine
from retenshund.engine.timers import Timers
from retenshund.store.sqlite import SqliteStore
from tests.engine.test_segments import START, World

DAY0 = START // DAY_MS




async def live(world: World, user: str, first_day: int, days: int, per_day: int) -> None:
    """``per_day`` events a day (at 10:00) for ``days`` days, the daily job running each midnight."""
    for d in range(first_day, first_day + days):
        await world.at((DAY0 + d) * DAY_MS + 10 * HOUR_MS)
        if per_day:
            await world.send(*[world.event("track", user, name="used_feature") for _ in range(per_day)])


async def drops(world: World, user: str) -> list[dict[str, object]]:
    events = await world.store.user_events(user, limit=1000, before=None)
    return [e.data["properties"] for e in events if e.event == "engagement_dropped"]


async def test_a_drop_below_the_personal_baseline_is_reported_once(world: World) -> None:
    await world.engine.put("slipping", "Slipping", {"engagement": "below_baseline", "ratio": 0.5})
    await live(world, "u1", 0, 28, 10)
    assert await world.members("slipping") == []
    await live(world, "u1", 28, 7, 1)

    pid = await world.store.user_pid("u1")
    assert pid is not None
    engagement = await world.engine.engagement(pid)
    assert engagement is not None and engagement.state == "below_baseline"
    assert engagement.baseline == 10.0 and engagement.recent == 1.0
    [drop] = await drops(world, "u1")
    assert drop["ratio"] is not None and drop["ratio"] < 0.5  # type: ignore[operator]
    assert {"baseline", "recent", "ratio"} <= set(drop)
    assert await world.members("slipping") == ["u1"]

    # Back to normal: leaves the segment on the activity itself, and a later fall is a new drop.
    await world.send(*[world.event("track", "u1", name="used_feature") for _ in range(60)])
    assert await world.members("slipping") == []
    assert len(await drops(world, "u1")) == 1


async def test_inactivity_alone_is_caught_by_the_daily_job(world: World) -> None:
    await live(world, "u1", 0, 28, 10)
    assert await drops(world, "u1") == []
    await live(world, "u1", 28, 10, 0)  # not a single event
    assert len(await drops(world, "u1")) == 1


async def test_a_new_user_with_three_days_of_history_never_drops(world: World) -> None:
    await live(world, "u1", 0, 3, 10)
    await live(world, "u1", 3, 40, 0)
    pid = await world.store.user_pid("u1")
    assert pid is not None
    assert (await world.engine.engagement(pid)).state == "new"  # type: ignore[union-attr]
    assert await drops(world, "u1") == []


async def test_the_daily_job_only_looks_at_recently_active_users(world: World) -> None:
    await live(world, "old", 0, 1, 1)
    await live(world, "u1", 1, 50, 1)
    today = world.clock.now_ms() // DAY_MS
    candidates = await world.store.engagement_candidates(today - 35)
    assert candidates == [await world.store.user_pid("u1")]


async def test_profile_extension_shows_segments_and_engagement(world: World) -> None:
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    await world.identify("u1", plan="pro")
    profile = await world.store.get_profile("u1")
    assert profile is not None
    ext = await world.engine.profile_extension(profile)
    assert ext["segments"] == ["pro"]
    assert ext["engagement"]["state"] == "new"
    assert ext["engagement"]["recent"] == round(1 / 7, 4)
    assert ext["engagement"]["recent_days"] == 7 and ext["engagement"]["baseline_days"] == 28


def test_settings_come_from_the_engine_section_with_defaults() -> None:
    assert settings_from_config({}) == BaselineSettings()
    assert settings_from_config({"recent_days": "3", "drop_ratio": "0.4", "fatigue_cap": {"max": 3}}) == \
        BaselineSettings(recent_days=3, drop_ratio=0.4)
    with pytest.raises(ConfigError, match="engine.recent_days"):
        settings_from_config({"recent_days": "a week"})
    with pytest.raises(ConfigError, match="drop_ratio"):
        settings_from_config({"drop_ratio": 2})


async def test_custom_settings_change_the_windows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        clock = FakeClock(START)
        engine = SegmentEngine(store, clock, Timers(clock), BaselineSettings(recent_days=2, baseline_days=5,
                                                                             min_active_days=3))
        await engine.open()
        w = World(store, clock, engine.timers, engine)
        store.on_events = w.published.extend
        await live(w, "u1", 0, 5, 4)
        await live(w, "u1", 5, 2, 0)
        pid = await store.user_pid("u1")
        assert pid is not None
        e = await engine.engagement(pid)
        assert e is not None and (e.baseline, e.recent, e.state) == (4.0, 0.0, "below_baseline")
        assert len(await drops(w, "u1")) == 1
    finally:
        await store.close()
