"""Pure message-analytics helpers: since, rates, percentiles, histogram buckets."""

from __future__ import annotations

from itertools import pairwise

import pytest

from retenshund.analytics import messages as am
from retenshund.errors import ApiError

NOW = 1_780_000_000_000


def test_since_is_a_duration_back_from_now_or_an_iso_time() -> None:
    assert am.parse_since("7d", NOW) == NOW - 7 * 86_400_000
    assert am.parse_since("90m", NOW) == NOW - 90 * 60_000
    assert am.parse_since(None, NOW) == NOW - 7 * 86_400_000
    assert am.parse_since("2026-05-28T00:00:00Z", NOW) == 1_779_926_400_000
    # "+00:00" sent unencoded in a query string arrives with a space.
    assert am.parse_since("2026-05-28T00:00:00 00:00", NOW) == 1_779_926_400_000


@pytest.mark.parametrize("bad", ["yesterday", "7 days", "-1d", ""])
def test_bad_since_is_a_400_naming_the_field(bad: str) -> None:
    if bad == "":
        assert am.parse_since(bad, NOW) == NOW - 7 * 86_400_000  # empty means the default
        return
    with pytest.raises(ApiError) as exc:
        am.parse_since(bad, NOW)
    assert exc.value.status == 400 and exc.value.message.startswith("since: ")


def test_group_by_maps_to_a_column_or_is_a_400() -> None:
    assert [am.group_column(g) for g in ("channel", "template", "automation")] == [
        "channel", "template_id", "automation_id"]
    for bad in (None, "status", "channel; DROP TABLE messages"):
        with pytest.raises(ApiError) as exc:
            am.group_column(bad)
        assert exc.value.status == 400 and "group_by: one of channel, template, automation" in exc.value.message


def test_rates_by_hand() -> None:
    # 10 messages: 2 queued, 1 suppressed (not attempted); attempted 7:
    # sent 2, delivered 1, opened 1, clicked 1 (= 5 delivered-or-sent), failed 1, bounced 1.
    current = {"queued": 2, "suppressed": 1, "sent": 2, "delivered": 1, "opened": 1, "clicked": 1,
               "failed": 1, "bounced": 1}
    reached = {"unsubscribed": 1}
    assert am.rates(current, reached, True) == {"delivery": round(5 / 7, 4), "open": 0.4, "click": 0.2,
                                                "unsubscribe": 0.2}
    assert am.rates(current, reached, False)["unsubscribe"] is None


def test_rates_with_nothing_to_divide_by_are_null() -> None:
    assert am.rates({"queued": 3}, {}, True) == {"delivery": None, "open": None, "click": None, "unsubscribe": None}


@pytest.mark.parametrize("p, n, rank", [
    (50, 1, 1), (99, 1, 1), (50, 2, 1), (50, 10, 5), (90, 10, 9), (99, 10, 10), (50, 11, 6),
    (99, 100, 99), (99, 101, 100), (90, 1000, 900), (1, 1000, 10), (0, 5, 1),
])
def test_nearest_rank(p: int, n: int, rank: int) -> None:
    assert am.nearest_rank(p, n) == rank


def test_percentile_of_sorted_values() -> None:
    values = sorted([5, 1, 9, 3, 7, 2, 8, 4, 6, 10])
    assert [am.percentile(values, p) for p in am.PERCENTILES] == [5, 9, 10]
    with pytest.raises(ValueError):
        am.nearest_rank(50, 0)


def test_buckets_are_fixed_ordered_and_cover_everything() -> None:
    shape = am.buckets()
    assert len(shape) == len(am.BUCKET_EDGES_MS) + 1
    assert [b["label"] for b in shape[:5]] == ["<1ms", "1ms-2.5ms", "2.5ms-5ms", "5ms-10ms", "10ms-25ms"]
    assert shape[10]["label"] == "1s-2.5s" and shape[15]["label"] == "1m-5m"
    assert shape[-1] == {"label": ">=1h", "from_ms": 3_600_000, "to_ms": None}
    assert shape[0]["from_ms"] is None
    assert all(a["to_ms"] == b["from_ms"] for a, b in pairwise(shape))


@pytest.mark.parametrize("ms, index", [
    (-5, 0), (0, 0), (1, 1), (2, 1), (3, 2), (9, 3), (10, 4), (499, 8), (500, 9), (999, 9), (1_000, 10),
    (3_599_999, 17), (3_600_000, 18), (10**9, 18),
])
def test_bucket_index_lower_edge_inclusive(ms: int, index: int) -> None:
    assert am.bucket_index(ms) == index


def test_histogram_counts_each_value_once() -> None:
    counts = am.histogram([0, 0, 3, 120, 120, 4_000_000])
    assert sum(counts) == 6
    assert counts[0] == 2 and counts[2] == 1 and counts[7] == 2 and counts[-1] == 1
