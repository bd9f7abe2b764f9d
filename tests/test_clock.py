"""Times go out in one format, and come back in as the same millisecond."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from retenshund.clock import iso, parse_iso

MS = st.integers(min_value=-30_610_224_000_000, max_value=253_402_300_799_999)  # years 1000-9999


@given(MS)
def test_iso_is_the_contracts_format_to_the_millisecond(ms: int) -> None:
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    assert iso(ms) == when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    assert parse_iso(iso(ms) or "") == ms


def test_a_time_parses_to_its_exact_millisecond() -> None:
    assert parse_iso("1970-07-18T20:11:09.183Z") == 17_179_869_183  # float arithmetic made it ...182
    assert parse_iso("2026-11-26T09:00:00.000+01:00") == parse_iso("2026-11-26T08:00:00Z")
    assert parse_iso("2026-11-26T08:00:00.0009Z") == parse_iso("2026-11-26T08:00:00Z")  # below 1 ms: dropped


def test_no_time_is_null() -> None:
    assert iso(None) is None
    assert iso(1_780_000_000_123) == "2026-05-28T20:26:40.123Z"
