"""Engagement baseline glue: settings from config, the profile's JSON shape, and
the once-per-drop ``engagement_dropped`` event.

The arithmetic is in ``baseline.py``. Here each known user's last computed
engagement is kept in the store, so "has just dropped" compares against what
was true before, and a drop is reported once: the state stays
``below_baseline`` until the user recovers, and only a new fall after that is a
new drop."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from ..config import ConfigError
from .baseline import BaselineSettings, Engagement, compute_engagement, dropped

DROP_EVENT = "engagement_dropped"


class EngagementRow(msgspec.Struct, frozen=True):
    """What the store keeps per known user: the engagement as of ``day`` and the
    last day they were active (the daily job looks only at recent ones)."""

    last_active_day: int
    day: int
    engagement: Engagement


class EngagementTx(Protocol):
    """The part of a store write transaction the baseline glue needs."""

    def prefetch_engagement(self, pids: list[int], first_day: int, last_day: int) -> None:
        """A hint: ``activity`` and ``engagement_row`` for these users follow
        (a store may read them all at once)."""
        ...

    def activity(self, pid: int, first_day: int, last_day: int) -> dict[int, int]: ...
    def engagement_row(self, pid: int) -> EngagementRow | None: ...
    def set_engagement_row(self, pid: int, row: EngagementRow) -> None: ...
    def emit(self, user_id: str, event: str, properties: dict[str, Any], message_id: str, at: int) -> None: ...


def settings_from_config(raw: Mapping[str, Any]) -> BaselineSettings:
    """``[engine]`` recent_days, baseline_days, min_active_days, drop_ratio (other
    keys belong to other parts of the engine). Env vars arrive as strings."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(BaselineSettings):
        if f.name in raw:
            values[f.name] = _number(f.name, raw[f.name], float if f.name == "drop_ratio" else int)
    try:
        return BaselineSettings(**values)
    except ValueError as exc:
        raise ConfigError(f"engine: {exc}") from None


def _number(name: str, value: Any, kind: type[int | float]) -> int | float:
    wanted = "a number" if kind is float else "a whole number"
    # true/false would pass as 1/0: a setting that says "yes" is a mistake.
    if isinstance(value, bool):
        raise ConfigError(f"engine.{name}: expected {wanted}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"engine.{name}: expected {wanted}, got {value!r}") from None


def history_days(s: BaselineSettings) -> int:
    """Days of activity that decide today's engagement (baseline + recent window)."""
    return s.recent_days + s.baseline_days


def first_day(today: int, s: BaselineSettings) -> int:
    return today - history_days(s) + 1


def engagement_json(e: Engagement, s: BaselineSettings) -> dict[str, Any]:
    """The profile's ``engagement``: numbers rounded for people, the windows they cover."""
    return {
        "state": e.state,
        "baseline": round(e.baseline, 4),
        "recent": round(e.recent, 4),
        "ratio": None if e.ratio is None else round(e.ratio, 4),
        "active_days": e.active_days,
        "recent_days": s.recent_days,
        "baseline_days": s.baseline_days,
        "drop_ratio": s.drop_ratio,
    }


def refresh(tx: EngagementTx, pid: int, user_id: str, prev: EngagementRow | None, today: int, now_ms: int,
            s: BaselineSettings, *, active: bool) -> tuple[Engagement, bool]:
    """Recompute one user's engagement for ``today`` over ``prev`` (the stored
    row), store it, and write ``engagement_dropped`` if they have just fallen
    below their baseline.

    Returns the engagement and whether it differs from the stored one (so
    segments over engagement need a look)."""
    now = compute_engagement(tx.activity(pid, first_day(today, s), today), today, s)
    if dropped(prev.engagement if prev else None, now):
        # One drop per user and day at most, whatever re-runs; the stored state
        # keeps it to one per fall.
        tx.emit(user_id, DROP_EVENT, {"baseline": now.baseline, "recent": now.recent, "ratio": now.ratio,
                                      "active_days": now.active_days},
                f"{DROP_EVENT}:{today}:{user_id}", now_ms)
    last_active = today if active or prev is None else prev.last_active_day
    if prev is None or prev.day != today or prev.engagement != now or prev.last_active_day != last_active:
        tx.set_engagement_row(pid, EngagementRow(last_active, today, now))
    return now, prev is None or prev.engagement != now
