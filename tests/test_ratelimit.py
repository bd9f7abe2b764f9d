"""Token buckets: a steady rate, bursts of twice that, idle buckets forgotten."""

from __future__ import annotations

from retenshund.ratelimit import _SWEEP_EVERY, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_of_twice_the_rate_then_the_wait_until_the_next_token() -> None:
    clock = Clock()
    rl = RateLimiter({"publishable": 2.0}, clock=clock)
    assert [rl.check("publishable", "k") for _ in range(4)] == [0.0] * 4
    assert rl.check("publishable", "k") == 0.5
    clock.t += 0.5
    assert rl.check("publishable", "k") == 0.0


def test_kinds_and_keys_have_buckets_of_their_own() -> None:
    clock = Clock()
    rl = RateLimiter({"publishable": 1.0, "publishable_client": 1.0, "secret": 0.0}, clock=clock)
    for _ in range(2):
        assert rl.check("publishable_client", "pk 10.0.0.1") == 0.0
    assert rl.check("publishable_client", "pk 10.0.0.1") > 0
    assert rl.check("publishable_client", "pk 10.0.0.2") == 0.0  # another address
    assert rl.check("publishable", "pk") == 0.0  # the key's own bucket is untouched
    assert all(rl.check("secret", "sk") == 0.0 for _ in range(100))  # 0 = unlimited


def test_idle_buckets_are_dropped_and_come_back_full() -> None:
    clock = Clock()
    rl = RateLimiter({"publishable_client": 10.0}, clock=clock)
    visitors = _SWEEP_EVERY - 21
    for i in range(visitors):
        rl.check("publishable_client", f"pk 10.0.{i // 256}.{i % 256}")
    for _ in range(20):
        rl.check("publishable_client", "pk busy")  # empties this one
    assert len(rl) == visitors + 1
    clock.t += 2.0  # a full refill for the idle ones (burst 20 at 10/s)...
    for _ in range(25):
        rl.check("publishable_client", "pk busy")  # ...the first of these sweeps, the rest empty "busy" again
    assert len(rl) == 1
    assert rl.check("publishable_client", "pk busy") > 0  # a drained bucket is kept
    assert rl.check("publishable_client", "pk 10.0.0.0") == 0.0
