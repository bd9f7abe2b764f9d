"""Personal engagement baseline: is this user less active than *they* usually are?

How it works (this text is also the user documentation):

- Activity is counted per day. The **recent window** is the last ``recent_days``
  days including today (default 7). The **baseline window** is the
  ``baseline_days`` days just before it (default 28), so the two never overlap
  and a drop does not drag its own baseline down.
- **baseline** and **recent** are the mean events per day in each window, with
  each day first capped at three times the user's typical active day (the
  median count over the baseline window's active days).
- **ratio** is recent / baseline. With the default ``drop_ratio`` of 0.5 the state
  is ``below_baseline`` when the user is at less than half their own normal,
  ``above_baseline`` when at more than double, ``normal`` in between.
- A user with fewer than ``min_active_days`` active days in the baseline window
  (default 7) is ``new``: there is not enough history to call anything a drop,
  so a new user never triggers ``engagement_dropped``.

Why a capped mean and not a median: most users are not active every day, so
the median day of someone who uses the product three days a week is 0 and
would make every ratio undefined. The mean is a rate (events per day), which is
what "half as active as usual" means. Its weakness is a single burst — an
import or a script logging 500 events in an afternoon — that would inflate the
baseline for four weeks and make ordinary days look like a drop. Capping each
day at three times the typical active day removes that burst's leverage while
leaving normal variation untouched.

Today is a partial day, so early in the day ``recent`` is up to one day's worth
low (at most 1/7 with the defaults); a drop ratio of 0.5 leaves room for that.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from retenshund.durations import DAY_MS

# A busy day may be this many times the user's typical active day before it is
# capped; three keeps ordinary week-to-week swings intact.
_BURST_CAP_FACTOR = 3.0

STATES = ("new", "below_baseline", "normal", "above_baseline")


@dataclass(frozen=True, slots=True)
class BaselineSettings:
    recent_days: int = 7
    baseline_days: int = 28
    min_active_days: int = 7
    drop_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.recent_days < 1 or self.baseline_days < 1:
            raise ValueError("recent_days and baseline_days must be at least 1")
        if not 0 <= self.min_active_days <= self.baseline_days:
            raise ValueError("min_active_days must be between 0 and baseline_days")
        if not 0 < self.drop_ratio < 1:
            raise ValueError("drop_ratio must be between 0 and 1 (exclusive), e.g. 0.5")


class Engagement(msgspec.Struct, frozen=True):
    """A user's engagement as of one day; ``ratio`` is None when the baseline is 0."""

    baseline: float
    recent: float
    ratio: float | None
    state: str
    active_days: int


def day_number(ms: int, utc_offset_ms: int = 0) -> int:
    """The day a timestamp falls on, shifted by the user's UTC offset when known."""
    return (ms + utc_offset_ms) // DAY_MS


def compute_engagement(
    daily_counts: Mapping[int, int], today: int, settings: BaselineSettings | None = None
) -> Engagement:
    """Engagement for ``today`` from ``{day_number: events that day}``.

    Days missing from the mapping count as 0; days outside both windows (older
    history, or future days from skewed clocks) are ignored."""
    s = settings or BaselineSettings()
    recent_start = today - s.recent_days + 1
    baseline_start = recent_start - s.baseline_days
    # Only the days with activity matter (a missing or empty day adds 0), so
    # this walks the mapping, not every day of both windows: it runs for each
    # user's first event of the day.
    recent_counts: list[int] = []
    active: list[int] = []  # the baseline window's active days, oldest first
    for d in sorted(daily_counts):
        c = daily_counts[d]
        if c <= 0:
            continue
        if recent_start <= d <= today:
            recent_counts.append(c)
        elif baseline_start <= d < recent_start:
            active.append(c)
    cap = _BURST_CAP_FACTOR * statistics.median(active) if active else float("inf")
    baseline = sum(min(c, cap) for c in active) / s.baseline_days
    recent = sum(min(c, cap) for c in recent_counts) / s.recent_days
    ratio = recent / baseline if baseline > 0 else None

    if ratio is None or len(active) < s.min_active_days:
        state = "new"
    elif ratio < s.drop_ratio:
        state = "below_baseline"
    elif ratio > 1 / s.drop_ratio:
        state = "above_baseline"
    else:
        state = "normal"
    return Engagement(baseline, recent, ratio, state, len(active))


def dropped(prev: Engagement | None, now: Engagement) -> bool:
    """True exactly when the user has just entered ``below_baseline``.

    With no previous value (first computation, e.g. history imported at once)
    a user already below baseline counts as a fresh drop: they have never been
    told, and the automation's frequency cap guards against repeats."""
    return now.state == "below_baseline" and (prev is None or prev.state != "below_baseline")
