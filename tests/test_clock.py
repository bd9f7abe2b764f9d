"""Times go out in one format, and come back in as the same millisecond."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from retenshund.clock import FIRST_MS, LAST_MS, iso, parse_iso

MS = st.integers(min_value=FIRST_MS, max_value=LAST_MS)  # years 1-9999


@given(MS)
def test_iso_is_the_contracts_format_to_the_millisecond(ms: int) -> None:
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    assert iso(ms) == f"{when.year:04d}" + when.strftime("-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    assert parse_iso(iso(ms) or "") == ms


def test_years_before_1000_have_four_digits() -> None:
    assert iso(parse_iso("0999-01-01T00:00:00Z")) == "0999-01-01T00:00:00.000Z"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_stored_integer_formats_without_raising(ms: int) -> None:
    text = iso(ms) or ""
    assert FIRST_MS <= parse_iso(text) <= LAST_MS


def test_a_time_parses_to_its_exact_millisecond() -> None:
    assert parse_iso("1970-07-18T20:11:09.183Z") == 17_179_869_183  # float arithmetic made it ...182
    assert parse_iso("2026-11-26T09:00:00.000+01:00") == parse_iso("2026-11-26T08:00:00Z")
    assert parse_iso("2026-11-26T08:00:00.0009Z") == parse_iso("2026-11-26T08:00:00Z")  # below 1 ms: dropped


def test_no_time_is_null() -> None:
    assert iso(None) is None
    assert iso(1_780_000_000_123) == "2026-05-28T20:26:40.123Z"
