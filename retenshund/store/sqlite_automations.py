"""SQLite SQL for automations, runs, the step ledger and the journal. Mixed into SqliteStore."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from .base import IngestResult, JournalEntry, Message, NewMessage, Run, Transition

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

PUT_AUTOMATION = """
INSERT INTO automations (automation_id, version, definition, enabled, created_at, updated_at)
VALUES (?, (SELECT coalesce(max(version), 0) + 1 FROM automation_versions WHERE automation_id = ?), ?, ?, ?, ?)
ON CONFLICT (automation_id) DO UPDATE SET version = automations.version + 1, definition = excluded.definition,
  enabled = excluded.enabled, updated_at = excluded.updated_at
RETURNING version
"""
PUT_VERSION = "INSERT INTO automation_versions (automation_id, version, definition, created_at) VALUES (?, ?, ?, ?)"
AUTOMATION_COLUMNS = "automation_id, version, definition, enabled, created_at, updated_at"
GET_AUTOMATION = f"SELECT {AUTOMATION_COLUMNS} FROM automations WHERE automation_id = ?"
LIST_AUTOMATIONS = f"SELECT {AUTOMATION_COLUMNS} FROM automations ORDER BY automation_id"
GET_VERSION = "SELECT definition FROM automation_versions WHERE automation_id = ? AND version = ?"
DELETE_AUTOMATION = "DELETE FROM automations WHERE automation_id = ?"

RUN_COLUMNS = ("run_id, automation_id, version, pid, user_id, status, holdout, trigger_event, trigger_at, position,"
               " wait_until, waiting_for, goal_at, started_at, updated_at, ended_at")
INSERT_RUN = (f"INSERT OR IGNORE INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * 16)})")
GET_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
RECENT_RUNS = "SELECT count(*) FROM runs WHERE pid = ? AND automation_id = ? AND started_at > ?"
DUE_RUNS = (f"SELECT {RUN_COLUMNS} FROM runs WHERE wait_until IS NOT NULL AND wait_until <= ?"
            " ORDER BY wait_until LIMIT ?")
NEXT_WAKE = "SELECT min(wait_until) FROM runs WHERE wait_until IS NOT NULL"
WAITING_FOR = f"SELECT {RUN_COLUMNS} FROM runs WHERE pid = ? AND waiting_for = ?"
ACTIVE_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'active' ORDER BY started_at LIMIT ?"
WAITED_EVENTS = "SELECT DISTINCT waiting_for FROM runs WHERE waiting_for IS NOT NULL"
LIVE_RUNS = (f"SELECT {RUN_COLUMNS} FROM runs WHERE pid = ? AND automation_id = ?"
             " AND status IN ('active', 'waiting')")
CLAIM_STEP = "INSERT INTO run_steps (run_id, step, at, outcome) VALUES (?, ?, ?, ?)"
MOVE_RUN = """
UPDATE runs SET position = ?, status = ?, wait_until = ?, waiting_for = ?, updated_at = ?,
  ended_at = CASE WHEN ? IN ('completed', 'exited') THEN ? ELSE ended_at END
WHERE run_id = ? AND position = ? AND status = ?
"""
EXIT_RUN = """
UPDATE runs SET status = 'exited', wait_until = NULL, waiting_for = NULL, updated_at = ?, ended_at = ?
WHERE run_id = ? AND status IN ('active', 'waiting')
"""
GOAL = """
UPDATE runs SET goal_at = ? WHERE pid = ? AND automation_id = ? AND goal_at IS NULL
  AND started_at <= ? AND started_at >= ?
