from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retenshund.durations import DAY_MS, HOUR_MS
from retenshund.engine.baseline import (
    BaselineSettings,
    Engagement,
    compute_engagement,
    day_number,
    dropped,
)

TODAY = 20_000


def history(baseline_per_day: int, recent_per_day: int, today: int = TODAY) -> dict[int, int]:
    """28 baseline days then 7 recent days (the defaults), each at a flat rate."""
    counts = {d: baseline_per_day for d in range(today - 34, today - 6)}
    counts.update({d: recent_per_day for d in range(today - 6, today + 1)})
    return counts


def test_steady_user_is_normal() -> None:
    e = compute_engagement(history(2, 2), TODAY)
    assert e == Engagement(baseline=2.0, recent=2.0, ratio=1.0, state="normal", active_days=28)


def test_drop_below_half_of_own_normal() -> None:
    e = compute_engagement(history(4, 1), TODAY)
    assert (e.baseline, e.recent, e.ratio, e.state) == (4.0, 1.0, 0.25, "below_baseline")


def test_more_than_double_is_above_baseline() -> None:
    e = compute_engagement(history(1, 3), TODAY)
    assert e.ratio == 3.0
    assert e.state == "above_baseline"


def test_thresholds_are_strict() -> None:
    assert compute_engagement(history(4, 2), TODAY).state == "normal"  # ratio exactly 0.5
    assert compute_engagement(history(2, 4), TODAY).state == "normal"  # ratio exactly 2


def test_baseline_is_relative_to_the_user() -> None:
    # One event a day is a collapse for a heavy user and normal for a light one.
    assert compute_engagement(history(10, 1), TODAY).state == "below_baseline"
    assert compute_engagement(history(1, 1), TODAY).state == "normal"


def test_too_little_history_is_new_and_never_dropped() -> None:
    counts = {TODAY - 30 + i: 5 for i in range(6)}  # six active days in the baseline window
    e = compute_engagement(counts, TODAY)
    assert e.active_days == 6
    assert e.ratio == 0.0
    assert e.state == "new"
    assert not dropped(None, e)
    counts[TODAY - 10] = 5  # the seventh
    assert compute_engagement(counts, TODAY).state == "below_baseline"


def test_no_baseline_activity_has_no_ratio() -> None:
    counts = {TODAY: 9}
    e = compute_engagement(counts, TODAY, BaselineSettings(min_active_days=0))
    assert e.baseline == 0.0
    assert e.ratio is None
    assert e.state == "new"


def test_recent_window_includes_today_and_windows_do_not_overlap() -> None:
    only_recent = {TODAY - 6: 7, TODAY: 7}
    e = compute_engagement(only_recent, TODAY)
    assert e.recent == 2.0
    assert e.baseline == 0.0  # recent activity never leaks into the baseline
    only_baseline = {TODAY - 7: 28}
    e = compute_engagement(only_baseline, TODAY)
    assert (e.recent, e.baseline, e.active_days) == (0.0, 1.0, 1)


def test_days_outside_both_windows_are_ignored() -> None:
    base = compute_engagement(history(3, 3), TODAY)
    noisy = history(3, 3) | {TODAY - 35: 1000, TODAY - 400: 50, TODAY + 1: 999, TODAY + 30: 5}
    assert compute_engagement(noisy, TODAY) == base


def test_one_burst_day_does_not_fake_a_drop() -> None:
    counts = history(2, 2)
    counts[TODAY - 20] = 500  # an import or a script
    e = compute_engagement(counts, TODAY)
    # Capped at 3 x the typical active day (2): (27 * 2 + 6) / 28.
    assert e.baseline == pytest.approx(60 / 28)
    assert e.state == "normal"


def test_part_time_user_has_a_usable_baseline() -> None:
    # Active 3 days a week: a median day would be 0; the mean is a real rate.
    counts = {d: 4 for d in range(TODAY - 34, TODAY + 1) if d % 7 in (0, 2, 4)}
    e = compute_engagement(counts, TODAY)
    assert e.ratio == pytest.approx(1.0)
    assert e.state == "normal"


