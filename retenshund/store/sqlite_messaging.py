"""SQLite SQL for templates, messages, the outbox, the inbox and push subscriptions.

Mixed into SqliteStore; uses its writer, its read connection and its identity
resolution. Every status change also writes an event into the user's stream
(``message_sent``, ``message_delivered``...) in the same transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from .base import (EventIn, HistoryEntry, IdempotencyConflict, InboxItem, IngestResult, Job, Message, NewMessage,
                   PushSubscription, SendOutcome)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode

PUT_TEMPLATE = """
INSERT INTO templates (template_id, spec, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)
ON CONFLICT (template_id) DO UPDATE SET spec = excluded.spec, version = templates.version + 1,
  updated_at = excluded.updated_at
RETURNING version
"""
GET_TEMPLATE = "SELECT template_id, spec, version, created_at, updated_at FROM templates WHERE template_id = ?"
LIST_TEMPLATES = "SELECT template_id, spec, version, created_at, updated_at FROM templates ORDER BY template_id"
DELETE_TEMPLATE = "DELETE FROM templates WHERE template_id = ?"

IDEM_GET = "SELECT body_hash, response FROM idempotency_keys WHERE key = ?"
IDEM_PUT = "INSERT INTO idempotency_keys (key, body_hash, response, created_at) VALUES (?, ?, ?, ?)"
IDEM_PRUNE = "DELETE FROM idempotency_keys WHERE created_at < ?"

MESSAGE_COLUMNS = ("message_id, pid, user_id, channel, template_id, category, status, reason, variables, event,"
                   " automation_id, run_id, rendered, trigger_at, created_at, updated_at, delivered_at")
INSERT_MESSAGE = (f"INSERT INTO messages ({MESSAGE_COLUMNS}, fallback_of)"
                  f" VALUES ({', '.join('?' * 18)})")
FALLBACKS_OF = "SELECT message_id FROM messages WHERE fallback_of = ? AND status = 'queued'"
QUEUED_OF_RUN = "SELECT message_id FROM messages WHERE run_id = ? AND status = 'queued'"
GET_MESSAGE = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?"
HISTORY = "SELECT status, at, detail FROM message_history WHERE message_id = ? ORDER BY seq"
ADD_HISTORY = (
    "INSERT INTO message_history (message_id, seq, status, at, detail) VALUES"
    " (?, (SELECT coalesce(max(seq), 0) + 1 FROM message_history WHERE message_id = ?), ?, ?, ?)"
)
# A message just inserted has no history yet: its first rows need no max(seq).
FIRST_HISTORY = "INSERT INTO message_history (message_id, seq, status, at, detail) VALUES (?, 1, ?, ?, ?)"
FIRST_HISTORY_DELIVERED = ("INSERT INTO message_history (message_id, seq, status, at, detail) VALUES"
                           " (?, 1, ?, ?, ?), (?, 2, 'delivered', ?, NULL)")
SET_STATUS = "UPDATE messages SET status = ?, reason = ?, updated_at = ? WHERE message_id = ?"
SET_DELIVERED = ("UPDATE messages SET status = ?, reason = NULL, updated_at = ?, rendered = ?,"
                 " delivered_at = coalesce(delivered_at, ?) WHERE message_id = ?")
SET_RENDERED = "UPDATE messages SET rendered = ? WHERE message_id = ?"
USER_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE pid = ? ORDER BY created_at DESC, message_id DESC LIMIT ?"
LIST_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages {{where}} ORDER BY created_at DESC, message_id DESC LIMIT ?"

INSERT_JOB = "INSERT INTO outbox (message_id, due_at, attempt, first_at, lease_until) VALUES (?, ?, ?, ?, ?)"
CLAIM = """
UPDATE outbox SET lease_until = ?, attempt = attempt + 1
WHERE job_id IN (SELECT job_id FROM outbox WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
                 ORDER BY due_at LIMIT ?)
