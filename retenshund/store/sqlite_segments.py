"""SQLite SQL for segments (definitions, membership, timers, counts, occurrence
times) and engagement state. Mixed into SqliteStore.

The segment engine's decisions run inside one writer transaction through
``segment_write(now, fn)``: ``fn`` gets a ``SqliteSegmentTx`` whose methods are
the only statements it can run, so evaluation, membership change, the event
about it and the next timer commit together."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from ..engine.baseline import Engagement
from ..engine.engagement import EngagementRow
from ..engine.segments import SegmentRow
from .base import EventIn, IngestResult
from .sqlite_messaging import WithEvents

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
_decode_obj = msgspec.json.Decoder(dict[str, Any]).decode
# "All time" as a bound: below every timestamp.
_NO_BOUND = -(2**62)

SEGMENT_COLUMNS = "segment_id, name, condition, version, fill_cursor, created_at, updated_at"
GET_SEGMENT = f"SELECT {SEGMENT_COLUMNS} FROM segments WHERE segment_id = ?"
LIST_SEGMENTS = f"SELECT {SEGMENT_COLUMNS} FROM segments ORDER BY segment_id"
INSERT_SEGMENT = (
    "INSERT INTO segments (segment_id, name, condition, version, fill_cursor, created_at, updated_at)"
    " VALUES (?, ?, ?, 1, 0, ?, ?)"
    " ON CONFLICT (segment_id) DO UPDATE SET name = excluded.name, condition = excluded.condition,"
    " version = segments.version + 1, fill_cursor = 0, updated_at = excluded.updated_at"
    " RETURNING version"
)
RENAME_SEGMENT = "UPDATE segments SET name = ?, updated_at = ? WHERE segment_id = ?"
SET_FILL_CURSOR = "UPDATE segments SET fill_cursor = ? WHERE segment_id = ?"
DELETE_SEGMENT = [
    "DELETE FROM segment_members WHERE segment_id = ?",
    "DELETE FROM segment_timers WHERE segment_id = ?",
    "DELETE FROM segment_counts WHERE segment_id = ?",
]
DELETE_SEGMENT_ROW = "DELETE FROM segments WHERE segment_id = ?"

ENTER = "INSERT OR REPLACE INTO segment_members (segment_id, user_id, pid, entered_at) VALUES (?, ?, ?, ?)"
LEAVE = "DELETE FROM segment_members WHERE segment_id = ? AND user_id = ?"
MEMBERSHIPS = "SELECT segment_id FROM segment_members WHERE pid = ? ORDER BY segment_id"
IS_MEMBER = "SELECT 1 FROM segment_members WHERE pid = ? AND segment_id = ?"
MEMBER_COUNT = "SELECT count(*) FROM segment_members WHERE segment_id = ?"
MEMBER_IDS = "SELECT user_id FROM segment_members WHERE segment_id = ? ORDER BY user_id"
MEMBERS_PAGE = ("SELECT user_id, entered_at FROM segment_members WHERE segment_id = ? AND user_id > ?"
                " ORDER BY user_id LIMIT ?")
COUNT_CHANGE = (
    "INSERT INTO segment_counts (segment_id, day, entered, exited) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (segment_id, day) DO UPDATE SET entered = entered + excluded.entered,"
    " exited = exited + excluded.exited"
)
SNAPSHOT_COUNTS = (
    "INSERT INTO segment_counts (segment_id, day, members)"
    " SELECT s.segment_id, ?, (SELECT count(*) FROM segment_members m WHERE m.segment_id = s.segment_id)"
    " FROM segments s WHERE s.created_at < ?"
    " ON CONFLICT (segment_id, day) DO UPDATE SET members = excluded.members"
)
COUNT_ROWS = ("SELECT day, members, entered, exited FROM segment_counts WHERE segment_id = ? AND day >= ?"
              " ORDER BY day")
MEMBERS_BEFORE = ("SELECT members FROM segment_counts WHERE segment_id = ? AND day < ? AND members IS NOT NULL"
                  " ORDER BY day DESC LIMIT 1")

SET_TIMER = (
    "INSERT INTO segment_timers (pid, segment_id, due_at) VALUES (?, ?, ?)"
    " ON CONFLICT (pid, segment_id) DO UPDATE SET due_at = excluded.due_at"
)
DELETE_TIMER = "DELETE FROM segment_timers WHERE pid = ? AND segment_id = ?"
TIMERS_OF = "SELECT segment_id, due_at FROM segment_timers WHERE pid = ?"
DUE_TIMERS = "SELECT pid, segment_id, due_at FROM segment_timers WHERE due_at <= ? ORDER BY due_at LIMIT ?"
NEXT_TIMER = "SELECT min(due_at) FROM segment_timers"

ADD_TIMES = "INSERT OR IGNORE INTO segment_event_times (pid, name, ts, event_id) VALUES (?, ?, ?, ?)"
PRUNE_TIMES = "DELETE FROM segment_event_times WHERE pid = ? AND name = ? AND ts <= ?"
PRUNE_NAME = "DELETE FROM segment_event_times WHERE name = ? AND ts <= ?"
TIMES = "SELECT ts FROM segment_event_times WHERE pid = ? AND name = ? ORDER BY ts"
COPY_TIMES = (
    "INSERT OR IGNORE INTO segment_event_times (pid, name, ts, event_id)"
    " SELECT pid, event, timestamp, id FROM events"
    " WHERE id > ? AND id <= ? AND type = 'track' AND event = ? AND timestamp > ?"
)
# The event log by profile: the (pid, id) index, then a filter on the rows.
LOG_TIMES = ("SELECT timestamp FROM events WHERE pid = ? AND type = 'track' AND event = ? AND timestamp > ?"
             " ORDER BY timestamp")
SET_TRACKED = "INSERT OR REPLACE INTO segment_tracked (name, lookback_ms) VALUES (?, ?)"
UNTRACK = ["DELETE FROM segment_tracked WHERE name = ?", "DELETE FROM segment_event_times WHERE name = ?"]
TRACKED = "SELECT name, lookback_ms FROM segment_tracked"

KNOWN_PROFILES = "SELECT pid, user_id FROM profiles WHERE pid > ? AND user_id IS NOT NULL ORDER BY pid LIMIT ?"
TRAITS = "SELECT traits FROM profiles WHERE pid = ?"
USER_PID = "SELECT pid FROM identities WHERE id = ?"
ACTIVITY = "SELECT day, count FROM activity_days WHERE pid = ? AND day >= ? AND day <= ?"
_CHUNK = 400  # ids per IN (...) list, well under SQLite's parameter limit
ACTIVITY_OF = "SELECT pid, day, count FROM activity_days WHERE pid IN ({marks}) AND day >= ? AND day <= ?"
ENGAGEMENT_ROWS = ("SELECT pid, last_active_day, day, state, baseline, recent, ratio, active_days"
                   " FROM engagement_state WHERE pid IN ({marks})")

ENGAGEMENT_ROW = ("SELECT last_active_day, day, state, baseline, recent, ratio, active_days"
                  " FROM engagement_state WHERE pid = ?")
SET_ENGAGEMENT = (
    "INSERT OR REPLACE INTO engagement_state"
    " (pid, last_active_day, day, state, baseline, recent, ratio, active_days) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
CANDIDATES = "SELECT pid FROM engagement_state WHERE last_active_day >= ? ORDER BY pid"

GET_META = "SELECT value FROM segments_meta WHERE key = ?"
SET_META = "INSERT OR REPLACE INTO segments_meta (key, value) VALUES (?, ?)"


def _engagement_row(row: Any) -> EngagementRow:
    """(last_active_day, day, state, baseline, recent, ratio, active_days)"""
    return EngagementRow(row[0], row[1], Engagement(baseline=row[3], recent=row[4], ratio=row[5],
                                                    state=row[2], active_days=row[6]))


def _segment(row: Any) -> SegmentRow:
    return SegmentRow(segment_id=row[0], name=row[1], condition=_decode_obj(row[2]), version=row[3],
                      fill_cursor=row[4], created_at=row[5], updated_at=row[6])


class SqliteSegmentTx:
    """The segment engine's statements inside one write transaction (writer thread only)."""

    def __init__(self, store: Any, conn: sqlite3.Connection, now_ms: int) -> None:
        self._store = store
        self._conn = conn
        self._now = now_ms
        self._events: list[EventIn] = []
        # What prefetch_engagement read (users not in them are read one by one).
        self._rows: dict[int, EngagementRow | None] = {}
        self._activity: dict[int, dict[int, int]] = {}
        self._activity_range = (0, -1)
        # Engagement rows set in this transaction, written by flush() in one
        # executemany (a first-seen user's row is otherwise one statement each).
        self._engagement_out: dict[int, tuple[Any, ...]] = {}

    # -- profiles ---------------------------------------------------------

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> tuple[int | None, str | None]:
        ident = "u:" + user_id if user_id else "a:" + anonymous_id if anonymous_id else None
        if ident is None:
            return None, None
        pid = self._store._lookup(self._conn, ident)
        if pid is None:
            return None, None
        return pid, self._store._user_of(self._conn, pid)

    def user_of(self, pid: int) -> str | None:
        return self._store._user_of(self._conn, pid)  # type: ignore[no-any-return]

    def traits(self, pid: int) -> dict[str, Any]:
        row = self._conn.execute(TRAITS, (pid,)).fetchone()
        return _decode_obj(row[0]) if row else {}

    def prefetch_engagement(self, pids: list[int], first_day: int, last_day: int) -> None:
        # Two reads for the whole batch instead of two per user.
        rows: dict[int, EngagementRow | None] = dict.fromkeys(pids)
        activity: dict[int, dict[int, int]] = {pid: {} for pid in pids}
        for i in range(0, len(pids), _CHUNK):
            chunk = pids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(ENGAGEMENT_ROWS.format(marks=marks), chunk):
                rows[row[0]] = _engagement_row(row[1:])
            for pid, day, count in self._conn.execute(ACTIVITY_OF.format(marks=marks), (*chunk, first_day, last_day)):
                activity[pid][day] = count
        for pid in self._engagement_out:
            rows[pid] = self._rows[pid]  # set earlier in this transaction, not written yet
        self._rows = rows
        self._activity = activity
        self._activity_range = (first_day, last_day)

    def activity(self, pid: int, first_day: int, last_day: int) -> dict[int, int]:
        if (first_day, last_day) == self._activity_range:
            known = self._activity.get(pid)
            if known is not None:
                return dict(known)
        return dict(self._conn.execute(ACTIVITY, (pid, first_day, last_day)).fetchall())

    def known_profiles(self, after_pid: int, limit: int) -> list[tuple[int, str]]:
        return self._conn.execute(KNOWN_PROFILES, (after_pid, limit)).fetchall()

    # -- membership --------------------------------------------------------

    def memberships(self, pid: int) -> set[str]:
        return {row[0] for row in self._conn.execute(MEMBERSHIPS, (pid,))}

    def enter(self, segment_id: str, pid: int, user_id: str, at: int) -> None:
        self._conn.execute(ENTER, (segment_id, user_id, pid, at))

    def leave(self, segment_id: str, user_id: str) -> None:
        self._conn.execute(LEAVE, (segment_id, user_id))

    def count_change(self, segment_id: str, day: int, entered: int, exited: int) -> None:
        self._conn.execute(COUNT_CHANGE, (segment_id, day, entered, exited))

    def snapshot_counts(self, day: int, created_before: int) -> None:
        self._conn.execute(SNAPSHOT_COUNTS, (day, created_before))

    # -- timers ------------------------------------------------------------

    def set_timer(self, pid: int, segment_id: str, due: int | None) -> None:
        if due is None:
            self._conn.execute(DELETE_TIMER, (pid, segment_id))
        else:
            self._conn.execute(SET_TIMER, (pid, segment_id, due))

    def timers_of(self, pid: int) -> dict[str, int]:
        return dict(self._conn.execute(TIMERS_OF, (pid,)).fetchall())

    def due_timers(self, now_ms: int, limit: int) -> list[tuple[int, str, int]]:
        return self._conn.execute(DUE_TIMERS, (now_ms, limit)).fetchall()

    # -- occurrence times --------------------------------------------------

    def add_event_times(self, rows: list[tuple[int, str, int, int]]) -> None:
        self._conn.executemany(ADD_TIMES, rows)

    def prune_event_times(self, rows: list[tuple[int, str, int]]) -> None:
        self._conn.executemany(PRUNE_TIMES, rows)

    def prune_name(self, name: str, before: int) -> None:
        self._conn.execute(PRUNE_NAME, (name, before))

    def event_times(self, pid: int, name: str) -> list[int]:
        return [row[0] for row in self._conn.execute(TIMES, (pid, name))]

    def copy_event_times(self, name: str, since: int | None, after_id: int, last_id: int) -> None:
        self._conn.execute(COPY_TIMES, (after_id, last_id, name, _NO_BOUND if since is None else since))

    def set_tracked(self, name: str, lookback_ms: int | None) -> None:
        self._conn.execute(SET_TRACKED, (name, lookback_ms))

    def untrack(self, name: str) -> None:
        for sql in UNTRACK:
            self._conn.execute(sql, (name,))

    # -- definitions -------------------------------------------------------

    def segment_row(self, segment_id: str) -> SegmentRow | None:
        row = self._conn.execute(GET_SEGMENT, (segment_id,)).fetchone()
        return _segment(row) if row else None

    def save_segment(self, segment_id: str, name: str, condition: str, now_ms: int) -> int:
        return int(self._conn.execute(INSERT_SEGMENT, (segment_id, name, condition, now_ms, now_ms)).fetchone()[0])

    def rename_segment(self, segment_id: str, name: str, now_ms: int) -> None:
        self._conn.execute(RENAME_SEGMENT, (name, now_ms, segment_id))

    def delete_segment(self, segment_id: str) -> bool:
        for sql in DELETE_SEGMENT:
            self._conn.execute(sql, (segment_id,))
        return self._conn.execute(DELETE_SEGMENT_ROW, (segment_id,)).rowcount > 0

    def set_fill_cursor(self, segment_id: str, cursor: int | None) -> None:
        self._conn.execute(SET_FILL_CURSOR, (cursor, segment_id))

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute(SET_META, (key, value))

    # -- engagement --------------------------------------------------------

    def engagement_row(self, pid: int) -> EngagementRow | None:
        if pid in self._rows:
            return self._rows[pid]
        row = self._conn.execute(ENGAGEMENT_ROW, (pid,)).fetchone()
        return None if row is None else _engagement_row(row)

    def set_engagement_row(self, pid: int, row: EngagementRow) -> None:
        e = row.engagement
        self._engagement_out[pid] = (pid, row.last_active_day, row.day, e.state, e.baseline, e.recent,
                                     e.ratio, e.active_days)
        self._rows[pid] = row  # what engagement_row returns from now on in this transaction

    # -- events about the user ---------------------------------------------

    def emit(self, user_id: str, event: str, properties: dict[str, Any], message_id: str, at: int) -> None:
        self._events.append(EventIn(message_id=message_id, type="track", event=event, user_id=user_id,
                                    data={"properties": properties, "internal": True},
                                    timestamp=at, received_at=self._now))

    def flush(self) -> IngestResult | None:
        """Write the engagement rows set and store the events emitted, in the same transaction."""
        if self._engagement_out:
            self._conn.executemany(SET_ENGAGEMENT, list(self._engagement_out.values()))
            self._engagement_out.clear()
        if not self._events:
            return None
        return self._store._ingest(self._conn, self._events)  # type: ignore[no-any-return]


