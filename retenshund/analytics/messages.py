"""Message analytics, the pure part: the ``since`` parameter, rates from status
counts, nearest-rank percentiles and the fixed latency histogram buckets.

Counting rules (also sent in every response, so a reader need not find this):

- **current**: each message once, under the status it has now. Statuses only
  move forward (queued -> sent/delivered -> opened -> clicked; failed, bounced
  and suppressed are final), so this is what most dashboards show.
- **reached**: messages whose history contains the status at least once. A
  message that is clicked now also reached delivered (or sent); one that was
  sent and then bounced reached both.
- **delivery rate** = delivered-or-sent (current status sent, delivered, opened
  or clicked) / attempted (those plus failed and bounced). Suppressed and still
  queued messages were not attempted.
- **open rate** = current opened or clicked / delivered-or-sent (a click
  implies an open, even when the open pixel was blocked).
- **click rate** = current clicked / delivered-or-sent.
- **unsubscribe rate** = messages with an ``unsubscribed`` history entry /
  delivered-or-sent; null while no unsubscribe has ever been recorded against
  a message (the unsubscribe page does not record them per message yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from ..clock import parse_iso
from ..durations import DefinitionError, parse_duration
from ..errors import bad_request

STATUSES = ("queued", "sent", "delivered", "opened", "clicked", "failed", "bounced", "suppressed")
# "unsubscribed" is a history entry, not a status a message can have.
REACHED = (*STATUSES, "unsubscribed")
GROUP_COLUMNS = {"channel": "channel", "template": "template_id", "automation": "automation_id"}
DEFAULT_SINCE = "7d"
PERCENTILES = (50, 90, 99)

DELIVERED = ("sent", "delivered", "opened", "clicked")
ATTEMPTED = (*DELIVERED, "failed", "bounced")
OPENED = ("opened", "clicked")

# Upper edges in ms of the latency buckets (the last bucket is ">= 1h").
# Roughly log-spaced (1-2.5-5 per decade up to 10 s, then round human units),
# fixed so that histograms from different days and servers add up.
BUCKET_EDGES_MS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 250, 500,
    1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000,
)

COUNTING = {
    "window": "messages created in [since, until)",
    "current": "each message once, under the status it has now",
    "reached": "messages whose status history includes the status at least once",
}
RATES = {
    "delivery": "current sent|delivered|opened|clicked / those plus failed|bounced (attempted)",
    "open": "current opened|clicked / current sent|delivered|opened|clicked",
    "click": "current clicked / current sent|delivered|opened|clicked",
    "unsubscribe": "reached unsubscribed / current sent|delivered|opened|clicked;"
                   " null while no per-message unsubscribe has been recorded",
}
MEASURE = ("delivered_at - trigger_at per message delivered in the window: from the triggering event being"
           " received (or the send call) to delivery (in_app, push) or hand-off to the mail server (email)")


def parse_since(text: str | None, now_ms: int) -> int:
    """``since``: an ISO 8601 time, or a duration back from now (``7d``, ``24h``)."""
    raw = (text or DEFAULT_SINCE).strip()
    try:
        return now_ms - parse_duration(raw, "since")
    except DefinitionError:
        pass
    try:
        # An unencoded "+00:00" arrives as " 00:00" (a + in a query string is a space).
        return parse_iso(raw.replace(" ", "+"))
    except ValueError:
        raise bad_request("since", f"{raw[:40]!r} is neither an ISO 8601 time (2026-11-26T08:00:00Z)"
                                   " nor a duration back from now (7d, 24h, 90m)") from None


def group_column(group_by: str | None) -> str:
    if group_by not in GROUP_COLUMNS:
        raise bad_request("group_by", f"one of {', '.join(GROUP_COLUMNS)}")
    return GROUP_COLUMNS[group_by]


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rates(current: Mapping[str, int], reached: Mapping[str, int], unsubscribes_recorded: bool) -> dict[str, Any]:
    delivered = sum(current.get(s, 0) for s in DELIVERED)
    attempted = sum(current.get(s, 0) for s in ATTEMPTED)
    return {
        "delivery": ratio(delivered, attempted),
        "open": ratio(sum(current.get(s, 0) for s in OPENED), delivered),
        "click": ratio(current.get("clicked", 0), delivered),
        "unsubscribe": ratio(reached.get("unsubscribed", 0), delivered) if unsubscribes_recorded else None,
    }


def nearest_rank(p: int, n: int) -> int:
    """1-based rank of the p-th percentile among n sorted values (nearest-rank method:
    the smallest value with at least p% of the values at or below it)."""
    if n <= 0:
        raise ValueError("no values")
    return max(1, -(-p * n // 100))


def percentile(sorted_values: Sequence[int], p: int) -> int:
    return sorted_values[nearest_rank(p, len(sorted_values)) - 1]


def bucket_index(ms: float) -> int:
    for i, edge in enumerate(BUCKET_EDGES_MS):
        if ms < edge:
            return i
    return len(BUCKET_EDGES_MS)


def histogram(values: Iterable[float]) -> list[int]:
    counts = [0] * (len(BUCKET_EDGES_MS) + 1)
    for v in values:
        counts[bucket_index(v)] += 1
    return counts


def _human(ms: float) -> str:
    if ms < 1_000:
        return f"{ms:g}ms"
    if ms < 60_000:
        return f"{ms / 1_000:g}s"
    if ms < 3_600_000:
        return f"{ms / 60_000:g}m"
    return f"{ms / 3_600_000:g}h"


def buckets() -> list[dict[str, Any]]:
    """Each bucket as {label, from_ms (inclusive), to_ms (exclusive)}; open ends are null."""
    edges: list[float | None] = [None, *BUCKET_EDGES_MS, None]
    out = []
    for lo, hi in pairwise(edges):
        if lo is None:
            label = f"<{_human(hi or 0)}"
        elif hi is None:
            label = f">={_human(lo)}"
        else:
            label = f"{_human(lo)}-{_human(hi)}"
        out.append({"label": label, "from_ms": lo, "to_ms": hi})
    return out
