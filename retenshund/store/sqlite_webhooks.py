"""SQLite SQL for inbound webhooks: seen event ids, unmatched webhooks and their
replay, and the per-trait indexes users are looked up by. Mixed into SqliteStore."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from ..webhooks import TRAIT_NAME, Ignored, Mapped, Outcome
from .base import EventIn, IngestResult
from .sqlite_messaging import WithEvents

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

SEEN = "SELECT outcome, detail FROM webhook_events WHERE source = ? AND event_id = ?"
RECORD = ("INSERT INTO webhook_events (source, event_id, type, outcome, detail, received_at)"
          " VALUES (?, ?, ?, ?, ?, ?)")
SET_OUTCOME = "UPDATE webhook_events SET outcome = ?, detail = ? WHERE source = ? AND event_id = ?"
INSERT_UNMATCHED = (
    "INSERT INTO webhook_unmatched (source, event_id, type, event, user_trait, lookup_value, properties, reason,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UNMATCHED_COLUMNS = ("id, source, event_id, type, event, user_trait, lookup_value, properties, reason, received_at,"
                     " replayed_at, replayed_user_id")
LIST_UNMATCHED = (f"SELECT {UNMATCHED_COLUMNS} FROM webhook_unmatched WHERE id < ? {{where}}"
                  " ORDER BY id DESC LIMIT ?")
PENDING_FOR = (f"SELECT {UNMATCHED_COLUMNS} FROM webhook_unmatched WHERE replayed_at IS NULL"
               " AND user_trait = ? AND lookup_value = ? AND received_at >= ? ORDER BY id")
PENDING_ALL = (f"SELECT {UNMATCHED_COLUMNS} FROM webhook_unmatched WHERE replayed_at IS NULL"
               " AND user_trait IS NOT NULL AND lookup_value IS NOT NULL AND received_at >= ? ORDER BY id")
MARK_REPLAYED = "UPDATE webhook_unmatched SET replayed_at = ?, replayed_user_id = ? WHERE id = ?"
PRUNE_SEEN = "DELETE FROM webhook_events WHERE received_at < ?"
PRUNE_UNMATCHED = "DELETE FROM webhook_unmatched WHERE received_at < ?"
TRAIT_INDEXES = "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'profiles_webhook_trait_%'"

# The lookup must use exactly the indexed expression, with the path as a
# literal: json_extract(traits, ?) would not use the index.
_TRAIT_EXPR = "json_extract(traits, '$.{trait}')"
FIND_BY_TRAIT = ("SELECT user_id FROM profiles WHERE " + _TRAIT_EXPR + " = ? AND user_id IS NOT NULL"
                 " ORDER BY max(last_seen_at, coalesce((SELECT max(a.last_at) FROM activity_days a"
                 " WHERE a.pid = profiles.pid), 0)) DESC LIMIT 1")
CREATE_TRAIT_INDEX = "CREATE INDEX IF NOT EXISTS profiles_webhook_trait_{trait} ON profiles(" + _TRAIT_EXPR + ")"
DROP_INDEX = "DROP INDEX IF EXISTS {name}"


class UnmatchedWebhook(msgspec.Struct, kw_only=True):
    id: int
    source: str
    event_id: str
    type: str
    event: str
    user_trait: str | None
    lookup_value: str | int | None
    properties: dict[str, Any]
    reason: str
    received_at: int
    replayed_at: int | None
    replayed_user_id: str | None


def _unmatched(row: Any) -> UnmatchedWebhook:
    return UnmatchedWebhook(id=row[0], source=row[1], event_id=row[2], type=row[3], event=row[4], user_trait=row[5],
                            lookup_value=_decode(row[6]) if row[6] is not None else None,
                            properties=_decode(row[7]), reason=row[8], received_at=row[9], replayed_at=row[10],
                            replayed_user_id=row[11])


def _trait(trait: str) -> str:
    # Config validation already restricts trait names; this keeps any other
    # caller from putting text into SQL.
    if not TRAIT_NAME.match(trait):
        raise ValueError(f"not a trait name usable in an index: {trait!r}")
    return trait


def _event(source: str, event_id: str, event: str, user_id: str, properties: dict[str, Any], timestamp: int,
           now_ms: int) -> EventIn:
    # The message id makes a webhook event once-only even through ingest dedupe.
    return EventIn(message_id=f"wh:{source}:{event_id}", type="track", event=event, user_id=user_id,
                   data={"properties": properties}, timestamp=timestamp, received_at=now_ms)


class WebhooksSqlite:
    # provided by SqliteStore
    writer: Any
    _read: Any

    def _ingest(self, conn: sqlite3.Connection, events: list[EventIn]) -> IngestResult: ...  # pragma: no cover

    async def ensure_trait_indexes(self, traits: list[str]) -> None:
        """An expression index per trait users are looked up by; indexes of traits
        no longer configured are dropped (they only cost writes)."""
        wanted = {f"profiles_webhook_trait_{_trait(t)}": t for t in traits}

        def run(conn: sqlite3.Connection) -> None:
            for (name,) in conn.execute(TRAIT_INDEXES).fetchall():
                if name not in wanted:
                    conn.execute(DROP_INDEX.format(name=name))
            for trait in wanted.values():
                conn.execute(CREATE_TRAIT_INDEX.format(trait=trait))

        await self.writer.run(run)

    def _find_by_trait(self, conn: sqlite3.Connection, trait: str, value: str | int) -> str | None:
        row = conn.execute(FIND_BY_TRAIT.format(trait=_trait(trait)), (value,)).fetchone()
        return row[0] if row else None

    async def receive_webhook(self, w: Mapped | Ignored, now_ms: int) -> Outcome:
        """Record a verified webhook once per (source, event id): store its event for
        the user, keep it as unmatched, or note it as ignored, in one transaction."""

        def run(conn: sqlite3.Connection) -> WithEvents:
            seen = conn.execute(SEEN, (w.source, w.event_id)).fetchone()
            if seen is not None:
                return WithEvents(Outcome(outcome=seen[0], detail=seen[1], duplicate=True), None)
            if isinstance(w, Ignored):
                conn.execute(RECORD, (w.source, w.event_id, w.type, "ignored", w.reason, now_ms))
                return WithEvents(Outcome(outcome="ignored", detail=w.reason), None)
            user_id = w.user_id
            reason = w.problem
            if user_id is None and w.user_trait is not None and w.lookup_value is not None:
                user_id = self._find_by_trait(conn, w.user_trait, w.lookup_value)
                if user_id is None:
                    reason = f"no user with trait {w.user_trait} = {w.lookup_value!r}"
            if user_id is None:
                assert reason is not None
                value = _encode(w.lookup_value).decode() if w.lookup_value is not None else None
                conn.execute(INSERT_UNMATCHED, (w.source, w.event_id, w.type, w.event, w.user_trait, value,
                                                _encode(w.properties).decode(), reason, now_ms))
                conn.execute(RECORD, (w.source, w.event_id, w.type, "unmatched", reason, now_ms))
                return WithEvents(Outcome(outcome="unmatched", detail=reason), None)
            ingested = self._ingest(conn, [_event(w.source, w.event_id, w.event, user_id, w.properties,
                                                  now_ms, now_ms)])
            conn.execute(RECORD, (w.source, w.event_id, w.type, "stored", w.event, now_ms))
            return WithEvents(Outcome(outcome="stored", detail=w.event), ingested)

        result: WithEvents = await self.writer.run(run)
        return result.value  # type: ignore[no-any-return]

    async def replay_unmatched_webhooks(self, trait: str | None, value: str | int | None, *, since_ms: int,
                                        now_ms: int) -> int:
        """Store the events of unmatched webhooks (received since ``since_ms``) whose
        user can now be found; only those for ``trait`` = ``value``, or all when
        ``trait`` is None. Returns how many were replayed."""

        def run(conn: sqlite3.Connection) -> WithEvents:
            if trait is None:
                rows = conn.execute(PENDING_ALL, (since_ms,)).fetchall()
            else:
                rows = conn.execute(PENDING_FOR, (_trait(trait), _encode(value).decode(), since_ms)).fetchall()
            events: list[EventIn] = []
            for row in map(_unmatched, rows):
                assert row.user_trait is not None and row.lookup_value is not None
                user_id = self._find_by_trait(conn, row.user_trait, row.lookup_value)
                if user_id is None:
                    continue
                # timestamp: when it happened (reached us); received_at: when stored.
                events.append(_event(row.source, row.event_id, row.event, user_id, row.properties,
                                     row.received_at, now_ms))
                conn.execute(MARK_REPLAYED, (now_ms, user_id, row.id))
                conn.execute(SET_OUTCOME, ("stored", row.event, row.source, row.event_id))
            ingested = self._ingest(conn, events) if events else None
            return WithEvents(len(events), ingested)

        result: WithEvents = await self.writer.run(run)
        return int(result.value)

    async def list_unmatched_webhooks(self, *, source: str | None, include_replayed: bool, before: int | None,
                                      limit: int) -> list[UnmatchedWebhook]:
        clauses, args = [], []
        if source is not None:
            clauses.append("AND source = ?")
            args.append(source)
        if not include_replayed:
            clauses.append("AND replayed_at IS NULL")
        sql = LIST_UNMATCHED.format(where=" ".join(clauses))
        return [_unmatched(row) for row in await self._all(sql, (before if before is not None else 2**62, *args, limit))]

    async def prune_webhooks(self, *, seen_before_ms: int, unmatched_before_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(PRUNE_SEEN, (seen_before_ms,)).rowcount
                       + conn.execute(PRUNE_UNMATCHED, (unmatched_before_ms,)).rowcount)

        return int(await self.writer.run(run))


# (move statement or None, delete statement) for tables keyed by profile:
# a merge moves the rows, a GDPR delete removes them (see sqlite.PROFILE_TABLES).
# Unmatched webhooks belong to no profile until one is replayed to a user; a
# merge never changes a known user's id, so only the delete is needed.
WEBHOOKS_PROFILE_TABLES: list[tuple[str | None, str]] = [
    (None, "DELETE FROM webhook_unmatched WHERE replayed_user_id = (SELECT user_id FROM profiles WHERE pid = ?)"),
]
