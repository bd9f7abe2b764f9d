"""Per-key token buckets: a steady rate with bursts of twice that."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rates: dict[str, float], *, clock: Callable[[], float] | None = None) -> None:
        # rates: caller kind -> requests per second (0 = unlimited)
        self._rates = rates
        self._now = clock or time.monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def check(self, kind: str, key: str) -> float:
        """0 if the request may go on, else the seconds to wait before retrying."""
        rate = self._rates.get(kind, 0.0)
        if rate <= 0:
            return 0.0
        burst = max(1.0, rate * 2)
        now = self._now()
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