class SegmentsSqlite:
    """The segments half of SqliteStore (see sqlite.py for the rest)."""

    # provided by SqliteStore
    writer: Any
    _read: Any

    async def segment_write(self, now_ms: int, fn: Callable[[SqliteSegmentTx], T]) -> T:
        def run(conn: sqlite3.Connection) -> WithEvents:
            tx = SqliteSegmentTx(self, conn, now_ms)
            value = fn(tx)
            return WithEvents(value, tx.flush())

        result: WithEvents = await self.writer.run(run)
        return result.value  # type: ignore[no-any-return]

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        # SqliteStore._all: the whole read in one call, no snapshot left open.
        return await self._all(sql, params)  # type: ignore[attr-defined,no-any-return]

    async def segment_rows(self) -> list[SegmentRow]:
        return [_segment(row) for row in await self._rows(LIST_SEGMENTS, ())]

    async def segment_row(self, segment_id: str) -> SegmentRow | None:
        row = await self._one(GET_SEGMENT, (segment_id,))
        return _segment(row) if row else None

    async def segment_member_count(self, segment_id: str) -> int:
        return int((await self._one(MEMBER_COUNT, (segment_id,)))[0])

    async def segment_members_page(self, segment_id: str, after: str, limit: int) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in await self._rows(MEMBERS_PAGE, (segment_id, after, limit))]

    async def segment_member_ids(self, segment_id: str) -> list[str]:
        return [r[0] for r in await self._rows(MEMBER_IDS, (segment_id,))]

    async def segment_is_member(self, pid: int, segment_id: str) -> bool:
        return await self._one(IS_MEMBER, (pid, segment_id)) is not None

    async def segments_of(self, pid: int) -> list[str]:
        return [r[0] for r in await self._rows(MEMBERSHIPS, (pid,))]

    async def segment_count_rows(self, segment_id: str, first_day: int
                                 ) -> tuple[int | None, list[tuple[int, int | None, int, int]]]:
        """(members snapshot before ``first_day`` or None, rows from ``first_day`` on)."""
        before = await self._one(MEMBERS_BEFORE, (segment_id, first_day))
        rows = await self._rows(COUNT_ROWS, (segment_id, first_day))
        return (before[0] if before else None), [(r[0], r[1], r[2], r[3]) for r in rows]

    async def segment_tracked(self) -> dict[str, int | None]:
        return {r[0]: r[1] for r in await self._rows(TRACKED, ())}

    async def next_segment_timer(self) -> int | None:
        row = await self._one(NEXT_TIMER, ())
        return row[0] if row else None

    async def segments_meta(self, key: str) -> str | None:
        row = await self._one(GET_META, (key,))
        return row[0] if row else None

    async def engagement_candidates(self, since_day: int) -> list[int]:
        return [r[0] for r in await self._rows(CANDIDATES, (since_day,))]

    async def activity_counts(self, pid: int, first_day: int, last_day: int) -> dict[int, int]:
        return {r[0]: r[1] for r in await self._rows(ACTIVITY, (pid, first_day, last_day))}

    async def profile_traits(self, pid: int) -> dict[str, Any] | None:
        row = await self._one(TRAITS, (pid,))
        return _decode_obj(row[0]) if row else None

    async def user_pid(self, user_id: str) -> int | None:
        row = await self._one(USER_PID, ("u:" + user_id,))
        return row[0] if row else None

    async def tracked_event_times(self, pid: int, name: str) -> list[int]:
        return [r[0] for r in await self._rows(TIMES, (pid, name))]

    async def event_times_since(self, pid: int, name: str, since: int | None) -> list[int]:
        return [r[0] for r in await self._rows(LOG_TIMES, (pid, name, _NO_BOUND if since is None else since))]


