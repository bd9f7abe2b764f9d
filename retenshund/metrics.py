"""Prometheus metrics, one registry per app (no module globals)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # Counted on every request: plain numbers kept by the event loop (the
        # only thread that touches them), turned into samples at scrape time.
        self._hot = _LoopMetrics()
        r.register(self._hot)
        self.rejected = Counter("retenshun_events_rejected", "Events rejected as invalid", registry=r)
        self.queue_depth = Gauge("retenshun_store_queue_depth", "Writes waiting for the writer", registry=r)
        self.bus_lag = Gauge("retenshun_bus_lag", "Events buffered for a bus subscriber", ["subscriber"],
                             registry=r)
        self.rate_limited = Counter("retenshun_rate_limited", "Requests refused by rate limits", ["kind"],
                                    registry=r)

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered (event loop only)."""
        hot = self._hot
        key = (method, route, status)
        hot.requests[key] = hot.requests.get(key, 0) + 1
        latency = hot.latency.get(route)
        if latency is None:
            latency = hot.latency[route] = _Histogram(_LATENCY_BUCKETS)
        latency.observe(seconds)

    def ingested(self, events: int, stored: list[Any], duplicates: int) -> None:
        """One ingestion request committed (event loop only)."""
        hot = self._hot
        hot.batch_size.observe(events)
        by_type = hot.events
        for e in stored:
            by_type[e.type] = by_type.get(e.type, 0) + 1
        hot.duplicates += duplicates

    def observe_commit(self, ops: int, seconds: float) -> None:
        """One group commit (event loop only)."""
        self._hot.commit_ops.observe(ops)
        self._hot.commit_seconds.observe(seconds)

    def message_done(self, channel: str, status: str, time_to_trigger_s: float | None = None) -> None:
        """A message reached a final status (event loop only)."""
        hot = self._hot
        key = (channel, status)
        hot.messages[key] = hot.messages.get(key, 0) + 1
        if time_to_trigger_s is not None:
            h = hot.time_to_trigger.get(channel)
            if h is None:
                h = hot.time_to_trigger[channel] = _Histogram(_TTT_BUCKETS)
            h.observe(time_to_trigger_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5)
_BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500)
_COMMIT_SECONDS_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1)
_COMMIT_OPS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TTT_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 300, 3600)


class _Histogram:
    """Bucket counts without a lock (one thread only)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # first bucket with bound >= value
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            total += n
            out.append((floatToGoString(bound), total))
        return out


class _LoopMetrics:
    """The per-request, per-commit and per-message metrics, as a collector of the
    app's registry: plain numbers, since only the event loop changes them
    (prometheus_client's take a lock and a label look-up each time)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.events: dict[str, int] = {}
        self.duplicates = 0
        self.batch_size = _Histogram(_BATCH_BUCKETS)
        self.commit_seconds = _Histogram(_COMMIT_SECONDS_BUCKETS)
        self.commit_ops = _Histogram(_COMMIT_OPS_BUCKETS)
        self.messages: dict[tuple[str, str], int] = {}
        self.time_to_trigger: dict[str, _Histogram] = {}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("retenshun_http_requests", "HTTP requests by route and status",
                                       labels=["method", "route", "status"])
        for (method, route, status), n in list(self.requests.items()):
            requests.add_metric([method, route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("retenshun_http_request_seconds", "HTTP request latency", labels=["route"])
        for route, h in list(self.latency.items()):
            latency.add_metric([route], h.buckets(), h.sum)
        yield latency
        events = CounterMetricFamily("retenshun_events_ingested", "Events stored, by type", labels=["type"])
        for type_, n in list(self.events.items()):
            events.add_metric([type_], n)
        yield events
        yield CounterMetricFamily("retenshun_events_duplicate", "Events dropped as duplicate messageId",
                                  value=self.duplicates)
        batch = HistogramMetricFamily("retenshun_ingest_batch_size", "Events per ingestion request")
        batch.add_metric([], self.batch_size.buckets(), self.batch_size.sum)
        yield batch
        seconds = HistogramMetricFamily("retenshun_store_commit_seconds", "Group commit duration")
        seconds.add_metric([], self.commit_seconds.buckets(), self.commit_seconds.sum)
        yield seconds
        ops = HistogramMetricFamily("retenshun_store_commit_ops", "Writes gathered into one commit")
        ops.add_metric([], self.commit_ops.buckets(), self.commit_ops.sum)
        yield ops
        messages = CounterMetricFamily("retenshun_messages", "Messages by channel and final status",
                                       labels=["channel", "status"])
        for (channel, status), n in list(self.messages.items()):
            messages.add_metric([channel, status], n)
        yield messages
        ttt = HistogramMetricFamily("retenshun_time_to_trigger_seconds",
                                    "Triggering event received -> message delivered", labels=["channel"])
        for channel, h in list(self.time_to_trigger.items()):
            ttt.add_metric([channel], h.buckets(), h.sum)
        yield ttt