def test_custom_windows() -> None:
    s = BaselineSettings(recent_days=3, baseline_days=10, min_active_days=5, drop_ratio=0.8)
    counts = {d: 10 for d in range(TODAY - 12, TODAY - 2)} | {d: 7 for d in range(TODAY - 2, TODAY + 1)}
    e = compute_engagement(counts, TODAY, s)
    assert (e.baseline, e.recent, e.state, e.active_days) == (10.0, 7.0, "below_baseline", 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recent_days": 0},
        {"baseline_days": 0},
        {"min_active_days": -1},
        {"min_active_days": 29},
        {"drop_ratio": 0},
        {"drop_ratio": 1},
        {"drop_ratio": 1.5},
    ],
)
def test_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BaselineSettings(**kwargs)  # type: ignore[arg-type]


def test_day_number() -> None:
    assert day_number(5 * DAY_MS) == 5
    assert day_number(5 * DAY_MS - 1) == 4
    # 23:30 UTC is already the next day at UTC+2.
    assert day_number(5 * DAY_MS + 23 * HOUR_MS, utc_offset_ms=2 * HOUR_MS) == 6


def test_dropped_fires_once_per_drop() -> None:
    # A heavy user goes quiet, stays quiet, comes back, and goes quiet again.
    counts = {d: 6 for d in range(TODAY - 60, TODAY)}
    fired: list[int] = []
    prev: Engagement | None = None
    for day in range(TODAY, TODAY + 40):
        counts[day] = 0 if day < TODAY + 10 or day >= TODAY + 30 else 6
        now = compute_engagement(counts, day)
        if dropped(prev, now):
            fired.append(day)
        prev = now
    assert len(fired) == 2
    assert TODAY < fired[0] < TODAY + 10
    assert TODAY + 30 <= fired[1] < TODAY + 40


def test_dropped_transitions() -> None:
    below = Engagement(4.0, 1.0, 0.25, "below_baseline", 20)
    normal = Engagement(4.0, 4.0, 1.0, "normal", 20)
    new = Engagement(0.5, 0.0, 0.0, "new", 3)
    assert dropped(normal, below)
    assert dropped(new, below)
    assert dropped(None, below)
    assert not dropped(below, below)
    assert not dropped(below, normal)
    assert not dropped(None, new)


daily = st.dictionaries(st.integers(TODAY - 40, TODAY + 3), st.integers(0, 50), max_size=45)


@given(daily)
def test_state_agrees_with_the_numbers(counts: dict[int, int]) -> None:
    s = BaselineSettings()
    e = compute_engagement(counts, TODAY, s)
    assert 0 <= e.active_days <= s.baseline_days
    assert (e.ratio is None) == (e.baseline == 0)
    if e.state == "new":
        assert e.ratio is None or e.active_days < s.min_active_days
    else:
        assert e.ratio is not None and e.active_days >= s.min_active_days
        expected = "below_baseline" if e.ratio < 0.5 else "above_baseline" if e.ratio > 2 else "normal"
        assert e.state == expected


@given(daily, st.integers(2, 9))
def test_scaling_activity_keeps_ratio_and_state(counts: dict[int, int], k: int) -> None:
    # "Below *their own* normal": a user ten times as active in every day has
    # the same engagement state.
    a = compute_engagement(counts, TODAY)
    b = compute_engagement({d: c * k for d, c in counts.items()}, TODAY)
    assert a.state == b.state
    assert (a.ratio is None and b.ratio is None) or math.isclose(a.ratio, b.ratio)  # type: ignore[arg-type]


@given(daily, st.integers(TODAY - 6, TODAY), st.integers(1, 20))
def test_more_recent_activity_never_lowers_the_ratio(
    counts: dict[int, int], day: int, extra: int
) -> None:
    a = compute_engagement(counts, TODAY)
    b = compute_engagement(counts | {day: counts.get(day, 0) + extra}, TODAY)
    assert b.baseline == a.baseline
    assert b.recent >= a.recent
