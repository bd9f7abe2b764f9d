from __future__ import annotations

import hashlib
import math
import random

import msgspec
import pytest

from retenshund.analytics.lift import (
    NEGATIVE,
    NO_DIFFERENCE,
    NOT_ENOUGH_DATA,
    POSITIVE,
    holdout_assign,
    lift,
    newcombe_interval,
    normal_cdf,
    two_proportion_p_value,
    wilson_interval,
)

Z95 = 1.959963984540054


def test_normal_cdf_known_values() -> None:
    assert normal_cdf(0) == 0.5
    assert normal_cdf(Z95) == pytest.approx(0.975, abs=1e-12)
    assert normal_cdf(-1) == pytest.approx(0.15865525393145707, rel=1e-12)
    # Far tail: 1 - erf() would round to 0 here; erfc keeps the digits.
    assert normal_cdf(-10) == pytest.approx(7.619853024160527e-24, rel=1e-9)


def test_z_test_textbook_value_round_numbers() -> None:
    # 60/100 vs 40/100. Pooled p = 100/200 = 0.5;
    # SE = sqrt(0.5 * 0.5 * (1/100 + 1/100)) = sqrt(0.005) = 0.0707107;
    # z = 0.2 / 0.0707107 = 2.828427 (= 2 * sqrt 2);
    # two-sided p = 2 * (1 - Phi(2.828427)) = erfc(2.828427 / sqrt 2) = erfc(2) = 0.0046777.
    assert two_proportion_p_value(60, 100, 40, 100) == pytest.approx(0.0046777350, rel=1e-7)


def test_z_test_textbook_value_not_significant() -> None:
    # 120/1000 vs 100/1000. Pooled p = 220/2000 = 0.11;
    # SE = sqrt(0.11 * 0.89 * 0.002) = sqrt(0.0001958) = 0.0139929;
    # z = 0.02 / 0.0139929 = 1.42930; p = 2 * (1 - Phi(1.42930)) = 0.15292.
    assert two_proportion_p_value(120, 1000, 100, 1000) == pytest.approx(0.15292, abs=5e-5)


def test_z_test_is_symmetric_and_one_when_equal() -> None:
    assert two_proportion_p_value(30, 200, 50, 210) == pytest.approx(two_proportion_p_value(50, 210, 30, 200))
    assert two_proportion_p_value(20, 100, 40, 200) == pytest.approx(1.0)
    assert two_proportion_p_value(0, 50, 0, 80) == 1.0  # no variance at all
    assert two_proportion_p_value(50, 50, 80, 80) == 1.0


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [
        # Newcombe (1998), "Interval estimation for the difference between
        # independent proportions", Statistics in Medicine 17, Table II, method 10.
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
    ],
)
def test_newcombe_interval_matches_published_values(
    x1: int, n1: int, x2: int, n2: int, low: float, high: float
) -> None:
    lo, hi = newcombe_interval(x1, n1, x2, n2, Z95)
    assert lo == pytest.approx(low, abs=6e-5)
    assert hi == pytest.approx(high, abs=6e-5)


def test_wilson_interval_stays_inside_zero_one_at_the_edges() -> None:
    lo, hi = wilson_interval(0, 20, Z95)
    assert lo == 0.0 and 0.1 < hi < 0.2  # a Wald interval would be [0, 0]
    lo, hi = wilson_interval(20, 20, Z95)
    assert 0.8 < lo < 0.9 and hi == 1.0


def test_lift_result_fields() -> None:
    r = lift(100, 60, 100, 40)
    assert r.treated_rate == 0.6
    assert r.holdout_rate == 0.4
    assert r.absolute_lift == pytest.approx(0.2)
    assert r.relative_lift == pytest.approx(0.5)
    assert r.p_value == pytest.approx(0.0046777350, rel=1e-7)
    assert r.ci_low is not None and r.ci_high is not None
    assert r.ci_low < r.absolute_lift < r.ci_high
    assert r.confidence == 0.95
    assert r.verdict == POSITIVE
    assert "60.0%" in r.explanation and "40.0%" in r.explanation and "95%" in r.explanation
    # It is what the report endpoint returns, so it must encode as JSON.
    assert msgspec.json.decode(msgspec.json.encode(r))["verdict"] == POSITIVE


def test_higher_confidence_means_a_wider_interval() -> None:
    r95, r99 = lift(500, 80, 500, 60), lift(500, 80, 500, 60, confidence=0.99)
    assert r99.ci_low < r95.ci_low and r99.ci_high > r95.ci_high  # type: ignore[operator]
    assert "99%" in r99.explanation


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        ((100, 60, 100, 40), POSITIVE),
        ((100, 40, 100, 60), NEGATIVE),
        ((1000, 120, 1000, 100), NO_DIFFERENCE),
        ((29, 10, 500, 50), NOT_ENOUGH_DATA),  # too few treated users
        ((500, 50, 29, 10), NOT_ENOUGH_DATA),  # too few held out
        ((500, 50, 100, 4), NOT_ENOUGH_DATA),  # too few conversions
        ((500, 50, 100, 96), NOT_ENOUGH_DATA),  # too few non-conversions
        ((30, 5, 30, 25), NEGATIVE),  # exactly at the minimums
    ],
)
def test_verdicts(args: tuple[int, int, int, int], verdict: str) -> None:
    r = lift(*args)
    assert r.verdict == verdict
    assert r.explanation.endswith(".")
    assert r.explanation.count(". ") == 0  # one sentence


