"""The parts of a running daemon, wired once at startup (see app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .auth import Keyring
from .bus import EventBus
from .clock import Clock
from .config import Config
from .credentials import Credentials
from .metrics import Metrics
from .ratelimit import RateLimiter
from .store.base import Store


@dataclass
class Services:
    config: Config
    clock: Clock
    store: Store
    bus: EventBus
    keyring: Keyring
    credentials: Credentials
    metrics: Metrics
    limiter: RateLimiter
    signing_secret: str
    # Parts added by later features (dispatcher, engine, hub...) by name.
    extra: dict[str, Any] = field(default_factory=dict)
