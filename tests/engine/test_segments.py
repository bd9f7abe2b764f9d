"""The segment engine over a real store, with a FakeClock and the timers driven by hand.

Every event the store publishes (the segment engine's own included) is fed back
to ``on_events`` in commit order, as the engine loop does, so loops would show."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from retenshund.clock import FakeClock
from retenshund.durations import DAY_MS, DefinitionError
from retenshund.engine.segments import SegmentEngine
from retenshund.engine.timers import Timers
from retenshund.store.base import EventIn, StoredEvent
from retenshund.store.sqlite import SqliteStore

START = 20_600 * DAY_MS + 9 * 3_600_000  # 09:00 UTC
WEEK = 7 * DAY_MS
LOGINS_3_IN_7D = {"event": "login", "count": {"gte": 3}, "within": "7d"}


class World:
    def __init__(self, store: SqliteStore, clock: FakeClock, timers: Timers, engine: SegmentEngine) -> None:
        self.store = store
        self.clock = clock
        self.timers = timers
        self.engine = engine
        self.published: list[StoredEvent] = []
        self._ids = itertools.count()

    def event(self, type_: str, user: str | None = None, *, name: str | None = None, anon: str | None = None,
              at: int | None = None, **data: Any) -> EventIn:
        now = self.clock.now_ms()
        return EventIn(message_id=f"m{next(self._ids)}", type=type_, event=name, user_id=user, anonymous_id=anon,
                       data=data, timestamp=now if at is None else at, received_at=now)

    async def send(self, *events: EventIn) -> list[StoredEvent]:
        stored = (await self.store.ingest(list(events))).stored
        await self.pump()
        return stored

    async def track(self, user: str, name: str, **kw: Any) -> None:
        await self.send(self.event("track", user, name=name, **kw))

    async def identify(self, user: str, **traits: Any) -> None:
        await self.send(self.event("identify", user, traits=traits))

    async def pump(self) -> None:
        while self.published:
            batch, self.published[:] = list(self.published), []
            await self.engine.on_events(batch)

    async def at(self, ms: int) -> None:
        """Move the clock to ``ms`` and run whatever timers are due."""
        self.clock.set(ms)
        await self.timers.run_due()
        await self.pump()

    async def stream(self, user: str) -> list[tuple[str | None, dict[str, Any], int]]:
        """The user's segment events, oldest first: (name, properties, timestamp)."""
        events = await self.store.user_events(user, limit=1000, before=None)
        return [(e.event, e.data.get("properties", {}), e.timestamp) for e in reversed(events)
                if e.event in ("segment_entered", "segment_exited")]

    async def members(self, segment_id: str) -> list[str]:
        return await self.engine.member_user_ids(segment_id)




# -- traits ----------------------------------------------------------------------


async def test_trait_segment_enters_and_exits_on_identify(world: World) -> None:
    await world.engine.put("pro", "Pro plan", {"trait": "plan", "op": "eq", "value": "pro"})
    await world.identify("u1", plan="pro")
    assert await world.members("pro") == ["u1"]
    await world.identify("u1", plan="free")
    assert await world.members("pro") == []
    assert await world.stream("u1") == [("segment_entered", {"segment_id": "pro"}, START),
                                         ("segment_exited", {"segment_id": "pro"}, START)]


