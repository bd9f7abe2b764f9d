"""Operations: health, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..metrics import CONTENT_TYPE
from .common import json, services


async def healthz(request: Request) -> Response:
    svc = services(request)
    try:
        ok = await svc.store.ping()
    except Exception:
        ok = False
    return json({"status": "ok"}) if ok else json({"status": "unavailable"}, status=503)


async def metrics(request: Request) -> Response:
    svc = services(request)
    svc.metrics.queue_depth.set(getattr(getattr(svc.store, "writer", None), "pending", 0))
    for name, lag in svc.bus.lags().items():
        svc.metrics.bus_lag.labels(name).set(lag)
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)


async def openapi_json(request: Request) -> Response:
    return json(openapi.build())


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]

openapi.document(
    openapi.Endpoint("GET", "/healthz", "200 when the store answers", "none"),
    openapi.Endpoint("GET", "/metrics", "Prometheus metrics", "none"),
    openapi.Endpoint("GET", "/openapi.json", "This document", "none"),
)
