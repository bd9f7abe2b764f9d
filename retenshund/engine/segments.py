"""The segment engine: who is in which segment, kept current event by event and
at the precise instants that time changes it.

How membership stays current (this text is also the user documentation):

- Saving a segment evaluates it once for every known user (the back-fill), and
  so does saving a changed condition. Neither writes ``segment_entered`` /
  ``segment_exited`` events: they follow a definition change, not something the
  user did, and would start a segment-triggered automation for every existing
  member at once. From then on every change writes one event. The ``PUT``
  answers once the back-fill is done; a back-fill cut short by a restart
  resumes at the next start.
- Each event re-evaluates, for its own user only, the segments it can change: a
  track event the segments counting that event name, an identify those over
  traits, activity those over engagement (when the user's engagement changed),
  an alias or an identify carrying both ids (it may merge profiles) all of them.
  So does a user's first activity the engine sees, which puts a brand-new user
  into e.g. a ``not_within`` segment at once.
- Events retenshun writes itself (``segment_entered``, ``segment_exited``,
  ``engagement_dropped``, ``message_*``) re-evaluate nothing and cannot be
  counted by a segment condition: a segment reacting to its own events, or to
  the messages an automation sends when it changes, could loop. Automation
  ``if`` steps may test them.
- Time: for each (user, segment) whose condition has a ``within`` /
  ``not_within`` window the store keeps the next instant the value can change
  (an occurrence leaving its window). One timer wakes at the earliest such
  instant and re-evaluates exactly the due pairs; a change is stamped with that
  instant, even when the timer fires late.
- Engagement moves with the day: a daily job recomputes it for users active
  within the last ``recent_days + baseline_days`` days (nobody else's can
  change), writes ``engagement_dropped`` for a new drop, and re-evaluates
  engagement segments for users whose engagement changed.
- Merging profiles (sign-up, alias): memberships move to the surviving user
  with the events that recorded them, and the event that merged them
  re-evaluates every segment for the survivor over the merged traits and
  history (an exit is written if it no longer matches).

Every change runs inside one store write transaction (the writer thread), so
an evaluation, the membership it changes, the event saying so and the timer
for the next change are one atomic step, ordered with every other write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol, TypeVar

import msgspec

from ..clock import Clock
from ..durations import DAY_MS, DefinitionError
from ..store.base import Profile, StoredEvent
from .baseline import BaselineSettings, Engagement, compute_engagement
from .conditions import (
    Condition,
    compile_condition,
    evaluate,
    next_change_ms,
    uses_engagement,
)
from .engagement import EngagementTx, engagement_json, first_day, history_days, refresh
from .segment_defs import (
    ENTERED,
    EXITED,
    LazyFacts,
    Segment,
    SegmentIndex,
    canonical,
    covers,
    event_windows,
    is_reserved,
)
from .timers import Timers

log = logging.getLogger("retenshund.segments")
T = TypeVar("T")

TIMER_KIND = "segments"
DAILY_KIND = "engagement"
DAILY_KEY = "engagement.last_day"

# Users per back-fill or daily-job transaction, and due timers per timer
# transaction: small enough that ingestion queued behind one waits milliseconds.
_CHUNK = 500
# Event ids scanned per transaction when copying history of a newly counted name.
_HISTORY_CHUNK = 50_000
# Occurrence times are kept a day past the longest window using them: a timer
# that fires late steps through the instants it missed and needs them.
_PRUNE_MARGIN_MS = DAY_MS
# A late timer replays at most this many changes before jumping to now.
_MAX_STEPS = 1000
_CACHED_CONDITIONS = 256
_ACTIVE_CACHE = 500_000


# ---------------------------------------------------------------- store protocol


class SegmentRow(msgspec.Struct, frozen=True, kw_only=True):
    segment_id: str
    name: str
    condition: dict[str, Any]
    version: int
    fill_cursor: int | None
    created_at: int
    updated_at: int


class SegmentTx(EngagementTx, Protocol):
    """One store write transaction, as the segment engine sees it (writer thread)."""

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> tuple[int | None, str | None]: ...
    def user_of(self, pid: int) -> str | None: ...
    def traits(self, pid: int) -> Mapping[str, Any]: ...
    def memberships(self, pid: int) -> set[str]: ...
    def enter(self, segment_id: str, pid: int, user_id: str, at: int) -> None: ...
    def leave(self, segment_id: str, user_id: str) -> None: ...
    def count_change(self, segment_id: str, day: int, entered: int, exited: int) -> None: ...
    def set_timer(self, pid: int, segment_id: str, due: int | None) -> None: ...
    def due_timers(self, now_ms: int, limit: int) -> list[tuple[int, str, int]]: ...
    def add_event_times(self, rows: list[tuple[int, str, int, int]]) -> None: ...
    def prune_event_times(self, rows: list[tuple[int, str, int]]) -> None:
        """Forget (pid, name) occurrences at or before each row's time."""
        ...
    def event_times(self, pid: int, name: str) -> list[int]: ...
    def timers_of(self, pid: int) -> dict[str, int]: ...
    def segment_row(self, segment_id: str) -> SegmentRow | None: ...
    def save_segment(self, segment_id: str, name: str, condition: str, now_ms: int) -> int: ...
    def rename_segment(self, segment_id: str, name: str, now_ms: int) -> None: ...
    def delete_segment(self, segment_id: str) -> bool: ...
    def set_fill_cursor(self, segment_id: str, cursor: int | None) -> None: ...
    def known_profiles(self, after_pid: int, limit: int) -> list[tuple[int, str]]: ...
    def copy_event_times(self, name: str, since: int | None, after_id: int, last_id: int) -> None: ...
    def set_tracked(self, name: str, lookback_ms: int | None) -> None: ...
    def untrack(self, name: str) -> None: ...
    def prune_name(self, name: str, before: int) -> None: ...
    def snapshot_counts(self, day: int, created_before: int) -> None: ...
    def set_meta(self, key: str, value: str) -> None: ...