async def test_segment_events_are_internal_and_do_not_count_as_activity(world: World) -> None:
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    await world.identify("u1", plan="pro")
    events = await world.store.user_events("u1", limit=10, before=None)
    entered = [e for e in events if e.event == "segment_entered"]
    assert len(entered) == 1 and entered[0].data["internal"] is True
    pid = entered[0].pid
    assert await world.store.activity_counts(pid, 0, 10**9) == {START // DAY_MS: 1}  # the identify only


# -- event windows and time --------------------------------------------------------


async def test_enters_on_the_third_login_and_exits_when_the_oldest_ages_out(world: World) -> None:
    await world.engine.put("active", "3 logins a week", LOGINS_3_IN_7D)
    first = START
    await world.track("u1", "login")
    await world.at(first + DAY_MS)
    await world.track("u1", "login")
    assert await world.members("active") == []
    await world.at(first + 2 * DAY_MS)
    await world.track("u1", "login")
    assert await world.members("active") == ["u1"]

    await world.at(first + WEEK - 1)
    assert await world.members("active") == ["u1"]
    await world.at(first + WEEK)
    assert await world.members("active") == []
    assert await world.stream("u1") == [("segment_entered", {"segment_id": "active"}, first + 2 * DAY_MS),
                                         ("segment_exited", {"segment_id": "active"}, first + WEEK)]


async def test_a_late_timer_stamps_each_change_with_its_own_instant(world: World) -> None:
    await world.engine.put("recent", "Logged in today", {"event": "login", "within": "1d"})
    await world.track("u1", "login")
    await world.at(START + 2 * DAY_MS)  # a day late: the daemon was down
    await world.track("u1", "login")
    await world.at(START + 10 * DAY_MS)
    assert await world.stream("u1") == [
        ("segment_entered", {"segment_id": "recent"}, START),
        ("segment_exited", {"segment_id": "recent"}, START + DAY_MS),
        ("segment_entered", {"segment_id": "recent"}, START + 2 * DAY_MS),
        ("segment_exited", {"segment_id": "recent"}, START + 3 * DAY_MS),
    ]
    assert await world.store.next_segment_timer() is None


async def test_not_within_is_entered_when_time_passes(world: World) -> None:
    await world.engine.put("lapsed", "No login for a week", {"event": "login", "not_within": "7d"})
    await world.track("u1", "login")
    assert await world.members("lapsed") == []
    await world.at(START + WEEK)
    assert await world.members("lapsed") == ["u1"]
    await world.at(START + WEEK + 5)
    await world.track("u1", "login")
    assert await world.members("lapsed") == []
    assert await world.stream("u1") == [("segment_entered", {"segment_id": "lapsed"}, START + WEEK),
                                         ("segment_exited", {"segment_id": "lapsed"}, START + WEEK + 5)]


async def test_a_new_user_is_evaluated_against_every_segment(world: World) -> None:
    await world.engine.put("lapsed", "No login for a week", {"event": "login", "not_within": "7d"})
    await world.track("newbie", "signed_up")
    assert await world.members("lapsed") == ["newbie"]


async def test_anonymous_history_counts_once_the_visitor_signs_up(world: World) -> None:
    await world.engine.put("active", "3 logins a week", LOGINS_3_IN_7D)
    for _ in range(3):
        await world.send(world.event("track", None, name="login", anon="visitor-1"))
    assert await world.members("active") == []  # anonymous: not a user yet
    await world.send(world.event("identify", "u1", anon="visitor-1", traits={"email": "a@x.io"}))
    assert await world.members("active") == ["u1"]


async def test_merging_an_anonymous_profile_brings_its_history(world: World) -> None:
    await world.engine.put("active", "3 logins a week", LOGINS_3_IN_7D)
    await world.track("u1", "login")
    for _ in range(2):
        await world.send(world.event("track", None, name="login", anon="other-device"))
    await world.send(world.event("identify", "u1", anon="other-device"))
    assert await world.members("active") == ["u1"]


# -- cost: only what can change -------------------------------------------------------


async def test_an_event_evaluates_only_its_user_and_the_segments_it_can_change(world: World) -> None:
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    await world.engine.put("active", "3 logins a week", LOGINS_3_IN_7D)
    await world.engine.put("buyers", "Bought", {"event": "purchase"})
    await world.send(*[world.event("identify", f"u{i}", traits={"plan": "free"}) for i in range(50)])
    writes = _count_writes(world)

    before = world.engine.evaluations
    await world.track("u7", "login")
    assert world.engine.evaluations - before == 1  # "active", for u7 only
    before = world.engine.evaluations
    await world.identify("u7", plan="pro")
    assert world.engine.evaluations - before == 1  # "pro", for u7 only
    assert await world.members("pro") == ["u7"]

    # An event no segment counts, from a user already seen today: no store write at all.
    calls = len(writes)
    await world.track("u7", "page_viewed")
    assert len(writes) == calls


async def test_it_says_which_batches_it_has_nothing_to_do_with(world: World) -> None:
    # The engine core skips the segment engine (and the tasks to run it beside
    # the automations) for batches it would only look at.
    await world.engine.put("buyers", "Bought", {"event": "purchase"})
    await world.identify("u1", plan="free")
    seen_today = world.event("track", "u1", name="page_viewed")
    counted = world.event("track", "u1", name="purchase")
    newcomer = world.event("track", "u2", name="page_viewed")
    [viewed] = (await world.store.ingest([seen_today])).stored
    [bought, first] = (await world.store.ingest([counted, newcomer])).stored
    world.published.clear()
    assert not world.engine.wants([viewed]) and not world.engine.wants([])
    assert world.engine.wants([bought])  # a segment counts it
    assert world.engine.wants([first])  # a user not yet active today: engagement to record


def _count_writes(world: World) -> list[None]:
    calls: list[None] = []
    original = world.store.segment_write

    async def counting(now_ms: int, fn: Any) -> Any:
        calls.append(None)
        return await original(now_ms, fn)

    world.store.segment_write = counting  # type: ignore[method-assign]
    return calls


async def test_running_the_same_batch_again_stores_nothing_twice(world: World) -> None:
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    stored = (await world.store.ingest([world.event("identify", "u1", traits={"plan": "pro"})])).stored
    world.published.clear()
    await world.engine.on_events(stored)
    await world.engine.on_events(stored)
    assert len(await world.stream("u1")) == 1


async def test_occurrence_times_are_kept_only_for_counted_events_and_only_as_long_as_needed(world: World) -> None:
    await world.engine.put("active", "3 logins a week", LOGINS_3_IN_7D)
    await world.track("u1", "login")
    await world.track("u1", "page_viewed")
    pid = await world.store.user_pid("u1")
    assert pid is not None
    assert await world.store.tracked_event_times(pid, "page_viewed") == []
    assert await world.store.tracked_event_times(pid, "login") == [START]
    await world.at(START + 30 * DAY_MS)
    await world.track("u1", "login")
    assert await world.store.tracked_event_times(pid, "login") == [START + 30 * DAY_MS]


async def test_segment_conditions_cannot_count_events_retenshun_writes(world: World) -> None:
    with pytest.raises(DefinitionError) as exc:
        await world.engine.put("loop", "Loop", {"event": "segment_entered"})
    assert exc.value.field == "condition.event"
    with pytest.raises(DefinitionError) as exc:
        await world.engine.put("opened", "Opened", {"all": [{"trait": "plan", "op": "exists"},
                                                            {"event": "message_opened", "within": "7d"}]})
    assert exc.value.field == "condition.all[1].event"
    assert await world.store.segment_rows() == []


# -- definitions --------------------------------------------------------------------


async def test_back_fill_covers_existing_users_without_events(world: World) -> None:
    await world.identify("u1", plan="pro")
    await world.identify("u2", plan="free")
    for _ in range(3):
        await world.track("u2", "login")
    assert await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"}) is True
    assert await world.engine.put("active", "Active", LOGINS_3_IN_7D) is True
    assert await world.members("pro") == ["u1"]
    assert await world.members("active") == ["u2"]
    assert await world.stream("u1") == [] and await world.stream("u2") == []
    # The back-fill set the window timer too.
    assert await world.store.next_segment_timer() == START + WEEK


async def test_editing_the_condition_re_evaluates_and_renaming_does_not(world: World) -> None:
    await world.identify("u1", plan="pro")
    await world.identify("u2", plan="team")
    await world.engine.put("paid", "Paid", {"trait": "plan", "op": "eq", "value": "pro"})
    before = world.engine.evaluations
    assert await world.engine.put("paid", "Paying", {"trait": "plan", "op": "eq", "value": "pro"}) is False
    assert world.engine.evaluations == before
    assert (await world.store.segment_row("paid")).version == 1  # type: ignore[union-attr]
    await world.engine.put("paid", "Paying", {"trait": "plan", "op": "ne", "value": "free"})
    assert await world.members("paid") == ["u1", "u2"]
    assert (await world.store.segment_row("paid")).version == 2  # type: ignore[union-attr]


async def test_a_longer_window_copies_older_history_from_the_event_log(world: World) -> None:
    await world.engine.put("week", "Week", LOGINS_3_IN_7D)
    for day in (0, 10, 20):
        await world.at(START + day * DAY_MS)
        await world.track("u1", "login")
    assert await world.members("week") == []
    await world.engine.put("month", "Month", {"event": "login", "count": {"gte": 3}, "within": "30d"})
    assert await world.members("month") == ["u1"]


async def test_delete_removes_membership_and_timers(world: World) -> None:
    await world.engine.put("active", "Active", {"event": "login", "within": "1d"})
    await world.track("u1", "login")
    assert await world.engine.delete("active") is True
    assert await world.members("active") == []
    assert await world.store.next_segment_timer() is None
    assert await world.engine.delete("active") is False


async def test_a_back_fill_cut_short_resumes_at_the_next_start(world: World, tmp_path: Path) -> None:
    await world.send(*[world.event("identify", f"u{i}", traits={"plan": "pro"}) for i in range(3)])
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    # As if the process died right after saving: members gone, cursor at the start.
    await world.store.segment_write(START, lambda tx: [tx.leave("pro", f"u{i}") for i in range(3)])
    await world.store.segment_write(START, lambda tx: tx.set_fill_cursor("pro", 0))
    fresh = SegmentEngine(world.store, world.clock, Timers(world.clock))
    await fresh.open()
    assert await fresh.member_user_ids("pro") == ["u0", "u1", "u2"]
    assert (await world.store.segment_row("pro")).fill_cursor is None  # type: ignore[union-attr]


# -- what automations ask -----------------------------------------------------------


async def test_is_member_and_evaluate_for_automation_steps(world: World) -> None:
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    await world.identify("u1", plan="pro")
    await world.track("u1", "report_exported")  # no segment counts it: read from the event log
    pid = await world.store.user_pid("u1")
    assert pid is not None
    assert await world.engine.is_member(pid, "pro") is True
    assert await world.engine.is_member(pid, "other") is False
    assert await world.engine.evaluate(pid, "u1", {"all": [{"trait": "plan", "op": "eq", "value": "pro"},
                                                           {"event": "report_exported", "within": "1h"}]})
    assert not await world.engine.evaluate(pid, "u1", {"event": "report_exported", "count": {"gte": 2}})
    await world.at(START + 2 * 3_600_000)
    assert not await world.engine.evaluate(pid, "u1", {"event": "report_exported", "within": "1h"})
    with pytest.raises(DefinitionError):
        await world.engine.evaluate(pid, "u1", {"trait": "plan", "op": "like"})


# -- GDPR -----------------------------------------------------------------------------


async def test_deleting_a_user_clears_membership_timers_and_history(world: World) -> None:
    await world.engine.put("active", "Active", {"event": "login", "within": "1d"})
    await world.track("u1", "login")
    await world.track("u2", "login")
    pid = await world.store.user_pid("u1")
    assert pid is not None
    assert await world.store.delete_user("u1") is True
    assert await world.members("active") == ["u2"]
    assert await world.store.segments_of(pid) == []
    assert await world.store.tracked_event_times(pid, "login") == []
    await world.at(START + DAY_MS)  # u1's timer is gone with them; u2's still fires
    assert await world.members("active") == []
    assert await world.store.next_segment_timer() is None


async def test_an_alias_merge_keeps_membership_and_history_in_agreement(world: World) -> None:
    await world.engine.put("pro", "Pro", {"trait": "plan", "op": "eq", "value": "pro"})
    await world.engine.put("team", "Team", {"trait": "seats", "op": "gt", "value": 1})
    await world.identify("old-id", plan="pro")
    await world.identify("new-id", seats=5, plan="free")
    await world.send(world.event("alias", "new-id", previousId="old-id"))
    # Later values win: the merged profile is on the free plan, so it leaves "pro".
    assert await world.members("pro") == []
    assert await world.members("team") == ["new-id"]
    assert await world.stream("new-id") == [("segment_entered", {"segment_id": "pro"}, START),
                                             ("segment_entered", {"segment_id": "team"}, START),
                                             ("segment_exited", {"segment_id": "pro"}, START)]
