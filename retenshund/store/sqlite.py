"""The embedded store: SQLite in WAL mode, every write through one group-commit
writer thread, reads on their own aiosqlite connection. All of its SQL is here."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from ..traits import merge_profiles, merge_traits
from .base import ApiKey, EventIn, GroupMembership, IngestResult, Profile, StoredEvent
from .migrate import apply_sqlite
from .sqlite_analytics import AnalyticsSqlite
from .sqlite_automations import AUTOMATIONS_PROFILE_TABLES, AutomationsSqlite
from .sqlite_messaging import MESSAGING_PROFILE_TABLES, MessagingSqlite, WithEvents
from .sqlite_segments import SEGMENTS_PROFILE_TABLES, SegmentsSqlite
from .sqlite_webhooks import WEBHOOKS_PROFILE_TABLES, WebhooksSqlite
from .writer import Writer

log = logging.getLogger("retenshund.store")
_encode = msgspec.json.Encoder().encode
_decode_obj = msgspec.json.Decoder(dict[str, Any]).decode

# -- SQL ---------------------------------------------------------------------

PRAGMAS = """
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = OFF;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -262144;
PRAGMA mmap_size = 1073741824;
PRAGMA busy_timeout = 5000;
PRAGMA journal_size_limit = 1073741824;
"""
SEEN_IDS = "SELECT message_id FROM message_ids WHERE message_id IN ({marks})"
INSERT_IDS = "INSERT INTO message_ids (message_id, received_at) VALUES (?, ?)"
INSERT_ID_ONCE = "INSERT OR IGNORE INTO message_ids (message_id, received_at) VALUES (?, ?)"
PRUNE_IDS = ("DELETE FROM message_ids WHERE message_id IN"
             " (SELECT message_id FROM message_ids WHERE received_at < ? ORDER BY received_at LIMIT ?)")
# Expired ids deleted per writer job. The dedupe table is keyed by random ids:
# an hour's worth of a 5M-event store (35k ids) took 0.8 s in one job, during
# which every ingest request waited; 500 take about 10 ms.
PRUNE_CHUNK = 500
INSERT_EVENT = (
    "INSERT INTO events (pid, message_id, type, event, user_id, anonymous_id, data, timestamp, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LAST_ROWID = "SELECT last_insert_rowid()"
LOOKUP_IDENTITY = "SELECT pid FROM identities WHERE id = ?"
LOOKUP_IDENTITIES = ("SELECT i.id, i.pid, p.user_id FROM identities i LEFT JOIN profiles p ON p.pid = i.pid"
                     " WHERE i.id IN ({marks})")
# New ids only: if one existed after all, fail loudly instead of repointing it.
INSERT_NEW_IDENTITY = "INSERT INTO identities (id, pid) VALUES (?, ?)"
MAX_PID = "SELECT coalesce(max(pid), 0) FROM profiles"
INSERT_PROFILE_AT = "INSERT INTO profiles (pid, user_id, created_at, last_seen_at) VALUES (?, ?, ?, ?)"
INSERT_IDENTITY = "INSERT OR REPLACE INTO identities (id, pid) VALUES (?, ?)"
IDENTITIES_OF = "SELECT id FROM identities WHERE pid = ?"
MOVE_IDENTITIES = "UPDATE identities SET pid = ? WHERE pid = ?"
PROFILE_USER = "SELECT user_id FROM profiles WHERE pid = ?"
INSERT_PROFILE = "INSERT INTO profiles (user_id, created_at, last_seen_at) VALUES (?, ?, ?)"
ADOPT_PROFILE = "UPDATE profiles SET user_id = ? WHERE pid = ?"
PROFILE_TRAITS = "SELECT traits FROM profiles WHERE pid = ?"
SET_TRAITS = "UPDATE profiles SET traits = ? WHERE pid = ?"
ADD_ACTIVITY = (
    "INSERT INTO activity_days (pid, day, count, last_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (day, pid) DO UPDATE SET count = count + excluded.count, last_at = max(last_at, excluded.last_at)"
)
MERGE_ACTIVITY = (
    "INSERT INTO activity_days (pid, day, count, last_at)"
    " SELECT ?, day, count, last_at FROM activity_days WHERE pid = ?"
    " ON CONFLICT (day, pid) DO UPDATE SET count = activity_days.count + excluded.count,"
    " last_at = max(activity_days.last_at, excluded.last_at)"
)
# A profile's last_seen_at: its own column (creation, merges) or the last
# activity, whichever is later. Ingestion keeps activity_days up to date
# anyway; rewriting the profile row for every event cost a random page write.
LAST_SEEN = ("max(profiles.last_seen_at, coalesce("
             "(SELECT max(a.last_at) FROM activity_days a WHERE a.pid = profiles.pid), 0))")
DELETE_ACTIVITY = "DELETE FROM activity_days WHERE pid = ?"
DAY_MS = 86_400_000
PROFILE_ROW = (
    f"SELECT pid, user_id, traits, preferences, created_at, {LAST_SEEN} FROM profiles WHERE pid = ?"
)
# What delivering needs (traits, preferences), on the path of every message: no
# last_seen_at look-up in activity_days here (the column alone is returned).
PROFILES_OF_PIDS = ("SELECT pid, user_id, traits, preferences, created_at, last_seen_at FROM profiles"
                    " WHERE pid IN ({marks})")
PROFILES_OF_USERS = (
    "SELECT i.id, p.pid, p.user_id, p.traits, p.preferences, p.created_at, p.last_seen_at"
    " FROM identities i JOIN profiles p ON p.pid = i.pid WHERE i.id IN ({marks})"
)
MERGE_PROFILE_INTO = """
UPDATE profiles SET
  traits = ?,
  created_at = min(created_at, (SELECT created_at FROM profiles WHERE pid = ?)),
  last_seen_at = max(last_seen_at, (SELECT last_seen_at FROM profiles WHERE pid = ?))
