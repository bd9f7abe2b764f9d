"""Storage: the Store protocol and its implementations."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config, ConfigError
from .base import ApiKey, EventIn, GroupMembership, IngestResult, Profile, Store, StoredEvent

__all__ = ["ApiKey", "EventIn", "GroupMembership", "IngestResult", "Profile", "Store", "StoredEvent", "open_store"]


def open_store(config: Config, *, observe_commit: Callable[[int, float], None] | None = None) -> Store:
    """The store the config asks for (not yet opened)."""
    if config.store.backend == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(config.data_dir, synchronous=config.store.synchronous,
                           max_batch_ops=config.store.max_batch_ops, observe_commit=observe_commit)
    raise ConfigError(f"store.backend: {config.store.backend!r} is not available in this version; use \"sqlite\"")
