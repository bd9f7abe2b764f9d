"""Quiet hours in the user's own time zone: when a send may go out."""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: object, fallback: str | None = None) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if isinstance(candidate, str):
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def release_time(now_ms: int, start_min: int, end_min: int, tz: ZoneInfo) -> int | None:
    """None if ``now`` is outside the quiet window [start, end) in ``tz``; else the
    instant (ms) the window ends. Windows may wrap midnight (21:00-08:00)."""
    local = _dt.datetime.fromtimestamp(now_ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    wraps = start_min > end_min
    inside = (start_min <= minute or minute < end_min) if wraps else (start_min <= minute < end_min)
    if not inside:
        return None
    end_day = local.date()
    if wraps and minute >= start_min:
        end_day = end_day + _dt.timedelta(days=1)
    end_local = _dt.datetime(end_day.year, end_day.month, end_day.day, end_min // 60, end_min % 60, tzinfo=tz)
    return int(end_local.timestamp() * 1000)