RETURNING run_id
"""
ADD_JOURNAL = ("INSERT INTO journal (pid, user_id, automation_id, run_id, kind, detail, at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)")
USER_JOURNAL = ("SELECT user_id, kind, at, automation_id, run_id, detail FROM journal WHERE pid = ?"
                " {automation} ORDER BY id DESC LIMIT ?")
AUTOMATION_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE automation_id = ? {{user}} ORDER BY started_at DESC LIMIT ?"
RECENT_AUTOMATION_MESSAGES = ("SELECT count(*) FROM messages WHERE pid = ? AND created_at > ?"
                              " AND automation_id IS NOT NULL AND category != 'transactional'"
                              " AND status != 'suppressed'")
# Treated vs held out: users, converted users, and users active N days after they entered.
REPORT_GROUPS = """
SELECT holdout, count(DISTINCT pid), count(DISTINCT CASE WHEN goal_at IS NOT NULL THEN pid END)
FROM runs WHERE automation_id = ? GROUP BY holdout
"""
REPORT_RETAINED = """
SELECT r.holdout, count(DISTINCT r.pid) FROM runs r
WHERE r.automation_id = ? AND r.started_at <= ?
  AND EXISTS (SELECT 1 FROM activity_days a WHERE a.pid = r.pid AND a.day >= r.started_at / 86400000 + ?)
