"""Holdout lift: did users who got an automation's messages convert more than those held out?

- **Assignment.** ``holdout_assign`` hashes the automation and user ids, so a
  user is in or out of a holdout forever, on every node, with nothing stored.
- **Interval.** The confidence interval for the difference in conversion rates
  is Newcombe's hybrid score interval (built from a Wilson interval for each
  group). The textbook Wald interval is too narrow when rates are near 0 or 1,
  which conversion rates often are, and can reach outside [-1, 1]; Newcombe's
  keeps close to the stated coverage there and costs nothing more to compute.
- **p-value.** Two-sided, from the pooled two-proportion z-test, the number
  most people know. The verdict follows the interval, not the p-value; the two
  can disagree only at the very edge of significance.
- **Verdict.** Below 30 users, or fewer than 5 conversions or 5 non-conversions
  in a group, the normal approximations behind both are not trustworthy, so the
  report says "not enough data yet" instead of a number that looks decisive.
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

import msgspec

MIN_USERS = 30
MIN_CELL = 5

NOT_ENOUGH_DATA = "not enough data yet"
POSITIVE = "positive lift"
NEGATIVE = "negative lift"
NO_DIFFERENCE = "no significant difference"


class LiftResult(msgspec.Struct, frozen=True, kw_only=True):
    """Rates and differences are fractions (0.12 = 12%); None where undefined
    (an empty group, or a relative lift over a 0% holdout rate)."""

    treated_users: int
    treated_conversions: int
    treated_rate: float | None
    holdout_users: int
    holdout_conversions: int
    holdout_rate: float | None
    absolute_lift: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    p_value: float | None
    relative_lift: float | None
    verdict: str
    explanation: str


def normal_cdf(x: float) -> float:
    """Standard normal CDF; erfc keeps full precision far into the tails."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (``n1``, ``n2`` > 0)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        # Everyone or no one converted in both groups: the rates are identical.
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    return min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def wilson_interval(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion ``x / n`` (``n`` > 0)."""
    p = x / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``x1/n1 - x2/n2``."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def lift(
    treated_users: int,
    treated_conv: int,
    holdout_users: int,
    holdout_conv: int,
    confidence: float = 0.95,
) -> LiftResult:
    """Compare conversion of treated users against the holdout."""
    for name, users, conv in (
        ("treated", treated_users, treated_conv),
        ("holdout", holdout_users, holdout_conv),
    ):
        if users < 0 or not 0 <= conv <= users:
            raise ValueError(f"{name}: need 0 <= conversions <= users, got {conv} of {users}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")

    t_rate = treated_conv / treated_users if treated_users else None
    h_rate = holdout_conv / holdout_users if holdout_users else None
    abs_lift = ci_low = ci_high = p_value = rel_lift = None
    verdict = NOT_ENOUGH_DATA
    explanation = (
        f"Each group needs at least {MIN_USERS} users, with {MIN_CELL} who converted and "
        f"{MIN_CELL} who did not; so far treated has {treated_conv} of {treated_users} "
        f"and holdout {holdout_conv} of {holdout_users}."
    )
    if t_rate is not None and h_rate is not None:
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        abs_lift = t_rate - h_rate
        ci_low, ci_high = newcombe_interval(treated_conv, treated_users, holdout_conv, holdout_users, z)
        p_value = two_proportion_p_value(treated_conv, treated_users, holdout_conv, holdout_users)
        rel_lift = abs_lift / h_rate if h_rate > 0 else None
        if _enough(treated_users, treated_conv) and _enough(holdout_users, holdout_conv):
            verdict, explanation = _judge(t_rate, h_rate, ci_low, ci_high, confidence)
    return LiftResult(
        treated_users=treated_users,
        treated_conversions=treated_conv,
        treated_rate=t_rate,
        holdout_users=holdout_users,
        holdout_conversions=holdout_conv,
        holdout_rate=h_rate,
        absolute_lift=abs_lift,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        p_value=p_value,
        relative_lift=rel_lift,
        verdict=verdict,
        explanation=explanation,
    )


def _judge(
    t_rate: float, h_rate: float, ci_low: float, ci_high: float, confidence: float
) -> tuple[str, str]:
    level = f"{confidence * 100:g}%"
    span = f"{_points(ci_low)} to {_points(ci_high)} percentage points"
    rates = f"{t_rate:.1%} of messaged users converted against {h_rate:.1%} held out"
    if ci_low > 0:
        return POSITIVE, f"{rates}; with {level} confidence the messages add {span}."
    if ci_high < 0:
        return NEGATIVE, f"{rates}; with {level} confidence the messages change conversion by {span}."
    return NO_DIFFERENCE, (
        f"{rates}, but the {level} interval ({span}) includes zero, so the difference may be chance."
    )


def _enough(users: int, conv: int) -> bool:
    return users >= MIN_USERS and conv >= MIN_CELL and users - conv >= MIN_CELL


def _points(fraction: float) -> str:
    return f"{fraction * 100:+.1f}"


def holdout_assign(automation_id: str, user_id: str, percent: float) -> bool:
    """True when the user is held out of the automation.

    SHA-256 of ``automation_id + "\\0" + user_id`` (the NUL keeps ``("ab", "c")``
    and ``("a", "bc")`` apart) mapped to [0, 100); held out when below
    ``percent``. Different automations hold out independent sets of users."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be between 0 and 100, got {percent}")
    digest = hashlib.sha256(f"{automation_id}\0{user_id}".encode()).digest()
    # 64 bits are far finer than any percent anyone will configure.
    position = int.from_bytes(digest[:8], "big") * 100 / 2**64
    return position < percent
