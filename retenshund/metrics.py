"""Prometheus metrics, one registry per app (no module globals)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("retenshun_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("retenshun_http_request_seconds", "HTTP request latency",
                                         ["route"], registry=r,
                                         buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5))
        self.events = Counter("retenshun_events_ingested", "Events stored, by type", ["type"], registry=r)
        self.duplicates = Counter("retenshun_events_duplicate", "Events dropped as duplicate messageId",
                                  registry=r)
        self.rejected = Counter("retenshun_events_rejected", "Events rejected as invalid", registry=r)
        self.batch_size = Histogram("retenshun_ingest_batch_size", "Events per ingestion request", registry=r,
                                    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500))
        self.commit_seconds = Histogram("retenshun_store_commit_seconds", "Group commit duration", registry=r,
                                        buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))
        self.commit_ops = Histogram("retenshun_store_commit_ops", "Writes gathered into one commit", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.queue_depth = Gauge("retenshun_store_queue_depth", "Writes waiting for the writer", registry=r)
        self.bus_lag = Gauge("retenshun_bus_lag", "Events buffered for a bus subscriber", ["subscriber"],
                             registry=r)
        self.rate_limited = Counter("retenshun_rate_limited", "Requests refused by rate limits", ["kind"],
                                    registry=r)

        self.messages = Counter("retenshun_messages", "Messages by channel and final status",
                                ["channel", "status"], registry=r)
        self.time_to_trigger = Histogram(
            "retenshun_time_to_trigger_seconds", "Triggering event received -> message delivered",
            ["channel"], registry=r,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 300, 3600))

        # Children of labelled metrics, looked up once per label set: .labels()
        # costs more than the increment on the ingestion path.
        self._events_of: dict[str, Any] = {}
        self._requests_of: dict[tuple[str, str, int], Any] = {}
        self._seconds_of: dict[str, Any] = {}

    def events_of(self, type_: str) -> Any:
        child = self._events_of.get(type_)
        if child is None:
            child = self._events_of[type_] = self.events.labels(type_)
        return child

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        count = self._requests_of.get(key)
        if count is None:
            count = self._requests_of[key] = self.requests.labels(method, route, str(status))
        count.inc()
        latency = self._seconds_of.get(route)
        if latency is None:
            latency = self._seconds_of[route] = self.request_seconds.labels(route)
        latency.observe(seconds)

    def observe_commit(self, ops: int, seconds: float) -> None:
        self.commit_ops.observe(ops)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
