"""Analytics over messages (secret key): status counts and rates per channel,
template or automation, and time from trigger to delivery per channel."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..analytics import messages as am
from ..clock import iso
from .common import Query, json, secret, services

SINCE = Query("since", "Start of the window: an ISO 8601 time (2026-11-26T08:00:00Z) or a duration back from now"
                       " (7d, 24h, 90m); the window ends now", default=am.DEFAULT_SINCE)
GROUP_BY = Query("group_by", "What a group is: messages per channel, template or automation",
                 enum=tuple(am.GROUP_COLUMNS), required=True)
TEMPLATE_ID = Query("template_id", "Only messages of this template")
AUTOMATION_ID = Query("automation_id", "Only messages sent by this automation")


class MessageGroup(msgspec.Struct, kw_only=True):
    key: str | None
    messages: int
    current: dict[str, int]
    reached: dict[str, int]
    rates: dict[str, float | None]


class MessagesReport(msgspec.Struct, kw_only=True):
    group_by: str
    since: str
    until: str
    counting: dict[str, str]
    rate_definitions: dict[str, str]
    groups: list[MessageGroup]
    totals: MessageGroup


class Bucket(msgspec.Struct, kw_only=True):
    label: str
    from_ms: float | None
    to_ms: float | None
    count: int


class ChannelLatency(msgspec.Struct, kw_only=True):
    channel: str
    count: int
    p50_ms: int
    p90_ms: int
    p99_ms: int
    max_ms: int
    histogram: list[Bucket]


class LatencyReport(msgspec.Struct, kw_only=True):
    since: str
    until: str
    measure: str
    channels: list[ChannelLatency]


def _window(request: Request) -> tuple[int, int]:
    now = services(request).clock.now_ms()
    # The upper bound pins the set of rows, so queries of one report agree
    # even while messages keep arriving.
    return am.parse_since(SINCE.get(request), now), now + 1


def _group(key: str | None, current: dict[str, int], reached: dict[str, int], unsubs: bool) -> MessageGroup:
    return MessageGroup(key=key, messages=sum(current.values()),
                        current={s: current.get(s, 0) for s in am.STATUSES},
                        reached={s: reached.get(s, 0) for s in am.REACHED},
                        rates=am.rates(current, reached, unsubs))


async def messages_report(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    group_by = GROUP_BY.get(request)
    column = am.group_column(group_by)
    since, until = _window(request)
    filters = {p.name: value for p in (TEMPLATE_ID, AUTOMATION_ID) if (value := p.get(request))}
    current_rows, reached_rows = await svc.store.message_status_counts(column, since, until, filters)
    unsubs = await svc.store.unsubscribes_recorded()
    current: dict[str | None, dict[str, int]] = {}
    reached: dict[str | None, dict[str, int]] = {}
    for into, rows in ((current, current_rows), (reached, reached_rows)):
        for key, status, n in rows:
            into.setdefault(key, {})[status] = n
    groups = [_group(key, current[key], reached.get(key, {}), unsubs) for key in current]
    groups.sort(key=lambda g: (-g.messages, g.key is None, g.key or ""))
    total_current: dict[str, int] = {}
    total_reached: dict[str, int] = {}
    for into, per_group in ((total_current, current), (total_reached, reached)):
        for counts in per_group.values():
            for status, n in counts.items():
                into[status] = into.get(status, 0) + n
    assert group_by is not None  # group_column refused a missing one
    return json(MessagesReport(group_by=group_by, since=iso(since) or "", until=iso(until) or "",
                               counting=am.COUNTING, rate_definitions=am.RATES, groups=groups,
                               totals=_group(None, total_current, total_reached, unsubs)))


async def time_to_trigger(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    since, until = _window(request)
    rows = await svc.store.latency_histogram(since, until, am.BUCKET_EDGES_MS)
    counts: dict[str, list[int]] = {}
    maxima: dict[str, int] = {}
    for channel, bucket, n, longest in rows:
        counts.setdefault(channel, [0] * (len(am.BUCKET_EDGES_MS) + 1))[bucket] = n
        maxima[channel] = max(maxima.get(channel, longest), longest)
    ranks = {c: [am.nearest_rank(p, sum(hist)) for p in am.PERCENTILES] for c, hist in counts.items()}
    at = await svc.store.latency_at_ranks(since, until, ranks)
    shape = am.buckets()
    channels = []
    for channel in sorted(counts):
        hist = counts[channel]
        p50, p90, p99 = (at.get((channel, r), maxima[channel]) for r in ranks[channel])
        channels.append(ChannelLatency(
            channel=channel, count=sum(hist), p50_ms=p50, p90_ms=p90, p99_ms=p99, max_ms=maxima[channel],
            histogram=[Bucket(count=n, **b) for b, n in zip(shape, hist)]))
    return json(LatencyReport(since=iso(since) or "", until=iso(until) or "", measure=am.MEASURE, channels=channels))


routes = [
    Route("/v1/analytics/messages", messages_report, methods=["GET"]),
    Route("/v1/analytics/time-to-trigger", time_to_trigger, methods=["GET"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/analytics/messages", "Message counts by status and delivery/open/click/unsubscribe"
                     " rates per channel, template or automation (group_by, since, template_id, automation_id)",
                     "secret", response=MessagesReport, query=(GROUP_BY, SINCE, TEMPLATE_ID, AUTOMATION_ID)),
    openapi.Endpoint("GET", "/v1/analytics/time-to-trigger", "Trigger-to-delivery latency per channel: p50/p90/p99"
                     " and a fixed log-spaced histogram (since)", "secret", response=LatencyReport,
                     query=(SINCE,)),
)