GROUP BY r.holdout
"""
REPORT_ELIGIBLE = "SELECT holdout, count(DISTINCT pid) FROM runs WHERE automation_id = ? AND started_at <= ? GROUP BY holdout"
EVENT_PROPS = ("SELECT json_extract(data, '$.properties') FROM events WHERE pid = ? AND event = ? AND timestamp >= ?"
               " ORDER BY id DESC LIMIT ?")
# Computed variables: counted and added up where the events are, over all of
# them (reading them out was capped at the newest 10,000). Booleans and
# strings are not numbers to `sum`, as in Python; json_type tells them apart.
EVENT_COUNT = "SELECT count(*) FROM events WHERE pid = ? AND event = ? AND timestamp >= ?"
_NUMERIC = " FROM events WHERE pid = ?2 AND event = ?3 AND timestamp >= ?4 AND json_type(data, ?1) IN ('integer', 'real')"
EVENT_SUM = "SELECT sum(json_extract(data, ?1))" + _NUMERIC
EVENT_TOTAL = "SELECT total(json_extract(data, ?1))" + _NUMERIC  # past 64-bit integers
EVENT_ALL_PROPS = "SELECT json_extract(data, '$.properties') FROM events WHERE pid = ? AND event = ? AND timestamp >= ?"
GET_STATE = "SELECT value FROM engine_state WHERE key = ?"
SET_STATE = "INSERT OR REPLACE INTO engine_state (key, value) VALUES (?, ?)"

AUTOMATIONS_PROFILE_TABLES: list[tuple[str | None, str]] = [
    (None, "DELETE FROM run_steps WHERE run_id IN (SELECT run_id FROM runs WHERE pid = ?)"),
    ("UPDATE runs SET pid = ? WHERE pid = ?", "DELETE FROM runs WHERE pid = ?"),
    ("UPDATE journal SET pid = ? WHERE pid = ?", "DELETE FROM journal WHERE pid = ?"),
]


def _run(row: Any) -> Run:
    return Run(run_id=row[0], automation_id=row[1], version=row[2], pid=row[3], user_id=row[4], status=row[5],
               holdout=bool(row[6]), trigger_event=_decode(row[7]) if row[7] else None, trigger_at=row[8],
               position=_decode(row[9]), wait_until=row[10], waiting_for=row[11], goal_at=row[12],
               started_at=row[13], updated_at=row[14], ended_at=row[15])


class AutomationsSqlite:
    writer: Any
    _read: Any

    def _lookup(self, conn: sqlite3.Connection, ident: str) -> int | None: ...  # pragma: no cover
    def _new_profile(self, conn: sqlite3.Connection, user_id: str | None, ident: str,
                     now: int) -> int: ...  # pragma: no cover
    def _insert_messages(self, conn: sqlite3.Connection, new: list[NewMessage], now_ms: int,
                         lease_ms: int) -> tuple[list[Message], IngestResult | None]: ...  # pragma: no cover
    def _cancel_run_messages(self, conn: sqlite3.Connection, run_id: str, now_ms: int,
                             reason: str) -> IngestResult | None: ...  # pragma: no cover
    async def _run_with_events(self, fn: Any) -> Any: ...  # pragma: no cover

    # -- definitions ---------------------------------------------------------

    async def put_automation(self, automation_id: str, definition: dict[str, Any], enabled: bool,
                             now_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            text = _encode(definition).decode()
            # Versions continue across a delete: runs of the old ones keep theirs.
            version = int(conn.execute(PUT_AUTOMATION, (automation_id, automation_id, text, int(enabled), now_ms,
                                                        now_ms)).fetchone()[0])
            conn.execute(PUT_VERSION, (automation_id, version, text, now_ms))
            return version
        return int(await self.writer.run(run))

    async def get_automation(self, automation_id: str) -> tuple[dict[str, Any], int, bool, int, int] | None:
        row = await self._one(GET_AUTOMATION, (automation_id,))
        return (_decode(row[2]), row[1], bool(row[3]), row[4], row[5]) if row else None

    async def list_automations(self) -> list[tuple[str, dict[str, Any], int, bool, int, int]]:
        return [(r[0], _decode(r[2]), r[1], bool(r[3]), r[4], r[5]) for r in await self._all(LIST_AUTOMATIONS)]

    async def automation_version(self, automation_id: str, version: int) -> dict[str, Any] | None:
        row = await self._one(GET_VERSION, (automation_id, version))
        return _decode(row[0]) if row else None

    async def delete_automation(self, automation_id: str) -> bool:
        return bool(await self.writer.run(lambda conn: conn.execute(DELETE_AUTOMATION, (automation_id,)).rowcount))

    # -- runs ----------------------------------------------------------------

    def _journal(self, conn: sqlite3.Connection, pid: int, entries: list[JournalEntry]) -> None:
        rows = [(pid, j.user_id, j.automation_id, j.run_id, j.kind, j.detail, j.at) for j in entries]
        if len(rows) == 1:
            conn.execute(ADD_JOURNAL, rows[0])  # executemany costs more for one row
        elif rows:
            conn.executemany(ADD_JOURNAL, rows)

    async def start_run(self, run: Run, *, cap: tuple[int, int] | None, journal: list[JournalEntry],
                        skipped: list[JournalEntry],
                        first: Transition | None = None) -> tuple[Run, list[Message] | None] | None:
        """Create a run unless it exists (a re-processed trigger) or the frequency
        cap ``(max, per_ms)`` is reached (then ``skipped`` is journaled). ``first``,
        the run's first step, is applied in the same transaction; returns the run
        as created and the messages that step made (None if it did not apply)."""

        def go(conn: sqlite3.Connection) -> Any:
            from .sqlite_messaging import WithEvents

            pid = self._lookup(conn, "u:" + run.user_id)
            if pid is None:
                pid = self._new_profile(conn, run.user_id, "u:" + run.user_id, run.started_at)
            # Without a cap, the insert below tells whether the run exists already;
            # with one, a re-processed trigger must not be journaled as capped.
            if cap is not None:
                if conn.execute(GET_RUN, (run.run_id,)).fetchone() is not None:
                    return WithEvents(None, None)
                count = conn.execute(RECENT_RUNS, (pid, run.automation_id, run.started_at - cap[1])).fetchone()[0]
                if count >= cap[0]:
                    self._journal(conn, pid, skipped)
                    return WithEvents(None, None)
            r = msgspec.structs.replace(run, pid=pid)
            # With its first step, the run is written as that step leaves it: the
            # insert is the step's claim (it happens once), so the step needs no
            # run_steps row and no second write of the run.
            row = r if first is None else msgspec.structs.replace(
                r, position=first.position, status=first.status, wait_until=first.wait_until,
                waiting_for=first.waiting_for,
                ended_at=r.started_at if first.status in ("completed", "exited") else r.ended_at)
            inserted = conn.execute(INSERT_RUN, (
                row.run_id, row.automation_id, row.version, pid, row.user_id, row.status, int(row.holdout),
                _encode(row.trigger_event).decode() if row.trigger_event is not None else None, row.trigger_at,
                _encode(row.position).decode(), row.wait_until, row.waiting_for, row.goal_at, row.started_at,
                row.updated_at, row.ended_at)).rowcount
            if not inserted:
                return WithEvents(None, None)
            if first is None:
                self._journal(conn, pid, journal)
                return WithEvents((r, None), None)
            made, ingested = self._insert_messages(conn, first.messages, r.started_at, self._lease_ms)
            self._journal(conn, pid, [*journal, *first.journal])
            return WithEvents((r, made), ingested)

        return await self._run_with_events(go)  # type: ignore[no-any-return]

    _lease_ms = 60_000

    def _transition(self, conn: sqlite3.Connection, t: Transition, now_ms: int,
                    lease_ms: int) -> tuple[list[Message], IngestResult | None]:
        conn.execute(CLAIM_STEP, (t.run_id, t.step_key, now_ms, t.outcome))
        moved = conn.execute(MOVE_RUN, (
            _encode(t.position).decode(), t.status, t.wait_until, t.waiting_for, now_ms, t.status, now_ms,
            t.run_id, _encode(t.expect_position).decode(), t.expect_status)).rowcount
        if not moved:
            raise _Stale()
        made, ingested = self._insert_messages(conn, t.messages, now_ms, lease_ms)
        pid = conn.execute(GET_RUN, (t.run_id,)).fetchone()[3]
        self._journal(conn, pid, t.journal)
        return made, ingested

    async def apply_transition(self, t: Transition, now_ms: int, lease_ms: int) -> list[Message] | None:
        """Apply one step atomically; None if the step already ran or the run moved on."""

        def go(conn: sqlite3.Connection) -> Any:
            from .sqlite_messaging import WithEvents

            try:
                made, ingested = self._transition(conn, t, now_ms, lease_ms)
            except sqlite3.IntegrityError:  # the step key was claimed before: it ran
                return WithEvents(None, None)
            return WithEvents(made, ingested)

        try:
            return await self._run_with_events(go)  # type: ignore[no-any-return]
        except _Stale:
            return None

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._one(GET_RUN, (run_id,))
        return _run(row) if row else None

    async def due_runs(self, now_ms: int, limit: int) -> list[Run]:
        return [_run(r) for r in await self._all(DUE_RUNS, (now_ms, limit))]

    async def next_run_wake(self) -> int | None:
        row = await self._one(NEXT_WAKE)
        return row[0] if row and row[0] is not None else None

    async def runs_waiting_for(self, pid: int, event: str) -> list[Run]:
        return [_run(r) for r in await self._all(WAITING_FOR, (pid, event))]

    async def active_runs(self, limit: int) -> list[Run]:
        """Runs that were between two steps when the process stopped."""
        return [_run(r) for r in await self._all(ACTIVE_RUNS, (limit,))]

    async def waited_events(self) -> set[str]:
        return {r[0] for r in await self._all(WAITED_EVENTS)}

    async def live_runs(self, pid: int, automation_id: str) -> list[Run]:
        return [_run(r) for r in await self._all(LIVE_RUNS, (pid, automation_id))]

    async def exit_run(self, run: Run, now_ms: int, journal: list[JournalEntry], reason: str) -> bool:
        def go(conn: sqlite3.Connection) -> Any:
            from .sqlite_messaging import WithEvents

            if not conn.execute(EXIT_RUN, (now_ms, now_ms, run.run_id)).rowcount:
                return WithEvents(False, None)
            ingested = self._cancel_run_messages(conn, run.run_id, now_ms, reason)
            self._journal(conn, run.pid, journal)
            return WithEvents(True, ingested)

        return bool(await self._run_with_events(go))

    async def record_goal(self, pid: int, automation_id: str, at_ms: int, within_ms: int,
                          journal: JournalEntry) -> list[str]:
        def go(conn: sqlite3.Connection) -> list[str]:
            runs = [r[0] for r in conn.execute(GOAL, (at_ms, pid, automation_id, at_ms, at_ms - within_ms))]
            if runs:
                self._journal(conn, pid, [msgspec.structs.replace(journal, run_id=runs[0])])
            return runs
        return list(await self.writer.run(go))

    async def add_journal(self, user_id: str, entries: list[JournalEntry]) -> None:
        def go(conn: sqlite3.Connection) -> None:
            pid = self._lookup(conn, "u:" + user_id)
            if pid is not None:
                self._journal(conn, pid, entries)
        await self.writer.run(go)

    async def user_journal(self, user_id: str, automation_id: str | None, limit: int) -> list[JournalEntry]:
        row = await self._one("SELECT pid FROM identities WHERE id = ?", ("u:" + user_id,))
        if row is None:
            return []
        sql = USER_JOURNAL.format(automation="AND automation_id = ?" if automation_id else "")
        args = (row[0], automation_id, limit) if automation_id else (row[0], limit)
        return [JournalEntry(user_id=r[0], kind=r[1], at=r[2], automation_id=r[3], run_id=r[4], detail=r[5])
                for r in await self._all(sql, args)]

    async def automation_runs(self, automation_id: str, user_id: str | None, limit: int) -> list[Run]:
        sql = AUTOMATION_RUNS.format(user="AND user_id = ?" if user_id else "")
        args = (automation_id, user_id, limit) if user_id else (automation_id, limit)
        return [_run(r) for r in await self._all(sql, args)]

    async def recent_automation_messages(self, pid: int, since_ms: int) -> int:
        row = await self._one(RECENT_AUTOMATION_MESSAGES, (pid, since_ms))
        return int(row[0]) if row else 0

    async def report_counts(self, automation_id: str, now_ms: int) -> dict[str, Any]:
        """Per group (False = treated, True = held out): users, converted, and for
        day 7/14/30 the users old enough to count and those still active."""
        out: dict[str, Any] = {"groups": {}, "retention": {}}
        for holdout, users, converted in await self._all(REPORT_GROUPS, (automation_id,)):
                out["groups"][bool(holdout)] = (users, converted)
        for day in (7, 14, 30):
            cutoff = now_ms - day * 86_400_000
            eligible: dict[bool, int] = {}
            retained: dict[bool, int] = {}
            for holdout, n in await self._all(REPORT_ELIGIBLE, (automation_id, cutoff)):
                    eligible[bool(holdout)] = n
            for holdout, n in await self._all(REPORT_RETAINED, (automation_id, cutoff, day)):
                    retained[bool(holdout)] = n
            out["retention"][day] = (eligible, retained)
        return out

    async def event_properties(self, pid: int, event: str, since_ms: int,
                               limit: int = 10_000) -> list[dict[str, Any]]:
        """Properties of a user's events of one name since a time, newest first, at
        most ``limit`` of them (for computed variables)."""
        return [_decode(r[0]) if r[0] else {} for r in await self._all(EVENT_PROPS, (pid, event, since_ms, limit))]

    async def count_events(self, pid: int, event: str, since_ms: int) -> int:
        """How many of a user's events of one name there are since a time."""
        return int((await self._one(EVENT_COUNT, (pid, event, since_ms)))[0])

    async def sum_property(self, pid: int, event: str, since_ms: int, prop: str) -> int | float:
        """The sum of a numeric property over a user's events of one name since a
        time; values that are not numbers (booleans included) are skipped."""
        if '"' in prop:  # not expressible as a JSON path label: add them up here
            total: int | float = 0
            for (raw,) in await self._all(EVENT_ALL_PROPS, (pid, event, since_ms)):
                value = _decode(raw).get(prop) if raw else None
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    total += value
            return total
        args = (f'$.properties."{prop}"', pid, event, since_ms)
        try:
            row = await self._one(EVENT_SUM, args)
        except sqlite3.OperationalError as exc:
            if "overflow" not in str(exc):
                raise
            row = await self._one(EVENT_TOTAL, args)  # past 64-bit integers: a float
        return 0 if row[0] is None else row[0]

    async def get_state(self, key: str) -> str | None:
        row = await self._one(GET_STATE, (key,))
        return row[0] if row else None

    async def set_state(self, key: str, value: str) -> None:
        await self.writer.run(lambda conn: conn.execute(SET_STATE, (key, value)))


class _Stale(Exception):
    """The run was moved by someone else: roll this step back."""
