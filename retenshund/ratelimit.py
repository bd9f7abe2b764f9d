"""Token buckets: a steady rate with bursts of twice that, per key or per
(key, client address)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Every this many checks, buckets idle long enough to be full again (the same
# as new ones) are dropped, so one bucket per visitor does not pile up.
_SWEEP_EVERY = 10_000


class RateLimiter:
    def __init__(self, rates: dict[str, float], *, clock: Callable[[], float] | None = None) -> None:
        # rates: caller kind -> requests per second (0 = unlimited)
        self._rates = rates
        self._now = clock or time.monotonic
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (kind, key) -> (tokens, at)
        self._checks = 0

    def check(self, kind: str, key: str) -> float:
        """0 if the request may go on, else the seconds to wait before retrying."""
        rate = self._rates.get(kind, 0.0)
        if rate <= 0:
            return 0.0
        burst = max(1.0, rate * 2)
        now = self._now()
        self._checks += 1
        if self._checks % _SWEEP_EVERY == 0:
            self._sweep(now)
        tokens, at = self._buckets.get((kind, key), (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[(kind, key)] = (tokens - 1.0, now)
            return 0.0
        self._buckets[(kind, key)] = (tokens, now)
        return (1.0 - tokens) / rate

    def _sweep(self, now: float) -> None:
        full = [k for k, (_tokens, at) in self._buckets.items()
                if (rate := self._rates.get(k[0], 0.0)) <= 0 or now - at >= max(1.0, rate * 2) / rate]
        for k in full:
            del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
