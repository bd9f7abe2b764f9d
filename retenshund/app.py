"""create_app(config): wires the parts at startup and closes them at shutdown.
Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import credentials as creds_mod
from .api import ingest as ingest_api
from .api import ops as ops_api
from .api import users as users_api
from .api.common import json
from .auth import Keyring
from .bus import EventBus
from .clock import Clock, SystemClock
from .config import Config
from .durations import parse_duration
from .errors import ApiError
from .metrics import Metrics
from .ratelimit import RateLimiter
from .services import Services
from .store import open_store
from .store.base import Store

log = logging.getLogger("retenshund.app")


async def ensure_keys(config: Config, store: Store, clock: Clock) -> tuple[creds_mod.Credentials, list[str]]:
    """Load the data dir's credentials; on a first start with no keys anywhere,
    make a secret and a publishable key. Returns (credentials, new plain keys)."""
    have_keys = bool(config.auth.secret_keys or config.auth.publishable_keys) or bool(await store.list_api_keys())
    creds, created = creds_mod.load_or_create(config.data_dir, make_keys=not have_keys)
    new: list[str] = []
    if not have_keys:
        keys = [creds.initial_secret_key, creds.initial_publishable_key] if created else []
        if not keys or not all(keys):
            keys = [creds_mod.new_key("secret"), creds_mod.new_key("publishable")]
        for key in keys:
            kind = creds_mod.key_kind(key) or "secret"
            await store.add_api_key(creds_mod.key_id(key), kind, creds_mod.key_hash(key),
                                    creds_mod.key_hint(key), "created at first start", clock.now_ms())
        new = keys
    return creds, new


def announce_keys(keys: list[str], data_dir: str) -> None:
    """Print first-start keys once, where a person starting the daemon sees them."""
    lines = [
        "",
        "  retenshun made your API keys (shown once; they are also in "
        f"{data_dir}/credentials.json, mode 0600):",
        "",
    ]
    for key in keys:
        label = "secret key      " if key.startswith("sk_") else "publishable key "
        lines.append(f"    {label} {key}")
    lines += ["", "  Secret keys can do everything: keep them on your servers.",
              "  Publishable keys may only send events: safe in browsers and apps.", ""]
    print("\n".join(lines), flush=True)


class RequestMetrics:
    """Counts and times every request by route template (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - started)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json({"error": {"code": exc.code, "message": exc.message}}, status=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: ("not_found", f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)"),
             405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}")}
    code, message = codes.get(exc.status_code, ("http_error", str(exc.detail)))
    return json({"error": {"code": code, "message": message}}, status=exc.status_code, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return json({"error": {"code": "internal_error", "message": "something went wrong on our side; it was logged"}},
                status=500)


async def _prune_loop(svc: Services) -> None:
    window = parse_duration(svc.config.store.dedupe_window)
    while True:
        try:
            await svc.store.prune_message_ids(svc.clock.now_ms() - window)
        except Exception:
            log.exception("pruning message ids failed")
        await asyncio.sleep(3600)


def create_app(config: Config, *, clock: Clock | None = None, announce: bool = True,
               extra_routes: list[Any] | None = None) -> Starlette:
    clock = clock or SystemClock()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        store = open_store(config, observe_commit=metrics.observe_commit)
        await store.open()
        tasks: list[asyncio.Task[None]] = []
        bus = EventBus(store.events_after)
        try:
            creds, new_keys = await ensure_keys(config, store, clock)
            if new_keys and announce:
                announce_keys(new_keys, str(config.data_dir))
            store.on_events = bus.publish  # type: ignore[attr-defined]
            svc = Services(
                config=config, clock=clock, store=store, bus=bus,
                keyring=Keyring(store, config.auth.secret_keys, config.auth.publishable_keys),
                credentials=creds, metrics=metrics,
                limiter=RateLimiter({"secret": config.limits.secret_rate,
                                     "publishable": config.limits.publishable_rate}),
                signing_secret=config.auth.signing_secret or creds.signing_secret,
            )
            app.state.services = svc
            tasks.append(asyncio.create_task(_prune_loop(svc), name="prune-message-ids"))
            log.info("retenshund ready", extra={"data_dir": str(config.data_dir)})
            yield {"services": svc}
        finally:
            bus.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
            log.info("store closed")

    routes = [*ingest_api.routes, *users_api.routes, *ops_api.routes, *(extra_routes or [])]
    middleware = [Middleware(RequestMetrics, metrics=metrics)]
    if config.server.allowed_origins:
        middleware.append(Middleware(
            CORSMiddleware,
            allow_origins=config.server.allowed_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "content-encoding", "idempotency-key"],
            max_age=600,
        ))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
    )
    app.state.metrics = metrics
    return app