WHERE pid = ?
"""
MOVE_EVENTS = "UPDATE events SET pid = ? WHERE pid = ?"
MOVE_MEMBERSHIPS = (
    "INSERT OR IGNORE INTO group_members (group_id, pid, joined_at)"
    " SELECT group_id, ?, joined_at FROM group_members WHERE pid = ?"
)
DELETE_MEMBERSHIPS = "DELETE FROM group_members WHERE pid = ?"
DELETE_PROFILE = "DELETE FROM profiles WHERE pid = ?"
DELETE_EVENTS = "DELETE FROM events WHERE pid = ?"
DELETE_IDENTITIES = "DELETE FROM identities WHERE pid = ?"
GROUP_TRAITS = "SELECT traits FROM groups WHERE group_id = ?"
UPSERT_GROUP = (
    "INSERT INTO groups (group_id, traits, created_at, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (group_id) DO UPDATE SET traits = excluded.traits, updated_at = excluded.updated_at"
)
JOIN_GROUP = "INSERT OR IGNORE INTO group_members (group_id, pid, joined_at) VALUES (?, ?, ?)"
GROUPS_OF = (
    "SELECT g.group_id, g.traits, m.joined_at FROM group_members m JOIN groups g USING (group_id)"
    " WHERE m.pid = ? ORDER BY m.joined_at, g.group_id"
)
GROUP_MEMBER_IDS = (
    "SELECT p.user_id FROM group_members m JOIN profiles p ON p.pid = m.pid"
    " WHERE m.group_id = ? AND p.user_id IS NOT NULL ORDER BY p.user_id"
)
SET_PREFERENCES = "UPDATE profiles SET preferences = ? WHERE pid = ?"
PREFERENCES = "SELECT preferences FROM profiles WHERE pid = ?"
EVENT_COLUMNS = (
    "e.id, e.pid, p.user_id, e.message_id, e.type, e.event, e.user_id, e.anonymous_id,"
    " e.data, e.timestamp, e.received_at"
)
USER_EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM events e JOIN profiles p ON p.pid = e.pid"
    " WHERE e.pid = ? AND e.id < ? ORDER BY e.id DESC LIMIT ?"
)
EVENTS_AFTER = (
    f"SELECT {EVENT_COLUMNS} FROM events e LEFT JOIN profiles p ON p.pid = e.pid"
    " WHERE e.id > ? ORDER BY e.id LIMIT ?"
)
LAST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM events"
INSERT_KEY = (
    "INSERT INTO api_keys (key_id, kind, key_hash, hint, label, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
KEY_COLUMNS = "key_id, kind, hint, label, created_at, revoked_at"
FIND_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"
LIST_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
REVOKE_KEY = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
SEARCH_USERS = f"SELECT pid, user_id, traits, created_at, {LAST_SEEN} FROM profiles WHERE "

# Tables keyed by profile that a merge moves and a GDPR delete empties:
# (move statement or None, delete statement), children before parents.
PROFILE_TABLES: list[tuple[str | None, str]] = [
    *MESSAGING_PROFILE_TABLES, *AUTOMATIONS_PROFILE_TABLES, *SEGMENTS_PROFILE_TABLES, *WEBHOOKS_PROFILE_TABLES,
    (None, "DELETE FROM activity_days WHERE pid = ?"),
]

_CACHE_LIMIT = 500_000
_CHUNK = 500


def _restart_wal(conn: sqlite3.Connection) -> None:
    """In the writer thread, between transactions: copy what the checkpointer
    has not yet, so that the next commit writes the log from its start.

    RESTART waits (the busy handler) until no reader is inside the log; a long
    read must not hold every write up for the usual 5 s, so it waits 20 ms at
    most here, and a busy result just means the checkpointer asks again."""
    conn.execute("PRAGMA busy_timeout = 20")
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
    finally:
        conn.execute("PRAGMA busy_timeout = 5000")
    if busy:
        log.info("WAL restart postponed: a reader or checkpoint was busy")


def _send_profile(row: Any) -> Profile:
    """(pid, user_id, traits, preferences, created_at, last_seen_at) -> what a send needs."""
    return Profile(pid=row[0], user_id=row[1], traits=_decode_obj(row[2]), preferences=_decode_obj(row[3]),
                   groups=[], created_at=row[4], last_seen_at=row[5])


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Checkpointer:
    """Copies the WAL back into the database from its own thread and connection.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses the WAL
    size threshold, so one unlucky group commit pays for writing back everything
    before it. Here the writer never checkpoints; this thread does it every
    ``interval_s``: PASSIVE, which never blocks the writer or readers.

    Every quarter of a second, not every second: each round ends with an fsync
    of the database file, and on ext4 the writer's next WAL writes can wait for
    it. A second's worth of pages made that wait 50-110 ms now and then (single
    tracks at a fixed 6,000/s: p99 15.6-83 ms over 6 runs, median 29 ms); a
    quarter's, at most 26-46 ms (p99 13.2-25 ms, median 18 ms; 5 of 6 pairs
    lower). The in-app path did not change measurably (3 pairs).

    Under steady writes that is not enough: SQLite starts the log over only at
    a write that begins when every frame has been copied, and with commits
    every millisecond that moment never comes; the log grows without end, and
    every page read searches a larger index of it (ingestion fell to 70% of its
    speed within a minute). So when the log is past ``restart_frames`` after a
    round, the writer thread is asked (``restart(urgent)``, run between two
    group commits) to copy the frames committed since and restart the log. That
    pauses the writer for a moment (an fsync or two: tens of milliseconds on a
    slow disk), so it waits for a moment when nothing is queued; past twice
    ``restart_frames`` it is urgent and happens at the next commit anyway, and
    is asked for at once: catching up first took a round of a second or more
    per try on a 5M-event store, while the log grew past 1 GB.

    The file itself is kept at its size (``journal_size_limit`` is 1 GiB):
    writes after a restart reuse its blocks. Cutting it back to 64 MB at each
    restart made the next commit wait ~100 ms for the filesystem to free them,
    and allocating blocks while growing it again waits for the filesystem's
    journal behind the checkpoint's fsync."""

    # How much nicer than the rest of the process this thread is (Linux). A round
    # copies its interval's worth of pages in one go (it was a second's when this
    # was measured); on a busy core that took the CPU
    # from the event loop and the writer for its whole length, a latency spike
    # every second (track -> automation -> in-app frame at 1,000/s, median p99
    # of 12 interleaved runs each: 20 ms, 13 ms with the thread 10 nicer).
    # It still gets the CPU whenever they wait, and a share when they do not; if
    # it falls behind anyway, the writer's restart below copies the rest.
    NICE = 10

    def __init__(self, path: Path, restart: Callable[[bool], None], *, interval_s: float = 0.25,
                 restart_frames: int = 65536) -> None:
        self.path = path
        self.restart = restart
        self.interval_s = interval_s
        self.restart_frames = restart_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="retenshund-checkpoint", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        if sys.platform.startswith("linux"):  # elsewhere it would be the whole process's
            try:
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.NICE))
            except OSError:
                log.warning("could not lower the checkpoint thread's priority")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    frames = self._copy(conn)
                    if frames >= self.restart_frames:
                        urgent = frames >= 2 * self.restart_frames
                        # Catch up closely first, so that what the writer has
                        # left to copy (and to fsync) while it pauses is small.
                        for _ in range(0 if urgent else 5):
                            started = time.monotonic()
                            frames = self._copy(conn)
                            if time.monotonic() - started < 0.02:
                                break
                        self.restart(urgent or frames >= 2 * self.restart_frames)
                except sqlite3.Error:
                    continue  # busy or locked: the next round catches up
        finally:
            conn.close()

    @staticmethod
    def _copy(conn: sqlite3.Connection) -> int:
        """One PASSIVE round; the frames in the log."""
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None