RETURNING message_id, attempt, first_at
"""
RECORD_ATTEMPT = "INSERT INTO deliveries (message_id, attempt, at) VALUES (?, ?, ?)"
JOB_ATTEMPT = "SELECT attempt FROM outbox WHERE message_id = ?"
DELETE_JOB = "DELETE FROM outbox WHERE message_id = ?"
RESCHEDULE = "UPDATE outbox SET due_at = ?, lease_until = NULL WHERE message_id = ?"
RELEASE_LEASES = "UPDATE outbox SET lease_until = NULL WHERE lease_until IS NOT NULL"
NEXT_DUE = "SELECT min(due_at) FROM outbox WHERE lease_until IS NULL"
CANCEL_JOB = "DELETE FROM outbox WHERE message_id = ?"

INSERT_INBOX = ("INSERT OR IGNORE INTO inbox (id, pid, title, body, url, data, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)")
INBOX_COLUMNS = "id, title, body, url, data, created_at, read_at, archived_at"
# Keyset paging on (created_at, id): strictly older, or as old with a smaller id.
INBOX_LIST = (f"SELECT {INBOX_COLUMNS} FROM inbox WHERE pid = ? AND (created_at < ? OR (created_at = ? AND id < ?))"
              " {archived} ORDER BY created_at DESC, id DESC LIMIT ?")
INBOX_ITEM = f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = ? AND pid = ?"
INBOX_UNREAD = "SELECT count(*) FROM inbox WHERE pid = ? AND read_at IS NULL AND archived_at IS NULL"
INBOX_READ = "UPDATE inbox SET read_at = ? WHERE id = ? AND pid = ? AND read_at IS NULL"
INBOX_READ_ALL = ("UPDATE inbox SET read_at = ? WHERE pid = ? AND read_at IS NULL AND archived_at IS NULL"
                  " RETURNING id")
INBOX_ARCHIVE = "UPDATE inbox SET archived_at = ?, read_at = coalesce(read_at, ?) WHERE id = ? AND pid = ?" \
                " AND archived_at IS NULL"

PUT_SUBSCRIPTION = """
INSERT INTO push_subscriptions (endpoint, pid, p256dh, auth, user_agent, created_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (endpoint) DO UPDATE SET pid = excluded.pid, p256dh = excluded.p256dh, auth = excluded.auth,
  user_agent = excluded.user_agent
"""
SUBSCRIPTIONS = "SELECT endpoint, p256dh, auth, created_at FROM push_subscriptions WHERE pid = ? ORDER BY created_at"
DELETE_SUBSCRIPTION = "DELETE FROM push_subscriptions WHERE endpoint = ?"

SUPPRESS_ADDRESS = "INSERT OR REPLACE INTO email_suppressions (address, reason, at) VALUES (?, ?, ?)"
ADDRESS_SUPPRESSED = "SELECT reason FROM email_suppressions WHERE address = ?"

# Moved by a profile merge, emptied by a GDPR delete (children before parents).
MESSAGING_PROFILE_TABLES = [
    (None, "DELETE FROM message_history WHERE message_id IN (SELECT message_id FROM messages WHERE pid = ?)"),
    (None, "DELETE FROM outbox WHERE message_id IN (SELECT message_id FROM messages WHERE pid = ?)"),
    (None, "DELETE FROM deliveries WHERE message_id IN (SELECT message_id FROM messages WHERE pid = ?)"),
    ("UPDATE messages SET pid = ? WHERE pid = ?", "DELETE FROM messages WHERE pid = ?"),
    ("UPDATE inbox SET pid = ? WHERE pid = ?", "DELETE FROM inbox WHERE pid = ?"),
    ("UPDATE push_subscriptions SET pid = ? WHERE pid = ?", "DELETE FROM push_subscriptions WHERE pid = ?"),
]

# Statuses only move forward; a later one never goes back to an earlier one.
RANK = {"queued": 0, "sent": 1, "delivered": 2, "opened": 3, "clicked": 4,
        "failed": 5, "bounced": 5, "suppressed": 5}
STATUS_EVENTS = {"sent": "message_sent", "delivered": "message_delivered", "opened": "message_opened",
                 "clicked": "message_clicked", "failed": "message_failed", "bounced": "message_bounced",
                 "suppressed": "message_suppressed"}


class WithEvents(msgspec.Struct):
    """A write's return value plus the events it stored (published after commit)."""

    value: Any
    ingested: IngestResult | None


def _message(row: Any, history: list[HistoryEntry] | None = None) -> Message:
    return Message(message_id=row[0], pid=row[1], user_id=row[2], channel=row[3], template_id=row[4],
                   category=row[5], status=row[6], reason=row[7], variables=_decode(row[8]),
                   event=_decode(row[9]) if row[9] else None, automation_id=row[10], run_id=row[11],
                   rendered=_decode(row[12]) if row[12] else None, trigger_at=row[13], created_at=row[14],
                   updated_at=row[15], delivered_at=row[16], history=history or [])


def _inbox(row: Any) -> InboxItem:
    return InboxItem(id=row[0], title=row[1], body=row[2], url=row[3], data=_decode(row[4]),
                     created_at=row[5], read_at=row[6], archived_at=row[7])


class MessagingSqlite:
    """The messaging half of SqliteStore (see sqlite.py for the other)."""

    # provided by SqliteStore
    writer: Any
    _read: Any

    def _lookup(self, conn: sqlite3.Connection, ident: str) -> int | None: ...  # pragma: no cover
    def _new_profile(self, conn: sqlite3.Connection, user_id: str | None, ident: str,
                     now: int) -> int: ...  # pragma: no cover
    def _ingest(self, conn: sqlite3.Connection, events: list[EventIn], fresh_index: list[int] | None = None, *,
                once_only: bool = False) -> IngestResult: ...  # pragma: no cover

    async def _run_with_events(self, fn: Any) -> Any:
        result: WithEvents = await self.writer.run(fn)
        return result.value

    def _status_events(self, conn: sqlite3.Connection, m: Message | tuple[str, str, str, str | None, str | None],
                       status: str, now: int, detail: str | None) -> IngestResult | None:
        name = STATUS_EVENTS.get(status)
        if name is None:
            return None
        if isinstance(m, Message):
            message_id, user_id, channel, template_id, automation_id = (
                m.message_id, m.user_id, m.channel, m.template_id, m.automation_id)
        else:
            message_id, user_id, channel, template_id, automation_id = m
        props: dict[str, Any] = {"message_id": message_id, "channel": channel, "template_id": template_id}
        if automation_id:
            props["automation_id"] = automation_id
        if detail:
            props["detail"] = detail
        # Once-only by construction: a status is reached once (the callers check the
        # message's status in this same transaction), so no dedupe row is needed.
        return self._ingest(conn, [EventIn(message_id=f"{message_id}:{status}", type="track", event=name,
                                           user_id=user_id, data={"properties": props, "internal": True},
                                           timestamp=now, received_at=now)], once_only=True)

    def _set_status(self, conn: sqlite3.Connection, message_id: str, status: str, now: int,
                    detail: str | None = None, reason: str | None = None) -> IngestResult | None:
        """Move a message forward to ``status`` (never back); history and event included."""
        row = conn.execute(GET_MESSAGE, (message_id,)).fetchone()
        if row is None:
            return None
        m = _message(row)
        if RANK[status] <= RANK[m.status] and not (status == m.status == "queued"):
            return None
        if RANK[m.status] == 5:  # final: failed, bounced, suppressed
            return None
        # A reason is kept for final states only (why it failed, bounced, was suppressed).
        conn.execute(SET_STATUS, (status, reason if RANK[status] == 5 else None, now, message_id))
        conn.execute(ADD_HISTORY, (message_id, message_id, status, now, detail or reason))
        return self._status_events(conn, m, status, now, detail or reason)

    # -- templates ---------------------------------------------------------

    async def put_template(self, template_id: str, spec: dict[str, Any], now_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(PUT_TEMPLATE, (template_id, _encode(spec).decode(), now_ms, now_ms)).fetchone()[0])
        return int(await self.writer.run(run))

    async def get_template(self, template_id: str) -> tuple[dict[str, Any], int, int, int] | None:
        row = await self._one(GET_TEMPLATE, (template_id,))
        return (_decode(row[1]), row[2], row[3], row[4]) if row else None

    async def list_templates(self) -> list[tuple[str, dict[str, Any], int, int, int]]:
        return [(r[0], _decode(r[1]), r[2], r[3], r[4]) for r in await self._all(LIST_TEMPLATES)]

    async def delete_template(self, template_id: str) -> bool:
        return bool(await self.writer.run(lambda conn: conn.execute(DELETE_TEMPLATE, (template_id,)).rowcount))

    # -- sending -----------------------------------------------------------

    async def create_messages(self, new: list[NewMessage], *, now_ms: int, lease_ms: int,
                              idempotency: tuple[str, str] | None = None,
                              response: Any = None) -> SendOutcome:
        """Write messages and their delivery jobs in one transaction.

        The jobs are created already leased to this process (the dispatcher
        is handed them directly, no claim query needed); if the process dies,
        the lease runs out and they are claimed again.
        ``idempotency`` is (key, body hash); ``response(messages) -> dict`` makes
        the answer stored for replays of that key."""

        def run(conn: sqlite3.Connection) -> WithEvents:
            if idempotency is not None:
                key, body_hash = idempotency
                row = conn.execute(IDEM_GET, (key,)).fetchone()
                if row is not None:
                    if row[0] != body_hash:
                        raise IdempotencyConflict(key)
                    return WithEvents(SendOutcome(messages=[], replay=_decode(row[1])), None)
            made, ingested = self._insert_messages(conn, new, now_ms, lease_ms)
            if idempotency is not None:
                conn.execute(IDEM_PUT, (idempotency[0], idempotency[1], _encode(response(made)).decode(), now_ms))
            return WithEvents(SendOutcome(messages=made), ingested)

        return await self._run_with_events(run)  # type: ignore[no-any-return]

    def _insert_messages(self, conn: sqlite3.Connection, new: list[NewMessage], now_ms: int,
                         lease_ms: int) -> tuple[list[Message], IngestResult | None]:
        """Messages and their jobs, inside the caller's transaction. Jobs due now are
        leased to this process (the caller hands them to the dispatcher)."""
        made: list[Message] = []
        ingested: IngestResult | None = None
        for n in new:
            pid = self._lookup(conn, "u:" + n.user_id)
            if pid is None:
                pid = self._new_profile(conn, n.user_id, "u:" + n.user_id, now_ms)
            # In-app, delivered now: the inbox row is ours, so writing it here is
            # the delivery (exactly once, no job, no second transaction). The
            # message row is written delivered at once; its history still shows
            # queued, then delivered.
            inline = n.status == "queued" and n.inbox is not None
            conn.execute(INSERT_MESSAGE, (
                n.message_id, pid, n.user_id, n.channel, n.template_id, n.category,
                "delivered" if inline else n.status, n.reason,
                _encode(n.variables).decode(), _encode(n.event).decode() if n.event is not None else None,
                n.automation_id, n.run_id,
                _encode(n.rendered).decode() if inline and n.rendered else None,
                n.trigger_at, now_ms, now_ms, now_ms if inline else None, n.fallback_of))
            history = [HistoryEntry(n.status, now_ms, n.reason)]
            unread = None
            if inline:
                i = n.inbox
                assert i is not None
                conn.execute(FIRST_HISTORY_DELIVERED, (n.message_id, n.status, now_ms, n.reason, n.message_id, now_ms))
                conn.execute(INSERT_INBOX, (i.id, pid, i.title, i.body, i.url, _encode(i.data).decode(), i.created_at))
                history.append(HistoryEntry("delivered", now_ms, None))
                unread = int(conn.execute(INBOX_UNREAD, (pid,)).fetchone()[0])
            else:
                conn.execute(FIRST_HISTORY, (n.message_id, n.status, now_ms, n.reason))
                if n.status == "queued":
                    lease = now_ms + lease_ms if n.due_at <= now_ms else None
                    conn.execute(INSERT_JOB, (n.message_id, n.due_at, 0, now_ms, lease))
            # The row as written, without reading it back.
            m = Message(message_id=n.message_id, pid=pid, user_id=n.user_id, channel=n.channel,
                        template_id=n.template_id, category=n.category,
                        status="delivered" if inline else n.status, reason=n.reason, variables=n.variables,
                        event=n.event, automation_id=n.automation_id, run_id=n.run_id,
                        rendered=n.rendered if inline and n.rendered else None, trigger_at=n.trigger_at,
                        created_at=now_ms, updated_at=now_ms, delivered_at=now_ms if inline else None,
                        history=history)
            if unread is not None:
                m.inbox, m.unread_after = n.inbox, unread
                ingested = _merge_results(ingested, self._status_events(conn, m, "delivered", now_ms, None))
            made.append(m)
            if n.status == "suppressed":
                ingested = _merge_results(ingested, self._status_events(conn, m, "suppressed", now_ms, n.reason))
        return made, ingested

    def _cancel_run_messages(self, conn: sqlite3.Connection, run_id: str, now_ms: int,
                             reason: str) -> IngestResult | None:
        """Queued (deferred) messages of a run that ended: they will not go out."""
        ingested = None
        for (mid,) in conn.execute(QUEUED_OF_RUN, (run_id,)).fetchall():
            conn.execute(CANCEL_JOB, (mid,))
            ingested = _merge_results(ingested, self._set_status(conn, mid, "suppressed", now_ms, reason=reason))
        return ingested

    async def prune_idempotency_keys(self, older_than_ms: int) -> int:
        return int(await self.writer.run(lambda conn: conn.execute(IDEM_PRUNE, (older_than_ms,)).rowcount))

    async def claim_jobs(self, now_ms: int, lease_ms: int, limit: int) -> list[Job]:
        """Due jobs nobody holds, leased to the caller; attempt numbers go up by one."""

        def run(conn: sqlite3.Connection) -> list[Job]:
            claimed = conn.execute(CLAIM, (now_ms + lease_ms, now_ms, now_ms, limit)).fetchall()
            jobs = []
            for message_id, attempt, first_at in claimed:
                row = conn.execute(GET_MESSAGE, (message_id,)).fetchone()
                if row is None:  # deleted (GDPR) while queued
                    conn.execute(DELETE_JOB, (message_id,))
                    continue
                jobs.append(Job(message=_message(row), attempt=attempt, first_at=first_at))
            return jobs

        return list(await self.writer.run(run))

    async def begin_attempt(self, message_id: str, attempt: int, now_ms: int) -> bool:
        """Record that (message, attempt) is going out. False: it already went, or
        the job moved on (another claim holds a newer attempt) — do not send."""

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(JOB_ATTEMPT, (message_id,)).fetchone()
            if row is None or row[0] != attempt:
                return False
            try:
                conn.execute(RECORD_ATTEMPT, (message_id, attempt, now_ms))
            except sqlite3.IntegrityError:
                return False
            return True

        return bool(await self.writer.run(run))

    async def release_leases(self) -> int:
        """At start: nothing of a previous (dead) process holds a job any more."""
        return int(await self.writer.run(lambda conn: conn.execute(RELEASE_LEASES).rowcount))

    async def next_due(self) -> int | None:
        row = await self._one(NEXT_DUE)
        return row[0] if row and row[0] is not None else None

    async def complete(self, message_id: str, attempt: int, status: str, now_ms: int, *,
                       detail: str | None = None, rendered: dict[str, Any] | None = None,
                       inbox: InboxItem | None = None,
                       gone_endpoints: list[str] | None = None) -> tuple[Message | None, int | None]:
        """Record a final outcome (sent/delivered/failed/bounced/suppressed) and drop the job.

        ``attempt`` fences it: the result of a stale claim changes nothing.
        For in-app messages the inbox row is written in the same transaction,
        and the user's unread count after it is returned with the message."""

        def run(conn: sqlite3.Connection) -> WithEvents:
            row = conn.execute(JOB_ATTEMPT, (message_id,)).fetchone()
            if row is None or row[0] != attempt:
                return WithEvents((None, None), None)
            conn.execute(DELETE_JOB, (message_id,))
            for endpoint in gone_endpoints or ():
                conn.execute(DELETE_SUBSCRIPTION, (endpoint,))
            current = conn.execute(GET_MESSAGE, (message_id,)).fetchone()
            if current is None:
                return WithEvents((None, None), None)
            ingested = None
            unread = None
            if inbox is not None:
                conn.execute(INSERT_INBOX, (inbox.id, current[1], inbox.title, inbox.body, inbox.url,
                                            _encode(inbox.data).decode(), inbox.created_at))
                unread = int(conn.execute(INBOX_UNREAD, (current[1],)).fetchone()[0])
            if status in ("sent", "delivered"):
                conn.execute(SET_DELIVERED, (status, now_ms, _encode(rendered).decode() if rendered else None,
                                             now_ms, message_id))
                conn.execute(ADD_HISTORY, (message_id, message_id, status, now_ms, detail))
                ingested = self._status_events(conn, _message(current), status, now_ms, detail)
            else:
                if rendered is not None:
                    conn.execute(SET_RENDERED, (_encode(rendered).decode(), message_id))
                ingested = self._set_status(conn, message_id, status, now_ms, detail, reason=detail)
            done = _message(conn.execute(GET_MESSAGE, (message_id,)).fetchone())
            return WithEvents((done, unread), ingested)

        return await self._run_with_events(run)  # type: ignore[no-any-return]

    async def reschedule(self, message_id: str, attempt: int, due_at: int, now_ms: int, detail: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(JOB_ATTEMPT, (message_id,)).fetchone()
            if row is None or row[0] != attempt:
                return False
            conn.execute(RESCHEDULE, (due_at, message_id))
            conn.execute(ADD_HISTORY, (message_id, message_id, "queued", now_ms, detail))
            return True

        return bool(await self.writer.run(run))

    async def advance_status(self, message_id: str, status: str, now_ms: int,
                             detail: str | None = None) -> bool:
        """opened / clicked from tracking: forward only, once."""
        def run(conn: sqlite3.Connection) -> WithEvents:
            ingested = self._set_status(conn, message_id, status, now_ms, detail)
            return WithEvents(ingested is not None, ingested)
        return bool(await self._run_with_events(run))

    async def note_unsubscribed(self, message_id: str, now_ms: int, detail: str) -> bool:
        """Record on the message that its recipient unsubscribed through it (once);
        the status stays what it was."""
        def run(conn: sqlite3.Connection) -> bool:
            seen = conn.execute("SELECT 1 FROM message_history WHERE message_id = ? AND status = 'unsubscribed'",
                                (message_id,)).fetchone()
            if seen or conn.execute(GET_MESSAGE, (message_id,)).fetchone() is None:
                return False
            conn.execute(ADD_HISTORY, (message_id, message_id, "unsubscribed", now_ms, detail))
            return True
        return bool(await self.writer.run(run))

    async def get_message(self, message_id: str) -> Message | None:
        row = await self._one(GET_MESSAGE, (message_id,))
        if row is None:
            return None
        history = [HistoryEntry(*r) for r in await self._all(HISTORY, (message_id,))]
        return _message(row, history)

    async def user_messages(self, user_id: str, limit: int) -> list[Message]:
        row = await self._one("SELECT pid FROM identities WHERE id = ?", ("u:" + user_id,))
        if row is None:
            return []
        rows = await self._all(USER_MESSAGES, (row[0], limit))
        return [await self._with_history(r) for r in rows]

    async def list_messages(self, *, status: str | None, channel: str | None, template_id: str | None,
                            automation_id: str | None, limit: int) -> list[Message]:
        clauses, args = [], []
        for column, value in (("status", status), ("channel", channel), ("template_id", template_id),
                              ("automation_id", automation_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._all(LIST_MESSAGES.format(where=where), (*args, limit))
        return [await self._with_history(r) for r in rows]

    async def _with_history(self, row: Any) -> Message:
        return _message(row, [HistoryEntry(*r) for r in await self._all(HISTORY, (row[0],))])

    # -- inbox -------------------------------------------------------------

    async def _pid_of(self, user_id: str) -> int | None:
        row = await self._one("SELECT pid FROM identities WHERE id = ?", ("u:" + user_id,))
        return row[0] if row else None

    async def inbox_list(self, user_id: str, *, limit: int, before: tuple[int, str] | None,
                         include_archived: bool) -> list[InboxItem]:
        pid = await self._pid_of(user_id)
        if pid is None:
            return []
        at, after_id = before if before else (2**62, "")
        sql = INBOX_LIST.format(archived="" if include_archived else "AND archived_at IS NULL")
        return [_inbox(r) for r in await self._all(sql, (pid, at, at, after_id or "\uffff", limit))]

    async def inbox_unread(self, user_id: str) -> int:
        pid = await self._pid_of(user_id)
        if pid is None:
            return 0
        row = await self._one(INBOX_UNREAD, (pid,))
        return int(row[0]) if row else 0

    async def inbox_item(self, user_id: str, item_id: str) -> InboxItem | None:
        pid = await self._pid_of(user_id)
        if pid is None:
            return None
        row = await self._one(INBOX_ITEM, (item_id, pid))
        return _inbox(row) if row else None

    async def inbox_update(self, user_id: str, action: str, item_id: str | None, now_ms: int) -> tuple[bool, int]:
        """read / archive one item, or read_all. Returns (found, unread count after).
        Reading counts as the message being opened."""

        def run(conn: sqlite3.Connection) -> WithEvents:
            pid = self._lookup(conn, "u:" + user_id)
            if pid is None:
                return WithEvents((False, 0), None)
            ingested = None
            found = True
            if action == "read_all":
                changed = [r[0] for r in conn.execute(INBOX_READ_ALL, (now_ms, pid)).fetchall()]
            else:
                exists = conn.execute(INBOX_ITEM, (item_id, pid)).fetchone()
                found = exists is not None
                if action == "read":
                    changed = [item_id] if conn.execute(INBOX_READ, (now_ms, item_id, pid)).rowcount else []
                else:
                    conn.execute(INBOX_ARCHIVE, (now_ms, now_ms, item_id, pid))
                    changed = [item_id] if exists is not None and exists[6] is None else []
            for mid in changed:
                ingested = _merge_results(ingested, self._set_status(conn, mid, "opened", now_ms))
                # Read in time: the fallback on another channel is not needed.
                for (fallback,) in conn.execute(FALLBACKS_OF, (mid,)).fetchall():
                    conn.execute(CANCEL_JOB, (fallback,))
                    ingested = _merge_results(ingested, self._set_status(
                        conn, fallback, "suppressed", now_ms, reason="cancelled: the in-app message was read"))
            unread = conn.execute(INBOX_UNREAD, (pid,)).fetchone()[0]
            return WithEvents((found, int(unread)), ingested)

        return await self._run_with_events(run)  # type: ignore[no-any-return]

    # -- push subscriptions ------------------------------------------------

    async def add_push_subscription(self, user_id: str, sub: PushSubscription, user_agent: str | None,
                                    now_ms: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            pid = self._lookup(conn, "u:" + user_id)
            if pid is None:
                pid = self._new_profile(conn, user_id, "u:" + user_id, now_ms)
            conn.execute(PUT_SUBSCRIPTION, (sub.endpoint, pid, sub.p256dh, sub.auth, user_agent, now_ms))
        await self.writer.run(run)

    async def push_subscriptions(self, user_id: str) -> list[PushSubscription]:
        pid = await self._pid_of(user_id)
        if pid is None:
            return []
        return [PushSubscription(endpoint=r[0], p256dh=r[1], auth=r[2], created_at=r[3])
                for r in await self._all(SUBSCRIPTIONS, (pid,))]

    async def delete_push_subscription(self, endpoint: str) -> bool:
        return bool(await self.writer.run(lambda conn: conn.execute(DELETE_SUBSCRIPTION, (endpoint,)).rowcount))

    # -- email suppression -------------------------------------------------

    async def suppress_address(self, address: str, reason: str, now_ms: int) -> None:
        await self.writer.run(lambda conn: conn.execute(SUPPRESS_ADDRESS, (address.lower(), reason, now_ms)))

    async def address_suppressed(self, address: str) -> str | None:
        row = await self._one(ADDRESS_SUPPRESSED, (address.lower(),))
        return row[0] if row else None


def _merge_results(a: IngestResult | None, b: IngestResult | None) -> IngestResult | None:
    if a is None:
        return b
    if b is None:
        return a
    return IngestResult(a.stored + b.stored, a.duplicates + b.duplicates)
