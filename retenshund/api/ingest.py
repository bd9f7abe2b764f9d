"""Segment-compatible ingestion: /v1/track, identify, page, screen, group, alias, batch.

A 200 is sent only after the events are committed (the store's group commit).

These are the busiest routes by far, so each is one framework-free function of
(services, headers, receive, client address) -> response body. ``FastPath`` serves them ahead
of Starlette's middleware and router (see ``app.App``); the routed copies below
serve the same functions to browsers when CORS is on, through the CORS
middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import ingest, openapi
from ..auth import Caller, check_key, key_from_header
from ..errors import INTERNAL, ApiError
from ..services import Services
from ..store.base import EventIn
from .common import limit, services

log = logging.getLogger("retenshund.api")
_encode = msgspec.json.Encoder().encode
OK = b'{"success":true}'

# (services, lower-case request headers, ASGI receive, client address) -> JSON response body
Ingest = Callable[[Services, Mapping[str, str], Receive, "str | None"], Awaitable[bytes]]


async def _read(receive: Receive, headers: Mapping[str, str], limit_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it passes the limit, gunzipped if
    it says so (the limit applies to the inflated body too)."""
    length = headers.get("content-length")
    if length is not None:
        try:
            too_big = int(length) > limit_bytes
        except ValueError:
            raise ApiError(400, "invalid_header", "Content-Length must be a number") from None
        if too_big:
            raise ingest.too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit_bytes:
                raise ingest.too_large(limit_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return ingest.read_body(raw, headers.get("content-encoding"), limit_bytes)


async def _caller(svc: Services, key: str | None, client: str | None) -> Caller:
    caller = await check_key(svc.keyring, key, scope="ingest")
    limit(svc, caller, client)
    return caller


async def _store(svc: Services, events: list[EventIn]) -> int:
    result = await svc.store.ingest(events)
    m = svc.metrics
    m.ingested(len(events), result.stored, result.duplicates)
    return result.duplicates


def _single(type_: str) -> Ingest:
    async def one(svc: Services, headers: Mapping[str, str], receive: Receive, client: str | None) -> bytes:
        # A key in the header is checked before the body is read; Segment's
        # browser SDK puts it in the body (writeKey) instead.
        header_key = key_from_header(headers.get("authorization"))
        if header_key:
            await _caller(svc, header_key, client)
        body = await _read(receive, headers, svc.config.limits.max_event_bytes)
        payload = ingest.decode_event(body, type_)
        payload.type = type_  # the route decides the type, as Segment does
        if not header_key:
            await _caller(svc, payload.writeKey, client)
        await _store(svc, [ingest.normalise(payload, now_ms=svc.clock.now_ms())])
        return OK

    one.__name__ = type_
    return one


async def batch(svc: Services, headers: Mapping[str, str], receive: Receive, client: str | None) -> bytes:
    limits = svc.config.limits
    header_key = key_from_header(headers.get("authorization"))
    if header_key:
        await _caller(svc, header_key, client)
    body = await _read(receive, headers, limits.max_batch_bytes)
    req = ingest.decode_batch(body)
    if not header_key:
        await _caller(svc, req.writeKey, client)
    ingest.check_batch_depth(body, req)  # after the key: an anonymous body must not buy a long walk
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
    duplicates = await _store(svc, good)
    if not bad and not duplicates:
        return OK
    # Segment clients only read "success"; the rest tells a developer what went wrong.
    return _encode(ingest.IngestResponse(success=True, accepted=len(good) - duplicates, duplicates=duplicates,
                                         rejected=bad or None))


PATHS: dict[str, Ingest] = {
    **{f"/v1/{t}": _single(t) for t in ingest.TYPES},
    "/v1/batch": batch,
    # Segment's own SDKs also use this path.
    "/v1/import": batch,
}


def _endpoint(fn: Ingest) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        body = await fn(services(request), request.headers, request.receive,
                        request.client.host if request.client else None)
        return Response(body, media_type="application/json")

    return endpoint


routes = [Route(path, _endpoint(fn), methods=["POST"]) for path, fn in PATHS.items()]

_WANTED = {b"authorization": "authorization", b"content-length": "content-length",
           b"content-encoding": "content-encoding"}
_JSON = [(b"content-type", b"application/json")]


class FastPath:
    """Serves ``POST`` to the ingestion paths without Starlette's layers: the
    same functions, the same error bodies and request metrics as the routed
    app. Browser calls (an ``Origin`` header while CORS is on) are left to the
    routed app, whose CORS middleware answers them."""

    def __init__(self, app: Any, metrics: Any, *, cors: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.cors = cors

    def handler(self, scope: Scope) -> Ingest | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        fn = PATHS.get(scope["path"])
        if fn is None or (self.cors and any(name == b"origin" for name, _ in scope["headers"])):
            return None
        return fn

    async def serve(self, fn: Ingest, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:  # names are lower-case (ASGI)
            name = _WANTED.get(raw_name)
            if name is not None and name not in headers:
                headers[name] = raw_value.decode("latin-1")
        status = 200
        extra: list[tuple[bytes, bytes]] = []
        try:
            client = scope.get("client")
            body = await fn(self.app.state.services, headers, receive, client[0] if client else None)
        except ApiError as exc:
            status, body = exc.status, _encode(exc.body())
            extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
        except ClientDisconnect:
            return  # nobody to answer; nothing was stored
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            status, body = 500, _encode(INTERNAL.body())
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), *_JSON, *extra]})
        await send({"type": "http.response.body", "body": body})
        self.metrics.request_done("POST", scope["path"], status, time.perf_counter() - started)


openapi.document(
    *(openapi.Endpoint("POST", f"/v1/{t}", f"Segment {t} call", "ingest", ingest.SegmentEvent, ingest.IngestResponse)
      for t in ingest.TYPES),
    openapi.Endpoint("POST", "/v1/batch", "Several Segment calls at once; invalid items are listed, valid ones kept",
                     "ingest", ingest.BatchRequest, ingest.IngestResponse),
    openapi.Endpoint("POST", "/v1/import", "Same as /v1/batch (the path some Segment SDKs use)",
                     "ingest", ingest.BatchRequest, ingest.IngestResponse),
)
