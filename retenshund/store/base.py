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
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # ingestion
    async def ingest(self, events: list[EventIn]) -> IngestResult: ...
    async def prune_message_ids(self, older_than_ms: int) -> int: ...

    # users
    async def get_profile(self, user_id: str) -> Profile | None: ...
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
