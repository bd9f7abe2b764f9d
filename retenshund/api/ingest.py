"""Segment-compatible ingestion: /v1/track, identify, page, screen, group, alias, batch.

A 200 is sent only after the events are committed (the store's group commit).

These are the busiest routes by far, so the app serves them through
``FastPath`` before Starlette's middleware and router (see ``app.App``): the
same handlers, errors and metrics, without the per-request layers between."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import ingest, openapi
from ..auth import key_from_headers
from ..errors import ApiError
from ..store.base import EventIn
from .common import ingest_key, json, read_body, services

_OK = json({"success": True})


log = logging.getLogger("retenshund.api")


async def _store(request: Request, events: list[EventIn]) -> int:
    svc = services(request)
    result = await svc.store.ingest(events)
    m = svc.metrics
    m.batch_size.observe(len(events))
    if len(result.stored) == 1:
        m.events_of(result.stored[0].type).inc()
    else:
        by_type: dict[str, int] = {}
        for e in result.stored:
            by_type[e.type] = by_type.get(e.type, 0) + 1
        for type_, n in by_type.items():
            m.events_of(type_).inc(n)
    if result.duplicates:
        m.duplicates.inc(result.duplicates)
    return result.duplicates


async def _body(request: Request, limit: int) -> bytes:
    # The limit applies to the decompressed body; a compressed one is read up
    # to the same size (gzip never legitimately grows JSON).
    raw = await read_body(request, limit)
    return ingest.read_body(raw, request.headers.get("content-encoding"), limit)


def _single(type_: str):  # type: ignore[no-untyped-def]
    async def handler(request: Request) -> Response:
        svc = services(request)
        header_key = key_from_headers(request)
        if header_key:
            await ingest_key(request)
        body = await _body(request, svc.config.limits.max_event_bytes)
        payload = ingest.decode_event(body, type_)
        payload.type = type_  # the route decides the type, as Segment does
        if not header_key:
            await ingest_key(request, payload.writeKey)
        event = ingest.normalise(payload, now_ms=svc.clock.now_ms())
        await _store(request, [event])
        return _OK

    handler.__name__ = type_
    return handler


async def batch(request: Request) -> Response:
    svc = services(request)
    limits = svc.config.limits
    header_key = key_from_headers(request)
    if header_key:
        await ingest_key(request)
    body = await _body(request, limits.max_batch_bytes)
    req = ingest.decode_batch(body)
    if not header_key:
        await ingest_key(request, req.writeKey)
    if not req.batch:
        raise ApiError(400, "invalid_field", "batch: send at least one event")
    good, bad = ingest.normalise_batch(req, now_ms=svc.clock.now_ms(), max_event_bytes=limits.max_event_bytes)
    if bad:
        svc.metrics.rejected.inc(len(bad))
    if not good:
        first = bad[0]
        raise ApiError(400, "invalid_batch",
                       f"no event in the batch is valid; first problem: {first.message}"
                       + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    duplicates = await _store(request, good)
    if not bad and not duplicates:
        return _OK
    # Segment clients only read "success"; the rest tells a developer what went wrong.
    return json(ingest.IngestResponse(success=True, accepted=len(good) - duplicates, duplicates=duplicates,
                                      rejected=bad or None))


routes = [
    *(Route(f"/v1/{t}", _single(t), methods=["POST"]) for t in ingest.TYPES),
    Route("/v1/batch", batch, methods=["POST"]),
    # Segment's own SDKs also use these shorter paths.
    Route("/v1/import", batch, methods=["POST"]),
]

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class FastPath:
    """Serves ``POST`` to the ingestion routes without Starlette's layers.

    Answers exactly as the routed app would: the same handlers, the same error
    bodies (through the app's own exception handlers) and the same request
    metrics. Browser calls (an ``Origin`` header while CORS is on) take the
    routed path, where the CORS middleware answers them."""

    def __init__(self, app: Any, metrics: Any, *, cors: bool,
                 on_api_error: ErrorHandler, on_crash: ErrorHandler) -> None:
        self.app = app
        self.metrics = metrics
        self.cors = cors
        self.on_api_error = on_api_error
        self.on_crash = on_crash
        self.handlers: dict[str, Handler] = {r.path: r.endpoint for r in routes}  # type: ignore[misc]

    def handler(self, scope: Scope) -> Handler | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        handler = self.handlers.get(scope["path"])
        if handler is None or (self.cors and any(name == b"origin" for name, _ in scope["headers"])):
            return None
        return handler

    async def serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope["app"] = self.app
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = await self.on_api_error(request, exc)
        except ClientDisconnect:
            return  # nobody to answer; nothing was stored
        except Exception as exc:
            response = await self.on_crash(request, exc)
        await response(scope, receive, send)
        path = scope["path"]
        self.metrics.request_done("POST", path, response.status_code, time.perf_counter() - started)

openapi.document(
    *(openapi.Endpoint("POST", f"/v1/{t}", f"Segment {t} call", "ingest", ingest.SegmentEvent, ingest.IngestResponse)
      for t in ingest.TYPES),
    openapi.Endpoint("POST", "/v1/batch", "Several Segment calls at once; invalid items are listed, valid ones kept",
                     "ingest", ingest.BatchRequest, ingest.IngestResponse),
    openapi.Endpoint("POST", "/v1/import", "Same as /v1/batch (the path some Segment SDKs use)",
                     "ingest", ingest.BatchRequest, ingest.IngestResponse),
)