class SegmentStore(Protocol):
    async def segment_write(self, now_ms: int, fn: Callable[[SegmentTx], T]) -> T: ...
    async def segment_rows(self) -> list[SegmentRow]: ...
    async def segment_row(self, segment_id: str) -> SegmentRow | None: ...
    async def segment_tracked(self) -> dict[str, int | None]: ...
    async def segment_is_member(self, pid: int, segment_id: str) -> bool: ...
    async def segment_member_ids(self, segment_id: str) -> list[str]: ...
    async def segments_of(self, pid: int) -> list[str]: ...
    async def next_segment_timer(self) -> int | None: ...
    async def segments_meta(self, key: str) -> str | None: ...
    async def engagement_candidates(self, since_day: int) -> list[int]: ...
    async def activity_counts(self, pid: int, first_day: int, last_day: int) -> dict[int, int]: ...
    async def profile_traits(self, pid: int) -> dict[str, Any] | None: ...
    async def user_pid(self, user_id: str) -> int | None: ...
    async def tracked_event_times(self, pid: int, name: str) -> list[int]: ...
    async def event_times_since(self, pid: int, name: str, since: int | None) -> list[int]: ...
    async def last_event_id(self) -> int: ...


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


@dataclass(slots=True)
class _UserWork:
    user_id: str
    cause: int = 0
    ids: set[str] = field(default_factory=set)
    active: bool = False


# ---------------------------------------------------------------- the engine


