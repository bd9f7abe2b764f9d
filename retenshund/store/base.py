"""What the rest of the code may ask of a store. Nothing backend-specific leaks
through here: SQLite and PostgreSQL implement the same Protocol, and the store
test suite (tests/store/) runs against every implementation."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec


class EventIn(msgspec.Struct, kw_only=True):
    """A validated event, normalised and stamped, ready to store."""

    message_id: str
    type: str  # track | identify | page | screen | group | alias
    event: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    # properties, traits, context, integrations, groupId, previousId, name, category
    data: dict[str, Any] = {}
    timestamp: int = 0
    received_at: int = 0


class StoredEvent(msgspec.Struct, kw_only=True):
    id: int
    pid: int
    # The profile's user id after identity resolution (None for anonymous-only).
    profile_user_id: str | None
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    data: dict[str, Any]
    timestamp: int
    received_at: int
    # The sender's profile as the transaction that stored the event left it, for
    # events named in ``Store.profile_events`` (those that trigger automations):
    # the first step of the runs they start needs no read. None otherwise, and
    # for events read back from the store.
    profile: Profile | None = None


class IngestResult(msgspec.Struct):
    stored: list[StoredEvent]
    duplicates: int


class GroupMembership(msgspec.Struct):
    group_id: str
    traits: dict[str, Any]
    joined_at: int


class Profile(msgspec.Struct, kw_only=True):
    pid: int
    user_id: str | None
    traits: dict[str, Any]
    preferences: dict[str, Any]
    groups: list[GroupMembership]
    created_at: int
    last_seen_at: int


class ApiKey(msgspec.Struct, kw_only=True):
    key_id: str
    kind: str  # secret | publishable
    hint: str
    label: str
    created_at: int
    revoked_at: int | None


class Store(Protocol):
    # Names of track events whose StoredEvent carries its sender's profile (the
    # automation engine sets the names that trigger something).
    profile_events: frozenset[str]

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # ingestion
    async def ingest(self, events: list[EventIn]) -> IngestResult: ...
    async def prune_message_ids(self, older_than_ms: int) -> int: ...

    # users
    async def get_profile(self, user_id: str) -> Profile | None: ...
    async def profile_for_send(self, user_id: str) -> Profile | None: ...
    async def user_events(self, user_id: str, *, limit: int, before: int | None) -> list[StoredEvent]: ...
    async def delete_user(self, user_id: str) -> bool: ...
    async def set_preferences(self, user_id: str, patch: dict[str, Any], now_ms: int) -> dict[str, Any]: ...
    async def group_member_ids(self, group_id: str) -> list[str]: ...

    # the bus catches up from here
    async def events_after(self, cursor: int, limit: int) -> list[StoredEvent]: ...
    async def last_event_id(self) -> int: ...

    # api keys
    async def add_api_key(self, key_id: str, kind: str, key_hash: str, hint: str, label: str, now_ms: int) -> None: ...
    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...
    async def list_api_keys(self) -> list[ApiKey]: ...
    async def revoke_api_key(self, key_id: str, now_ms: int) -> bool: ...


# -- messaging -----------------------------------------------------------------


class InboxItem(msgspec.Struct, kw_only=True):
    id: str
    title: str | None
    body: str | None
    url: str | None
    data: dict[str, Any]
    created_at: int
    read_at: int | None
    archived_at: int | None


class NewMessage(msgspec.Struct, kw_only=True):
    message_id: str
    user_id: str
    channel: str
    template_id: str | None
    category: str
    variables: dict[str, Any] = {}
    event: dict[str, Any] | None = None
    automation_id: str | None = None
    run_id: str | None = None
    trigger_at: int
    # Due time of the delivery job (later than now for quiet-hours deferral).
    due_at: int
    # Status at creation: "queued", or "suppressed" (then reason says why and no job is made).
    status: str = "queued"
    reason: str | None = None
    # Sent only if this (in-app) message is still unread when it is due.
    fallback_of: str | None = None
    # In-app, delivered inline: the inbox row (and rendered content) are written
    # in the transaction that creates the message; no outbox job.
    inbox: InboxItem | None = None
    rendered: dict[str, Any] | None = None


class HistoryEntry(msgspec.Struct):
    status: str
    at: int
    detail: str | None


class Message(msgspec.Struct, kw_only=True):
    message_id: str
    pid: int
    user_id: str
    channel: str
    template_id: str | None
    category: str
    status: str
    reason: str | None
    variables: dict[str, Any]
    event: dict[str, Any] | None
    automation_id: str | None
    run_id: str | None
    rendered: dict[str, Any] | None
    trigger_at: int
    created_at: int
    updated_at: int
    delivered_at: int | None
    history: list[HistoryEntry] = []
    # Set on messages delivered inline at creation: the row shown to the user
    # and their unread count after it (for the WebSocket frames after commit).
    inbox: InboxItem | None = None
    unread_after: int | None = None


class Job(msgspec.Struct, kw_only=True):
    """A claimed delivery: the message, and the attempt number that fences it."""

    message: Message
    attempt: int
    first_at: int


class SendOutcome(msgspec.Struct, kw_only=True):
    """What a send call created, or the stored answer of an earlier call with the same key."""

    messages: list[Message]
    replay: dict[str, Any] | None = None


class PushSubscription(msgspec.Struct, kw_only=True):
    endpoint: str
    p256dh: str
    auth: str
    created_at: int


class IdempotencyConflict(Exception):
    """The idempotency key was used before with another body."""


# -- automations -----------------------------------------------------------------


class Run(msgspec.Struct, kw_only=True):
    run_id: str
    automation_id: str
    version: int
    pid: int
    user_id: str
    status: str  # active | waiting | completed | exited | held_out
    holdout: bool
    trigger_event: dict[str, Any] | None
    trigger_at: int
    position: list[Any]
    wait_until: int | None
    waiting_for: str | None
    goal_at: int | None
    started_at: int
    updated_at: int
    ended_at: int | None


class JournalEntry(msgspec.Struct, kw_only=True):
    user_id: str
    kind: str
    at: int
    automation_id: str | None = None
    run_id: str | None = None
    detail: str | None = None


class Transition(msgspec.Struct, kw_only=True):
    """One step of a run, applied atomically: the step key is claimed (so the step
    runs once), the run moves from ``expect_position``/``expect_status`` to the new
    state, and the step's messages and journal entries are written."""

    run_id: str
    step_key: str
    expect_position: list[Any]
    expect_status: str
    position: list[Any]
    status: str
    wait_until: int | None = None
    waiting_for: str | None = None
    messages: list[NewMessage] = []
    journal: list[JournalEntry] = []
    outcome: str | None = None