class SqliteStore(MessagingSqlite, AutomationsSqlite, SegmentsSqlite, WebhooksSqlite, AnalyticsSqlite):
    def __init__(
        self,
        data_dir: str | Path,
        *,
        synchronous: str = "NORMAL",
        max_batch_ops: int = 2000,
        observe_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self.path = Path(data_dir) / "retenshun.db"
        self._synchronous = synchronous.upper()
        self.writer = Writer(self._connect_writer, max_batch_ops=max_batch_ops,
                             observe=observe_commit, on_rollback=self._forget)
        self._read: aiosqlite.Connection | None = None
        # Writer-thread caches of identity -> profile, so resolving the sender of
        # an event costs no query in the common case. Only the writer thread
        # touches them; any rollback clears them.
        self._ident: dict[str, int] = {}
        self._pid_user: dict[int, str | None] = {}
        # During one _ingest: ids known not to be in identities (see _prepare_senders).
        self._absent: set[str] = set()
        # profile_for_send calls made in one event-loop turn, read by one query.
        self._profile_waiters: dict[str, list[asyncio.Future[Profile | None]]] = {}
        self._reads_in_flight: set[asyncio.Task[None]] = set()
        self.profile_events: frozenset[str] = frozenset()
        self.on_events: Callable[[list[StoredEvent]], None] | None = None
        self.writer.on_commit = self._committed

    # -- lifecycle ---------------------------------------------------------

    def _connect_writer(self) -> sqlite3.Connection:
        # Personal data and key hashes: the folder and the files are the owner's
        # alone when we make them (SQLite gives its -wal and -shm the file's mode).
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.executescript(PRAGMAS)
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        # The checkpointer thread writes the WAL back; commits never do.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        apply_sqlite(conn)
        return conn

    async def open(self) -> None:
        self.writer.start()  # creates the file and applies migrations first
        self._checkpointer = Checkpointer(
            self.path, lambda urgent: self.writer.maintain(_restart_wal, when_idle=not urgent))
        self._checkpointer.start()
        self._read = await aiosqlite.connect(self.path)
        await self._read.executescript(PRAGMAS)
        await self._read.execute("PRAGMA query_only = ON")

    async def close(self) -> None:
        if getattr(self, "_checkpointer", None) is not None:
            await self._checkpointer.close()
        await self.writer.close()
        if self._read is not None:
            await self._read.close()
            self._read = None

    # Reads run whole (execute and fetch in one call on the reader thread): a
    # statement left open across an await would pin the connection's snapshot,
    # and another task's read would then miss writes committed meanwhile.
    async def _all(self, sql: str, args: Any = ()) -> list[Any]:
        assert self._read is not None
        return list(await self._read.execute_fetchall(sql, args))

    async def _one(self, sql: str, args: Any = ()) -> Any:
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    async def ping(self) -> bool:
        assert self._read is not None
        return (await self._one("SELECT 1")) == (1,)

    def _committed(self, values: list[Any]) -> None:
        if self.on_events is None:
            return
        for value in values:
            if isinstance(value, WithEvents):
                value = value.ingested
            if isinstance(value, IngestResult) and value.stored:
                self.on_events(value.stored)

    def _forget(self) -> None:
        self._ident.clear()
        self._pid_user.clear()
        self._absent.clear()

    # -- ingestion (writer thread) -----------------------------------------

    async def ingest(self, events: list[EventIn]) -> IngestResult:
        # Requests that meet in one group commit are stored by one _ingest call.
        return await self.writer.run_merged("ingest", self._ingest_many, events)

    def _ingest_many(self, conn: sqlite3.Connection, batches: list[list[EventIn]]) -> list[IngestResult]:
        if len(batches) == 1:
            return [self._ingest(conn, batches[0])]
        flat = [e for batch in batches for e in batch]
        fresh_index: list[int] = []
        result = self._ingest(conn, flat, fresh_index)
        out: list[IngestResult] = []
        k = 0
        start = 0
        for batch in batches:
            end = start + len(batch)
            stored = []
            while k < len(fresh_index) and fresh_index[k] < end:
                stored.append(result.stored[k])
                k += 1
            out.append(IngestResult(stored, len(batch) - len(stored)))
            start = end
        return out

    def _ingest(self, conn: sqlite3.Connection, events: list[EventIn],
                fresh_index: list[int] | None = None, *, once_only: bool = False) -> IngestResult:
        """``once_only``: events the caller makes exactly once (in the transaction
        that changes what they report, such as a message's status), so the
        messageId dedupe table, there for clients that retry, is left out."""
        if once_only:
            fresh = events
        elif len(events) == 1:
            # Alone, an event's id is checked and recorded by one statement.
            seen = not conn.execute(INSERT_ID_ONCE, (events[0].message_id, events[0].received_at)).rowcount
            fresh = [] if seen else events
            if fresh_index is not None and not seen:
                fresh_index.append(0)
        else:
            fresh = self._unseen(conn, events, fresh_index)
            if fresh:
                conn.executemany(INSERT_IDS, [(e.message_id, e.received_at) for e in fresh])
        duplicates = len(events) - len(fresh)
        if not fresh:
            return IngestResult([], duplicates)

        self._prepare_senders(conn, fresh)
        try:
            # Identity resolution and profile side effects, in order: a later
            # identify may merge the profile an earlier event created.
            for e in fresh:
                self._apply(conn, e)
        finally:
            self._absent.clear()

        rows = []
        pids = []
        activity: dict[tuple[int, int], list[int]] = {}  # (pid, day) -> [count, last received]
        for e in fresh:
            pid = self._final_pid(conn, e)
            pids.append(pid)
            if not e.data.get("internal"):
                # What the user did, not what we did to them, feeds the baseline
                # and last_seen_at.
                key = (pid, e.timestamp // DAY_MS)
                day = activity.get(key)
                if day is None:
                    activity[key] = [1, e.received_at]
                else:
                    day[0] += 1
                    day[1] = max(day[1], e.received_at)
            rows.append((pid, e.message_id, e.type, e.event, e.user_id, e.anonymous_id,
                         _encode(e.data).decode(), e.timestamp, e.received_at))
        if len(rows) == 1:
            last = conn.execute(INSERT_EVENT, rows[0]).lastrowid
        else:
            conn.executemany(INSERT_EVENT, rows)
            last = conn.execute(LAST_ROWID).fetchone()[0]
        if len(activity) == 1:
            ((pid, day), (n, at)), = activity.items()
            conn.execute(ADD_ACTIVITY, (pid, day, n, at))
        elif activity:
            conn.executemany(ADD_ACTIVITY, [(pid, day, n, at) for (pid, day), (n, at) in activity.items()])
        first = last - len(rows) + 1
        wanted = self.profile_events
        profiles = self._profiles_for_send(conn, {pid for e, pid in zip(fresh, pids)
                                                  if e.type == "track" and e.event in wanted}) if wanted else {}
        stored = []
        for i, (e, pid) in enumerate(zip(fresh, pids)):
            profile = profiles.get(pid) if e.type == "track" and e.event in wanted else None
            stored.append(StoredEvent(id=first + i, pid=pid, profile_user_id=self._user_of(conn, pid),
                                      message_id=e.message_id, type=e.type, event=e.event, user_id=e.user_id,
                                      anonymous_id=e.anonymous_id, data=e.data, timestamp=e.timestamp,
                                      received_at=e.received_at, profile=profile))
        return IngestResult(stored, duplicates)

    @staticmethod
    def _profiles_for_send(conn: sqlite3.Connection, pids: set[int]) -> dict[int, Profile]:
        """The profiles of a commit's triggering senders, by one query per chunk:
        one statement per sender cost the writer a GIL hand-off each (a sixth of
        its time with 200 automations on the event)."""
        out: dict[int, Profile] = {}
        for chunk in _chunks(list(pids), _CHUNK):
            for row in conn.execute(PROFILES_OF_PIDS.format(marks=",".join("?" * len(chunk))), chunk):
                out[row[0]] = _send_profile(row)
        return out

    def _unseen(self, conn: sqlite3.Connection, events: list[EventIn],
                fresh_index: list[int] | None) -> list[EventIn]:
        """The events whose messageId is neither stored nor earlier in the list."""
        seen: set[str] = set()
        ids = [e.message_id for e in events]
        for chunk in _chunks(ids, _CHUNK):
            sql = SEEN_IDS.format(marks=",".join("?" * len(chunk)))
            seen.update(row[0] for row in conn.execute(sql, chunk))
        fresh: list[EventIn] = []
        for index, e in enumerate(events):
            if e.message_id in seen:
                continue
            seen.add(e.message_id)
            fresh.append(e)
            if fresh_index is not None:
                fresh_index.append(index)
        return fresh

    def _prepare_senders(self, conn: sqlite3.Connection, events: list[EventIn]) -> None:
        """Look up every sender of ``events`` in one query, and create in bulk
        the profiles that resolving them one by one would create.

        A sender known by one id (user or anonymous), unknown before this call,
        gets a new profile at its first event, provided no earlier event in the
        list names that id (an alias or an identify with both ids could link it
        first). Those are exactly the profiles ``_resolve`` would create, so the
        result is the same, with two statements instead of three per new user."""
        refs: list[tuple[str, EventIn | None]] = []  # (ident, the event if it may create it)
        for e in events:
            single = e.type != "alias" and (e.user_id is None) != (e.anonymous_id is None)
            if e.user_id is not None:
                refs.append(("u:" + e.user_id, e if single else None))
            if e.anonymous_id is not None:
                refs.append(("a:" + e.anonymous_id, e if single else None))
            if e.type == "alias":
                previous = e.data.get("previousId")
                if previous:
                    refs.append(("u:" + previous, None))
                    refs.append(("a:" + previous, None))
        unknown = list({ident: None for ident, _ in refs if ident not in self._ident})
        if not unknown:
            return
        found: set[str] = set()
        for chunk in _chunks(unknown, _CHUNK):
            for ident, pid, user_id in conn.execute(LOOKUP_IDENTITIES.format(marks=",".join("?" * len(chunk))),
                                                    chunk):
                found.add(ident)
                self._remember(ident, pid)
                self._remember_user(pid, user_id)
        # From the rows, not the cache: the cache may have been emptied on the way.
        absent = set(unknown) - found
        first: dict[str, EventIn | None] = {}
        for ident, e in refs:
            if ident in absent and ident not in first:
                first[ident] = e
        new = [(ident, e) for ident, e in first.items() if e is not None]
        # Absent idents left to _resolve are known not to exist: no query for them.
        self._absent.update(ident for ident, e in first.items() if e is None)
        if not new:
            return
        base = conn.execute(MAX_PID).fetchone()[0] + 1
        rows = []
        for i, (_ident, e) in enumerate(new):
            assert e is not None
            rows.append((base + i, e.user_id, e.received_at, e.received_at))
        conn.executemany(INSERT_PROFILE_AT, rows)
        conn.executemany(INSERT_NEW_IDENTITY, [(ident, base + i) for i, (ident, _) in enumerate(new)])
        for (ident, _), (pid, user_id, _at, _) in zip(new, rows):
            self._remember(ident, pid)
            self._pid_user[pid] = user_id

    def _lookup(self, conn: sqlite3.Connection, ident: str) -> int | None:
        pid = self._ident.get(ident)
        if pid is None:
            if ident in self._absent:
                return None
            row = conn.execute(LOOKUP_IDENTITY, (ident,)).fetchone()
            if row is None:
                return None
            pid = row[0]
            self._remember(ident, pid)
        return pid

    def _remember(self, ident: str, pid: int) -> None:
        if len(self._ident) >= _CACHE_LIMIT:
            self._ident.clear()
        self._ident[ident] = pid
        self._absent.discard(ident)

    def _user_of(self, conn: sqlite3.Connection, pid: int) -> str | None:
        if pid in self._pid_user:
            return self._pid_user[pid]
        row = conn.execute(PROFILE_USER, (pid,)).fetchone()
        user = row[0] if row else None
        self._remember_user(pid, user)
        return user

    def _remember_user(self, pid: int, user_id: str | None) -> None:
        if len(self._pid_user) >= _CACHE_LIMIT:
            self._pid_user.clear()
        self._pid_user[pid] = user_id

    def _new_profile(self, conn: sqlite3.Connection, user_id: str | None, ident: str, now: int) -> int:
        cur = conn.execute(INSERT_PROFILE, (user_id, now, now))
        pid = int(cur.lastrowid or 0)
        conn.execute(INSERT_IDENTITY, (ident, pid))
        self._remember(ident, pid)
        self._pid_user[pid] = user_id
        return pid

    def _link(self, conn: sqlite3.Connection, ident: str, pid: int) -> None:
        conn.execute(INSERT_IDENTITY, (ident, pid))
        self._remember(ident, pid)

    def _resolve(self, conn: sqlite3.Connection, user_id: str | None, anon_id: str | None, now: int) -> int:
        """The profile of this sender, created or merged as needed."""
        if user_id is None:
            assert anon_id is not None
            ident = "a:" + anon_id
            pid = self._lookup(conn, ident)
            return pid if pid is not None else self._new_profile(conn, None, ident, now)
        uident = "u:" + user_id
        pid = self._lookup(conn, uident)
        apid = self._lookup(conn, "a:" + anon_id) if anon_id else None
        if pid is None:
            if apid is not None and self._user_of(conn, apid) is None:
                # Sign-up: the anonymous profile becomes the known user's, so no
                # history has to move.
                conn.execute(ADOPT_PROFILE, (user_id, apid))
                self._pid_user[apid] = user_id
                self._link(conn, uident, apid)
                return apid
            pid = self._new_profile(conn, user_id, uident, now)
        if anon_id:
            if apid is None:
                self._link(conn, "a:" + anon_id, pid)
            elif apid != pid and self._user_of(conn, apid) is None:
                self._merge(conn, apid, pid)
        return pid

    def _merge(self, conn: sqlite3.Connection, src: int, dst: int) -> None:
        """Fold profile ``src`` into ``dst``: history, ids, groups, traits."""
        idents = [row[0] for row in conn.execute(IDENTITIES_OF, (src,))]
        src_traits = _decode_obj(conn.execute(PROFILE_TRAITS, (src,)).fetchone()[0])
        dst_traits = _decode_obj(conn.execute(PROFILE_TRAITS, (dst,)).fetchone()[0])
        conn.execute(MERGE_PROFILE_INTO, (_encode(merge_profiles(src_traits, dst_traits)).decode(), src, src, dst))
        conn.execute(MOVE_IDENTITIES, (dst, src))
        conn.execute(MOVE_EVENTS, (dst, src))
        conn.execute(MOVE_MEMBERSHIPS, (dst, src))
        conn.execute(DELETE_MEMBERSHIPS, (src,))
        conn.execute(MERGE_ACTIVITY, (dst, src))
        conn.execute(DELETE_ACTIVITY, (src,))
        for move, _delete in PROFILE_TABLES:
            if move is not None:
                conn.execute(move, (dst, src))
        conn.execute(DELETE_PROFILE, (src,))
        for ident in idents:
            self._remember(ident, dst)
        self._pid_user.pop(src, None)

    def _apply(self, conn: sqlite3.Connection, e: EventIn) -> None:
        now = e.received_at
        if e.type == "alias":
            pid = self._resolve(conn, e.user_id, None, now)
            previous = e.data.get("previousId")
            if previous:
                prev = self._lookup(conn, "u:" + previous)
                if prev is None:
                    prev = self._lookup(conn, "a:" + previous)
                if prev is None:
                    # Not seen yet: whatever arrives under that id later is this user.
                    self._link(conn, "a:" + previous, pid)
                    self._link(conn, "u:" + previous, pid)
                elif prev != pid:
                    self._merge(conn, prev, pid)
            return
        pid = self._resolve(conn, e.user_id, e.anonymous_id, now)
        if e.type == "identify":
            traits = e.data.get("traits")
            if traits:
                current = _decode_obj(conn.execute(PROFILE_TRAITS, (pid,)).fetchone()[0])
                conn.execute(SET_TRAITS, (_encode(merge_traits(current, traits)).decode(), pid))
        elif e.type == "group":
            group_id = e.data.get("groupId")
            if group_id:
                row = conn.execute(GROUP_TRAITS, (group_id,)).fetchone()
                current = _decode_obj(row[0]) if row else {}
                merged = merge_traits(current, e.data.get("traits") or {})
                conn.execute(UPSERT_GROUP, (group_id, _encode(merged).decode(), now, now))
                conn.execute(JOIN_GROUP, (group_id, pid, e.timestamp))

    def _final_pid(self, conn: sqlite3.Connection, e: EventIn) -> int:
        ident = "u:" + e.user_id if e.user_id else "a:" + (e.anonymous_id or "")
        pid = self._lookup(conn, ident)
        assert pid is not None, "every event's sender was resolved in _apply"
        return pid

    async def prune_message_ids(self, older_than_ms: int) -> int:
        """Delete dedupe ids received before ``older_than_ms``, a chunk per group
        commit, so ingestion goes on in between; returns how many."""
        total = 0
        while True:
            n: int = await self.writer.run(lambda conn: conn.execute(PRUNE_IDS, (older_than_ms, PRUNE_CHUNK)).rowcount)
            total += n
            if n < PRUNE_CHUNK:
                return total

    # -- users ---------------------------------------------------------------

    async def _pid(self, user_id: str) -> int | None:
        assert self._read is not None
        row = await self._one(LOOKUP_IDENTITY, ("u:" + user_id,))
        return row[0] if row else None

    async def profile_for_send(self, user_id: str) -> Profile | None:
        """Traits and preferences in one read (no groups): what rendering and
        preference checks need, on the hot path of every delivery. Its
        ``last_seen_at`` is the profile row's own, not the API's (see LAST_SEEN).

        Calls made in the same turn of the event loop are answered by one query:
        when a burst of events triggers sends for many users at once, their
        profiles cost one trip to the reader thread, not one each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Profile | None] = loop.create_future()
        if not self._profile_waiters:
            loop.call_soon(self._read_profiles)
        self._profile_waiters.setdefault(user_id, []).append(future)
        return await future

    def _read_profiles(self) -> None:
        waiters, self._profile_waiters = self._profile_waiters, {}
        task = asyncio.ensure_future(self._answer_profiles(waiters))
        self._reads_in_flight.add(task)  # a task nobody references may be collected mid-way
        task.add_done_callback(self._reads_in_flight.discard)

    async def _answer_profiles(self, waiters: dict[str, list[asyncio.Future[Profile | None]]]) -> None:
        rows: dict[str, Any] = {}
        try:
            for chunk in _chunks(["u:" + user_id for user_id in waiters], _CHUNK):
                for row in await self._all(PROFILES_OF_USERS.format(marks=",".join("?" * len(chunk))), chunk):
                    rows[row[0][2:]] = row
        except Exception as exc:  # every caller hears it, as from its own read
            for futures in waiters.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(exc)
            return
        for user_id, futures in waiters.items():
            row = rows.get(user_id)
            for f in futures:
                if not f.done():  # each caller its own Profile: callers may change theirs
                    f.set_result(None if row is None else _send_profile(row[1:]))

    async def get_profile(self, user_id: str) -> Profile | None:
        assert self._read is not None
        pid = await self._pid(user_id)
        if pid is None:
            return None
        row = await self._one(PROFILE_ROW, (pid,))
        if row is None:
            return None
        groups = [GroupMembership(g, _decode_obj(t), j) for g, t, j in await self._all(GROUPS_OF, (pid,))]
        return Profile(pid=row[0], user_id=row[1], traits=_decode_obj(row[2]),
                       preferences=_decode_obj(row[3]), groups=groups,
                       created_at=row[4], last_seen_at=row[5])

    async def user_events(self, user_id: str, *, limit: int, before: int | None) -> list[StoredEvent]:
        assert self._read is not None
        pid = await self._pid(user_id)
        if pid is None:
            return []
        cursor = before if before is not None else 2**62
        return [_event(row) for row in await self._all(USER_EVENTS, (pid, cursor, limit))]

    async def delete_user(self, user_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            pid = self._lookup(conn, "u:" + user_id)
            if pid is None:
                return False
            idents = [row[0] for row in conn.execute(IDENTITIES_OF, (pid,))]
            conn.execute(DELETE_EVENTS, (pid,))
            conn.execute(DELETE_MEMBERSHIPS, (pid,))
            for _move, delete in PROFILE_TABLES:
                conn.execute(delete, (pid,))
            conn.execute(DELETE_IDENTITIES, (pid,))
            conn.execute(DELETE_PROFILE, (pid,))
            for ident in idents:
                self._ident.pop(ident, None)
            self._pid_user.pop(pid, None)
            return True

        return await self.writer.run(run)

    async def set_preferences(self, user_id: str, patch: dict[str, Any], now_ms: int) -> dict[str, Any]:
        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            pid = self._lookup(conn, "u:" + user_id)
            if pid is None:
                # Preferences may be set before the user's first event.
                pid = self._new_profile(conn, user_id, "u:" + user_id, now_ms)
            current = _decode_obj(conn.execute(PREFERENCES, (pid,)).fetchone()[0])
            for section in ("channels", "categories"):
                if section in patch:
                    current[section] = merge_traits(current.get(section, {}), patch[section])
            conn.execute(SET_PREFERENCES, (_encode(current).decode(), pid))
            return current

        return await self.writer.run(run)

    async def group_member_ids(self, group_id: str) -> list[str]:
        assert self._read is not None
        return [row[0] for row in await self._all(GROUP_MEMBER_IDS, (group_id,))]

    # -- bus catch-up ----------------------------------------------------------

    async def events_after(self, cursor: int, limit: int) -> list[StoredEvent]:
        assert self._read is not None
        return [_event(row) for row in await self._all(EVENTS_AFTER, (cursor, limit))]

    async def last_event_id(self) -> int:
        assert self._read is not None
        row = await self._one(LAST_EVENT_ID)
        return int(row[0]) if row else 0

    # -- api keys ----------------------------------------------------------------

    async def add_api_key(self, key_id: str, kind: str, key_hash: str, hint: str, label: str, now_ms: int) -> None:
        await self.writer.run(lambda conn: conn.execute(INSERT_KEY, (key_id, kind, key_hash, hint, label, now_ms)))

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        assert self._read is not None
        row = await self._one(FIND_KEY, (key_hash,))
        return _key(row) if row else None

    async def list_api_keys(self) -> list[ApiKey]:
        assert self._read is not None
        return [_key(row) for row in await self._all(LIST_KEYS)]

    async def revoke_api_key(self, key_id: str, now_ms: int) -> bool:
        return await self.writer.run(lambda conn: conn.execute(REVOKE_KEY, (now_ms, key_id)).rowcount == 1)

    # -- user search (the dashboard) ------------------------------------------------

    async def search_users(self, prefix: str, limit: int, after: str | None = None) -> list[Profile]:
        """Known users whose id starts with ``prefix``, in id order, after ``after``.
        A range on the unique index of profiles.user_id: never a table scan."""
        assert self._read is not None
        if after is not None and after >= prefix:
            sql, args = SEARCH_USERS + "user_id > ?", [after]
        else:
            sql, args = SEARCH_USERS + "user_id >= ?", [prefix]
        if prefix:
            sql += " AND user_id < ?"
            args.append(prefix + "\U0010ffff")
        return [Profile(pid=r[0], user_id=r[1], traits=_decode_obj(r[2]), preferences={}, groups=[],
                        created_at=r[3], last_seen_at=r[4])
                for r in await self._all(sql + " ORDER BY user_id LIMIT ?", (*args, limit))]


def _event(row: Any) -> StoredEvent:
    return StoredEvent(id=row[0], pid=row[1], profile_user_id=row[2], message_id=row[3], type=row[4],
                       event=row[5], user_id=row[6], anonymous_id=row[7], data=_decode_obj(row[8]),
                       timestamp=row[9], received_at=row[10])


def _key(row: Any) -> ApiKey:
    return ApiKey(key_id=row[0], kind=row[1], hint=row[2], label=row[3], created_at=row[4], revoked_at=row[5])