class SegmentEngine:
    def __init__(self, store: SegmentStore, clock: Clock, timers: Timers,
                 settings: BaselineSettings | None = None) -> None:
        self.store = store
        self.clock = clock
        self.timers = timers
        self.settings = settings or BaselineSettings()
        self._index = SegmentIndex()
        # Segment id -> last profile id back-filled, while a back-fill runs. A
        # user past the cursor is left to the back-fill (which sees the same
        # state later and writes no events). Read and written on the writer thread.
        self._filling: dict[str, int] = {}
        # Event name -> lookback the store holds complete history for.
        self._covered: dict[str, int | None] = {}
        # pid -> the day its engagement was last refreshed on activity: later
        # events that day cost no store write unless a segment needs them.
        self._active: dict[int, int] = {}
        self._compiled: OrderedDict[str, Condition] = OrderedDict()
        self._definitions = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._daily_lock = asyncio.Lock()
        self.evaluations = 0  # (user, segment) evaluations, for metrics and tests
        timers.register(TIMER_KIND, self._on_timer)
        timers.register(DAILY_KIND, self._on_day)

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Load the definitions; finish any back-fill a restart cut short."""
        rows = await self.store.segment_rows()
        segments = []
        for row in rows:
            try:
                segments.append(Segment.compile(row.segment_id, row.version, row.condition))
            except DefinitionError as exc:
                log.error("a stored segment no longer compiles; it is not evaluated",
                          extra={"segment_id": row.segment_id, "error": str(exc)})
                continue
            if row.fill_cursor is not None:
                self._filling[row.segment_id] = row.fill_cursor
        self._index = SegmentIndex.build(segments)
        self._covered = await self.store.segment_tracked()
        await self._sync_history()
        for row in rows:
            if row.fill_cursor is not None and row.segment_id in self._index.segments:
                await self._fill(row.segment_id, row.version, row.fill_cursor)

    async def close(self) -> None:
        """Stop a back-fill in progress; it resumes from its cursor at the next open."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _finish(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to the end even if the caller goes away (a client that
        hangs up mid-PUT must not leave users past the cursor unevaluated)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def _write(self, fn: Callable[[SegmentTx], T], now_ms: int | None = None) -> T:
        return await self.store.segment_write(self.clock.now_ms() if now_ms is None else now_ms, fn)

    def _wake(self, due: int | None) -> None:
        if due is not None:
            self.timers.wake_at(TIMER_KIND, due)

    # -- definitions ---------------------------------------------------------

    def compile(self, segment_id: str, condition: Any) -> Segment:
        """Validate a definition (DefinitionError naming the field)."""
        return Segment.compile(segment_id, 0, condition)

    async def put(self, segment_id: str, name: str, condition: Any) -> bool:
        """Save a segment; True if it is new. Returns once membership is back-filled."""
        segment = self.compile(segment_id, condition)
        async with self._definitions:
            created, version = await self._write(partial(self._save, segment=segment, name=name,
                                                         condition=condition))
            if version is not None:
                await self._finish(self._backfill(segment_id, version))
        return created

    async def _backfill(self, segment_id: str, version: int) -> None:
        await self._sync_history()
        await self._fill(segment_id, version, 0)

    def _save(self, tx: SegmentTx, *, segment: Segment, name: str, condition: Any) -> tuple[bool, int | None]:
        now = self.clock.now_ms()
        existing = tx.segment_row(segment.segment_id)
        if existing is not None and canonical(existing.condition) == canonical(condition):
            tx.rename_segment(segment.segment_id, name, now)
            return False, None
        version = tx.save_segment(segment.segment_id, name, json.dumps(condition), now)
        # Python state last, after every statement of this job succeeded.
        self._index = self._index.with_segment(replace(segment, version=version))
        self._filling[segment.segment_id] = 0
        return existing is None, version

    async def delete(self, segment_id: str) -> bool:
        """Remove a segment with its memberships, timers and counts (no events)."""
        async with self._definitions:
            found = await self._write(partial(self._remove, segment_id=segment_id))
            if found:
                await self._finish(self._sync_history())
        return found

    def _remove(self, tx: SegmentTx, *, segment_id: str) -> bool:
        found = tx.delete_segment(segment_id)
        self._index = self._index.without(segment_id)
        self._filling.pop(segment_id, None)
        return found

    async def _sync_history(self) -> None:
        """Make the occurrence-time table hold what the definitions count, no more."""
        needed = self._index.tracked
        for name, lookback in sorted(needed.items()):
            if name in self._covered and covers(self._covered[name], lookback):
                if self._covered[name] != lookback:
                    # A shorter need: pruning will cut history to it, so say so.
                    await self._write(partial(_set_tracked, name=name, lookback=lookback))
                    self._covered[name] = lookback
                continue
            await self._copy_history(name, lookback)
        for name in [n for n in self._covered if n not in needed]:
            await self._write(partial(_untrack, name=name))
            del self._covered[name]

    async def _copy_history(self, name: str, lookback: int | None) -> None:
        # The index already counts ``name``, so every event the engine handles
        # from now on is recorded; this copies what came before. Rows are keyed
        # by event id, so the two overlapping is harmless.
        last_id = await self.store.last_event_id()
        since = None if lookback is None else self.clock.now_ms() - lookback - _PRUNE_MARGIN_MS
        for after in range(0, last_id, _HISTORY_CHUNK):
            await self._write(partial(_copy_times, name=name, since=since, after=after,
                                      last=min(after + _HISTORY_CHUNK, last_id)))
        await self._write(partial(_set_tracked, name=name, lookback=lookback))
        self._covered[name] = lookback

    async def _fill(self, segment_id: str, version: int, cursor: int | None) -> None:
        while cursor is not None:
            cursor, due = await self._write(partial(self._fill_chunk, segment_id=segment_id, version=version,
                                                    after=cursor))
            self._wake(due)

    def _fill_chunk(self, tx: SegmentTx, *, segment_id: str, version: int,
                    after: int) -> tuple[int | None, int | None]:
        segment = self._index.segments.get(segment_id)
        if segment is None or segment.version != version:
            return None, None  # deleted or replaced: a newer save does its own back-fill
        now = self.clock.now_ms()
        users = tx.known_profiles(after, _CHUNK)
        due = None
        for pid, user_id in users:
            due = _earliest(due, self._evaluate(tx, pid, user_id, [segment], now, cause=None))
        cursor = users[-1][0] if len(users) == _CHUNK else None
        tx.set_fill_cursor(segment_id, cursor)
        if cursor is None:
            self._filling.pop(segment_id, None)
        else:
            self._filling[segment_id] = cursor
        return cursor, due

    def _ready(self, segment_id: str, pid: int) -> bool:
        cursor = self._filling.get(segment_id)
        return cursor is None or pid <= cursor

    # -- evaluation (writer thread) ------------------------------------------

    def _facts(self, tx: SegmentTx, pid: int, today: int) -> LazyFacts:
        s = self.settings
        return LazyFacts(lambda: tx.traits(pid), lambda name: tx.event_times(pid, name),
                         lambda: compute_engagement(tx.activity(pid, first_day(today, s), today), today, s))

    def _evaluate(self, tx: SegmentTx, pid: int, user_id: str, segments: Sequence[Segment], now: int,
                  cause: str | None) -> int | None:
        """Evaluate ``segments`` for one user at ``now``; write changes (with
        events unless ``cause`` is None: the back-fill) and the next-change
        timers. Returns the earliest timer set."""
        facts = self._facts(tx, pid, now // DAY_MS)
        members = tx.memberships(pid)
        # Timers are written only where they change: most events move none.
        timers = tx.timers_of(pid) if any(segment.timed for segment in segments) else {}
        earliest = None
        for segment in segments:
            self.evaluations += 1
            value = evaluate(segment.cond, facts, now)
            if value != (segment.segment_id in members):
                self._flip(tx, segment.segment_id, pid, user_id, value, now, cause)
            if segment.timed:
                due = next_change_ms(segment.cond, facts, now)
                if timers.get(segment.segment_id) != due:
                    tx.set_timer(pid, segment.segment_id, due)
                earliest = _earliest(earliest, due)
        return earliest

    def _flip(self, tx: SegmentTx, segment_id: str, pid: int, user_id: str, entering: bool, at: int,
              cause: str | None) -> None:
        if entering:
            tx.enter(segment_id, pid, user_id, at)
        else:
            tx.leave(segment_id, user_id)
        if cause is None:
            return
        name = ENTERED if entering else EXITED
        # Deterministic: the same batch (or timer instant) run again makes the
        # same id, which the store's messageId dedupe keeps to one event.
        tx.emit(user_id, name, {"segment_id": segment_id}, f"{name}:{segment_id}:{cause}:{user_id}", at)
        tx.count_change(segment_id, at // DAY_MS, int(entering), int(not entering))

    # -- events --------------------------------------------------------------

    def wants(self, events: list[StoredEvent]) -> bool:
        """Whether ``on_events`` would do anything with this batch."""
        return bool(events) and self._needs_write(events, self.clock.now_ms() // DAY_MS)

    async def on_events(self, events: list[StoredEvent]) -> None:
        """A committed batch, in order: update its users' memberships and engagement."""
        if not events:
            return
        now = self.clock.now_ms()
        today = now // DAY_MS
        if not self._needs_write(events, today):
            return
        due, active = await self._write(partial(self._apply_events, events=events, now=now), now)
        if len(self._active) >= _ACTIVE_CACHE:
            self._active.clear()
        for pid in active:
            self._active[pid] = today
        self._wake(due)

    def _needs_write(self, events: list[StoredEvent], today: int) -> bool:
        # The common case, an active user's next event of the day with no
        # segment counting it, costs this loop and no store write.
        index = self._index
        for e in events:
            if e.type == "track" and is_reserved(e.event):
                continue
            if e.type == "track" and e.event in index.tracked:
                return True
            if e.profile_user_id is None:
                continue
            if index.affected(e):
                return True
            if not e.data.get("internal") and (index.engagement_ids or self._active.get(e.pid) != today):
                return True
        return False

    def _apply_events(self, tx: SegmentTx, *, events: list[StoredEvent], now: int) -> tuple[int | None, list[int]]:
        index = self._index  # as of now: definitions saved since the batch was committed count too
        today = now // DAY_MS
        work: dict[int, _UserWork] = {}
        times: list[tuple[int, str, int, int]] = []
        for e in events:
            if e.type == "track" and is_reserved(e.event):
                continue
            # Resolve again: a later batch may have merged or deleted the profile.
            pid, user_id = tx.resolve(e.user_id, e.anonymous_id)
            if pid is None:
                continue
            if e.type == "track" and e.event in index.tracked:
                # Anonymous history too: it counts once the visitor signs up.
                times.append((pid, e.event or "", e.timestamp, e.id))
            if user_id is None:
                continue
            w = work.get(pid)
            if w is None:
                w = work[pid] = _UserWork(user_id)
            w.cause = e.id
            w.ids.update(index.affected(e))
            if not e.data.get("internal"):
                w.active = True
        if times:
            tx.add_event_times(times)
            prune = []
            for pid, name in {(pid, name) for pid, name, _, _ in times}:
                lookback = index.tracked.get(name)
                if lookback is not None:
                    prune.append((pid, name, now - lookback - _PRUNE_MARGIN_MS))
            if prune:
                tx.prune_event_times(prune)
        due = None
        refresh_pids = [pid for pid, w in work.items()
                        if w.active and (self._active.get(pid) != today or index.engagement_ids)]
        if refresh_pids:
            tx.prefetch_engagement(refresh_pids, first_day(today, self.settings), today)
        for pid, w in work.items():
            if w.active and (self._active.get(pid) != today or index.engagement_ids):
                prev = tx.engagement_row(pid)
                if prev is None:
                    # First seen: beyond what the event itself affects, only the
                    # segments that match someone with no history can match already.
                    w.ids.update(index.blank_ids)
                _, changed = refresh(tx, pid, w.user_id, prev, today, now, self.settings, active=True)
                if changed:
                    w.ids.update(index.engagement_ids)
            segments = [index.segments[sid] for sid in sorted(w.ids)
                        if sid in index.segments and self._ready(sid, pid)]
            if segments:
                due = _earliest(due, self._evaluate(tx, pid, w.user_id, segments, now, f"e{w.cause}"))
        return due, [pid for pid, w in work.items() if w.active]

    # -- time ----------------------------------------------------------------

    async def _on_timer(self, now: int) -> int | None:
        """Re-evaluate exactly the (user, segment) pairs that are due."""
        more = True
        while more:
            more = await self._write(partial(self._timer_chunk, now=now), now)
        return await self.store.next_segment_timer()

    def _timer_chunk(self, tx: SegmentTx, *, now: int) -> bool:
        index = self._index
        rows = tx.due_timers(now, _CHUNK)
        for pid, segment_id, due in rows:
            segment = index.segments.get(segment_id)
            user_id = tx.user_of(pid)
            if segment is None or user_id is None or not segment.timed or not self._ready(segment_id, pid):
                tx.set_timer(pid, segment_id, None)  # gone, or the back-fill will set it
                continue
            self._step(tx, segment, pid, user_id, due, now)
        return len(rows) == _CHUNK

    def _step(self, tx: SegmentTx, segment: Segment, pid: int, user_id: str, due: int, now: int) -> None:
        """Walk the instants the value could change from ``due`` up to ``now``,
        stamping each change with its instant (exact even if the timer is late)."""
        facts = self._facts(tx, pid, now // DAY_MS)
        member = segment.segment_id in tx.memberships(pid)
        at: int | None = due
        steps = 0
        while at is not None and at <= now:
            if steps == _MAX_STEPS:
                at = now  # far behind: settle the present instead of replaying the past
            steps += 1
            self.evaluations += 1
            value = evaluate(segment.cond, facts, at)
            if value != member:
                self._flip(tx, segment.segment_id, pid, user_id, value, at, f"t{at}")
                member = value
            if at == now:
                at = next_change_ms(segment.cond, facts, now)
                break
            at = next_change_ms(segment.cond, facts, at)
        tx.set_timer(pid, segment.segment_id, at)

    async def _on_day(self, now: int) -> int:
        """The daily job: count snapshot, engagement for recently active users,
        pruning. Runs at UTC midnight, and at start if today's run is missing."""
        today = now // DAY_MS
        async with self._daily_lock:
            done = await self.store.segments_meta(DAILY_KEY)
            if done is None or int(done) < today:
                await self._daily(now, today)
        return (today + 1) * DAY_MS

    async def _daily(self, now: int, today: int) -> None:
        # Members at the end of yesterday, before today's engagement moves anyone.
        await self._write(partial(_snapshot, day=today - 1, created_before=today * DAY_MS), now)
        pids = await self.store.engagement_candidates(today - history_days(self.settings))
        for i in range(0, len(pids), _CHUNK):
            due = await self._write(partial(self._daily_chunk, pids=pids[i:i + _CHUNK], today=today, now=now), now)
            self._wake(due)
        for name, lookback in sorted(self._index.tracked.items()):
            if lookback is not None:
                await self._write(partial(_prune_name, name=name, before=now - lookback - _PRUNE_MARGIN_MS), now)
        await self._write(partial(_set_meta, key=DAILY_KEY, value=str(today)), now)

    def _daily_chunk(self, tx: SegmentTx, *, pids: list[int], today: int, now: int) -> int | None:
        index = self._index
        due = None
        for pid in pids:
            user_id = tx.user_of(pid)
            prev = tx.engagement_row(pid)
            if user_id is None or prev is None:
                continue  # deleted or merged away since the list was read
            _, changed = refresh(tx, pid, user_id, prev, today, now, self.settings, active=False)
            if changed and index.engagement_ids:
                segments = [index.segments[sid] for sid in sorted(index.engagement_ids) if self._ready(sid, pid)]
                due = _earliest(due, self._evaluate(tx, pid, user_id, segments, now, f"d{today}"))
        return due

    # -- what other parts ask ------------------------------------------------

    async def is_member(self, pid: int, segment_id: str) -> bool:
        return await self.store.segment_is_member(pid, segment_id)

    async def member_user_ids(self, segment_id: str) -> list[str]:
        """Every current member (user ids, sorted): cron schedules over a segment."""
        return await self.store.segment_member_ids(segment_id)

    async def evaluate(self, pid: int, user_id: str, condition_obj: dict[str, Any]) -> bool:
        """Any condition for one user, now (automation ``if`` steps). Invalid
        conditions raise DefinitionError; event names no segment counts are read
        from the event log."""
        cond = self._compile_cached(condition_obj)
        traits = await self.store.profile_traits(pid)
        if traits is None:
            # The profile was merged into another since the caller looked it up.
            found = await self.store.user_pid(user_id)
            if found is None:
                return False
            pid, traits = found, await self.store.profile_traits(found) or {}
        now = self.clock.now_ms()
        times: dict[str, Sequence[int]] = {}
        for name, lookback in event_windows(cond).items():
            if name in self._covered and covers(self._covered[name], lookback):
                times[name] = await self.store.tracked_event_times(pid, name)
            else:
                since = None if lookback is None else now - lookback
                times[name] = await self.store.event_times_since(pid, name, since)
        engagement = await self.engagement(pid) if uses_engagement(cond) else None
        facts = LazyFacts(lambda: traits, lambda name: times.get(name, ()), lambda: engagement)
        return evaluate(cond, facts, now)

    def _compile_cached(self, condition_obj: Any) -> Condition:
        key = canonical(condition_obj)
        cond = self._compiled.get(key)
        if cond is None:
            cond = compile_condition(condition_obj, "condition")
            self._compiled[key] = cond
            if len(self._compiled) > _CACHED_CONDITIONS:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return cond

    async def engagement(self, pid: int) -> Engagement | None:
        """The user's engagement as of now (None if there is no such profile)."""
        if await self.store.profile_traits(pid) is None:
            return None
        today = self.clock.now_ms() // DAY_MS
        counts = await self.store.activity_counts(pid, first_day(today, self.settings), today)
        return compute_engagement(counts, today, self.settings)

    async def profile_extension(self, profile: Profile) -> dict[str, Any]:
        """``segments`` and ``engagement`` for ``GET /v1/users/{id}``."""
        engagement = await self.engagement(profile.pid)
        return {"segments": await self.store.segments_of(profile.pid),
                "engagement": None if engagement is None else engagement_json(engagement, self.settings)}


# Writer-thread steps without engine state, named so partial() can bind them.

def _set_tracked(tx: SegmentTx, *, name: str, lookback: int | None) -> None:
    tx.set_tracked(name, lookback)


def _untrack(tx: SegmentTx, *, name: str) -> None:
    tx.untrack(name)


def _copy_times(tx: SegmentTx, *, name: str, since: int | None, after: int, last: int) -> None:
    tx.copy_event_times(name, since, after, last)


def _snapshot(tx: SegmentTx, *, day: int, created_before: int) -> None:
    tx.snapshot_counts(day, created_before)


def _prune_name(tx: SegmentTx, *, name: str, before: int) -> None:
    tx.prune_name(name, before)


def _set_meta(tx: SegmentTx, *, key: str, value: str) -> None:
    tx.set_meta(key, value)


__all__ = ["ENTERED", "EXITED", "SegmentEngine", "SegmentRow", "SegmentStore", "SegmentTx", "is_reserved"]