# (move statement or None, delete statement) for tables keyed by profile:
# a merge moves the rows, a GDPR delete removes them (see sqlite.PROFILE_TABLES).
# A merge runs each move with (surviving pid ?1, merged-away pid ?2). Rows move
# to the survivor unless it has its own (it keeps those), and what could not
# move is dropped; the merging event then re-evaluates the survivor over the
# merged traits and history, writing an exit if it no longer matches. Moved
# memberships go with the events that recorded them, so the history agrees.
_SURVIVOR_USER = "(SELECT user_id FROM profiles WHERE pid = ?1)"
SEGMENTS_PROFILE_TABLES: list[tuple[str | None, str]] = [
    (f"UPDATE OR IGNORE segment_members SET pid = ?1, user_id = {_SURVIVOR_USER} WHERE pid = ?2",
     "DELETE FROM segment_members WHERE pid = ?"),
    ("DELETE FROM segment_members WHERE pid = ?2 AND ?1 IS NOT NULL", "DELETE FROM segment_members WHERE pid = ?"),
    ("UPDATE OR IGNORE segment_timers SET pid = ?1 WHERE pid = ?2", "DELETE FROM segment_timers WHERE pid = ?"),
    ("DELETE FROM segment_timers WHERE pid = ?2 AND ?1 IS NOT NULL", "DELETE FROM segment_timers WHERE pid = ?"),
    ("UPDATE segment_event_times SET pid = ? WHERE pid = ?", "DELETE FROM segment_event_times WHERE pid = ?"),
    ("UPDATE OR IGNORE engagement_state SET pid = ?1 WHERE pid = ?2", "DELETE FROM engagement_state WHERE pid = ?"),
    ("DELETE FROM engagement_state WHERE pid = ?2 AND ?1 IS NOT NULL", "DELETE FROM engagement_state WHERE pid = ?"),
]