def test_not_enough_data_still_reports_the_numbers_it_has() -> None:
    r = lift(40, 3, 40, 1)
    assert r.verdict == NOT_ENOUGH_DATA
    assert r.treated_rate == 3 / 40
    assert r.ci_low is not None and r.p_value is not None
    assert "3 of 40" in r.explanation


def test_empty_groups_have_no_numbers() -> None:
    r = lift(0, 0, 0, 0)
    assert r.verdict == NOT_ENOUGH_DATA
    assert r.treated_rate is None and r.holdout_rate is None
    assert r.absolute_lift is r.ci_low is r.ci_high is r.p_value is r.relative_lift is None
    assert lift(100, 10, 100, 0).relative_lift is None  # relative to a 0% rate


@pytest.mark.parametrize(
    "args",
    [(10, 11, 10, 1), (10, 1, 10, -1), (-1, 0, 10, 1), (10, 1, 10, 1, 0.0), (10, 1, 10, 1, 1.0), (10, 1, 10, 1, 95)],
)
def test_rejects_impossible_counts(args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        lift(*args)  # type: ignore[arg-type]


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def test_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    # 1000 experiments rather than 200: with 200 the 93-97% band is only
    # +-1.3 standard errors (sd = sqrt(.95 * .05 / 200) = 1.5 points), so a
    # correct interval would fail about one seed in five. With 1000 the sd is
    # 0.69 points and the band is +-2.9 sd.
    rng = random.Random(1)
    runs, n, p_treated, p_holdout = 1000, 2000, 0.15, 0.10
    covered = positive = 0
    for _ in range(runs):
        r = lift(n, _binomial(rng, n, p_treated), n, _binomial(rng, n, p_holdout))
        assert r.ci_low is not None and r.ci_high is not None
        covered += r.ci_low <= p_treated - p_holdout <= r.ci_high
        positive += r.verdict == POSITIVE
    assert 0.93 <= covered / runs <= 0.97
    # A 5-point lift on 2000 users a side is detected nearly always (power ~ 0.99+).
    assert positive / runs >= 0.98


def test_no_effect_is_mostly_no_significant_difference() -> None:
    rng = random.Random(2)
    runs, n = 500, 2000
    verdicts = [lift(n, _binomial(rng, n, 0.12), n, _binomial(rng, n, 0.12)).verdict for _ in range(runs)]
    # Expected 95%; each false alarm is a CI excluding 0 by chance, split across both signs.
    assert verdicts.count(NO_DIFFERENCE) / runs >= 0.92
    assert verdicts.count(NOT_ENOUGH_DATA) == 0
    assert 0 < verdicts.count(POSITIVE) + verdicts.count(NEGATIVE) < 0.08 * runs


def test_holdout_assign_matches_the_percent() -> None:
    users = [f"user_{i}" for i in range(100_000)]
    held = sum(holdout_assign("cart_recovery", u, 10) for u in users)
    # sd = sqrt(0.1 * 0.9 / 100000) = 0.095 points; allow 3 sd.
    assert abs(held / len(users) - 0.10) < 0.003


def test_holdout_assign_is_stable_nested_and_independent_per_automation() -> None:
    users = [f"u{i}" for i in range(20_000)]
    ten = {u for u in users if holdout_assign("a1", u, 10)}
    assert ten == {u for u in users if holdout_assign("a1", u, 10)}  # stable across calls
    five = {u for u in users if holdout_assign("a1", u, 5)}
    assert five < ten  # raising the percent only adds users to the holdout
    other = {u for u in users if holdout_assign("a2", u, 10)}
    # Independent automations overlap at about 10% x 10% = 1% of users, not 10%.
    assert 0.005 < len(ten & other) / len(users) < 0.015
    assert not any(holdout_assign("a1", u, 0) for u in users[:1000])
    assert all(holdout_assign("a1", u, 100) for u in users[:1000])


def test_holdout_assign_hashes_ids_with_a_separator() -> None:
    # The documented mapping, so every node and every version agrees:
    # first 8 bytes of SHA-256("automation\0user"), big-endian, scaled to [0, 100).
    digest = hashlib.sha256(b"cart_recovery\0user_42").digest()
    position = int.from_bytes(digest[:8], "big") * 100 / 2**64
    assert holdout_assign("cart_recovery", "user_42", math.nextafter(position, 101))
    assert not holdout_assign("cart_recovery", "user_42", position)
    # Without the separator ("ab", "c") and ("a", "bc") would always agree.
    users = [str(i) for i in range(2000)]
    assert [holdout_assign("ab", "c" + u, 50) for u in users] != [holdout_assign("a", "bc" + u, 50) for u in users]


@pytest.mark.parametrize("percent", [-1, 100.5, float("nan")])
def test_holdout_assign_rejects_bad_percent(percent: float) -> None:
    with pytest.raises(ValueError):
        holdout_assign("a", "u", percent)
