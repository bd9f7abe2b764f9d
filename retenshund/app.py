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
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import credentials as creds_mod
from .api import dashboard as dashboard_api
from .api import analytics as analytics_api
from .api import automations as automations_api
from .api import inbox as inbox_api
from .api import inbox_ws as inbox_ws_api
from .api import ingest as ingest_api
from .api import messages as messages_api
from .api import ops as ops_api
from .api import push as push_api
from .api import segments as segments_api
from .api import static as static_api
from .api import templates as templates_api
from .api import tracking as tracking_api
from .api import users as users_api
from .api import webhooks as webhooks_api
from .api.common import json
from .auth import Keyring
from .channels.hub import Hub
from .channels.inapp import InAppSender
from .bus import EventBus
from .clock import Clock, SystemClock
from .config import Config, ConfigError
from .dispatch import Dispatcher, Sender
from .engine.automations import AutomationEngine
from .engine.core import Engine
from .engine.engagement import settings_from_config
from .engine.segments import SegmentEngine
from .engine.timers import Timers
from .durations import DefinitionError, parse_duration
from .errors import INTERNAL, ApiError
from .inbox import Inbox
from .metrics import Metrics
from .ratelimit import RateLimiter
from .services import Services
from .store import open_store
from .store.base import Store
from .template_cache import TemplateCache
from .webhook_jobs import WebhookJobs
from .webhooks import parse_settings as parse_webhooks
from .webhooks import trait_names

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
            creds = creds_mod.remember_initial_keys(config.data_dir, creds, *keys)
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
            self.metrics.request_done(scope["method"], path, status, time.perf_counter() - started)


class App(Starlette):
    """Starlette, with ingestion served ahead of the middleware and router
    (``api.ingest.FastPath``): those requests are most of the traffic."""

    fast_path: ingest_api.FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None:
            handler = fast.handler(scope)
            if handler is not None:
                await fast.serve(handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json(exc.body(), status=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: ("not_found", f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)"),
             405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}")}
    code, message = codes.get(exc.status_code, ("http_error", str(exc.detail)))
    return json({"error": {"code": code, "message": message}}, status=exc.status_code, headers=exc.headers)


async def _gone(request: Request, exc: Exception) -> Response:
    # The client left while sending its body: nothing went wrong here, and
    # nobody is left to read the answer. (Its own handler, not _crash's: that
    # one runs outermost, where Starlette raises the error on after answering.)
    log.debug("client disconnected mid-request", extra={"path": request.url.path})
    return json({"error": {"code": "client_disconnected", "message": "the client closed the connection"}}, status=400)


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return json(INTERNAL.body(), status=500)


class _CORS(CORSMiddleware):
    """Starlette's CORS middleware, with a refused preflight in the contract's
    error shape instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        what = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
        return json({"error": {"code": "cors_not_allowed",
                               "message": f"this cross-origin request is not allowed ({what}); allowed origins are"
                                          " [server] allowed_origins"}}, status=400, headers=headers)


async def _prune_loop(svc: Services) -> None:
    window = parse_duration(svc.config.store.dedupe_window)
    while True:
        try:
            now = svc.clock.now_ms()
            await svc.store.prune_message_ids(now - window)
            await svc.store.prune_idempotency_keys(now - 24 * 3600 * 1000)
        except Exception:
            log.exception("pruning old keys failed")
        await asyncio.sleep(3600)


def engine_settings(config: Config, signing_secret: str) -> dict[str, Any]:
    """The [engine] section as AutomationEngine options (validated at start)."""
    e = config.engine
    fatigue = None
    cap = e.get("fatigue_cap")
    if cap:
        try:
            fatigue = (int(cap["max"]), parse_duration(cap["per"], "engine.fatigue_cap.per"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"engine.fatigue_cap: use {{max = 3, per = \"1d\"}} ({exc})") from None
        except DefinitionError as exc:
            raise ConfigError(f"{exc.field}: {exc.message}") from None
    return {"fatigue": fatigue, "webhook_secret": signing_secret.encode(),
            "allow_private_webhooks": _flag(e.get("allow_private_webhooks", False))}


def _flag(value: Any) -> bool:
    """A boolean setting from TOML (a bool) or an env var (a string)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def public_url(config: Config) -> str:
    return config.server.public_url.rstrip("/") or f"http://{config.server.host}:{config.server.port}"


async def _senders(config: Config, store: Store, clock: Clock, hub: Hub, creds: creds_mod.Credentials,
                   signing_secret: str, stack: contextlib.AsyncExitStack) -> dict[str, Sender]:
    """The channel senders the config makes possible."""
    senders: dict[str, Sender] = {"in_app": InAppSender(hub, clock)}
    from .channels.senders import EmailSender, PushSender
    from .channels.webpush import new_push_session

    push = config.push
    session = new_push_session()
    stack.callback(session.close)
    senders["push"] = PushSender(creds.vapid(), str(push.get("subject") or "mailto:ops@localhost"), store,
                                 session=session, ttl=int(push.get("ttl", 86400)),
                                 urgency=str(push.get("urgency", "normal")))
    if config.email.get("from_address") or config.email.get("from"):
        from .channels.email import EmailSettings, SmtpPool

        settings = EmailSettings.from_mapping({k: v for k, v in config.email.items()
                                               if k not in ("track_opens", "track_clicks", "give_up_after")})
        pool = SmtpPool(settings)
        stack.push_async_callback(pool.close)
        senders["email"] = EmailSender(
            settings, pool, store, signing_secret=signing_secret, public_url=public_url(config),
            track_opens=_flag(config.email.get("track_opens", True)),
            track_clicks=_flag(config.email.get("track_clicks", True)),
            give_up_after_s=parse_duration(str(config.email.get("give_up_after", "5d"))) / 1000)
    return senders


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def create_app(config: Config, *, clock: Clock | None = None, announce: bool = True,
               extra_routes: list[Any] | None = None) -> Starlette:
    clock = clock or SystemClock()
    metrics = Metrics()
    # Checked before anything starts: a bad [webhooks.<name>] raises ConfigError naming the key.
    webhook_sources = parse_webhooks(config.webhooks)
    # Likewise the engagement baseline settings of [engine].
    baseline = settings_from_config(config.engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Every part registers how it closes; they close in reverse order.
        async with contextlib.AsyncExitStack() as stack:
            store = open_store(config, observe_commit=metrics.observe_commit)
            await store.open()
            stack.push_async_callback(store.close)
            creds, new_keys = await ensure_keys(config, store, clock)
            if new_keys and announce:
                announce_keys(new_keys, str(config.data_dir))
            bus = EventBus(store.events_after)
            stack.callback(bus.close)
            store.on_events = bus.publish  # type: ignore[attr-defined]
            svc = Services(
                config=config, clock=clock, store=store, bus=bus,
                keyring=Keyring(store, config.auth.secret_keys, config.auth.publishable_keys),
                credentials=creds, metrics=metrics,
                limiter=RateLimiter({"secret": config.limits.secret_rate,
                                     "publishable": config.limits.publishable_rate,
                                     "publishable_client": config.limits.publishable_client_rate}),
                signing_secret=config.auth.signing_secret or creds.signing_secret,
            )
            hub = Hub()
            hub.register_metrics(metrics.registry)
            stack.callback(hub.close)
            templates = TemplateCache(store)  # type: ignore[arg-type]
            senders = await _senders(config, store, clock, hub, creds, svc.signing_secret, stack)
            dispatcher = Dispatcher(store, clock, templates, senders, metrics)
            svc.extra.update(hub=hub, templates=templates, dispatcher=dispatcher, inbox=Inbox(store, hub, clock),
                             user_messages=lambda user_id: messages_api.user_messages(svc, user_id))
            await dispatcher.start()
            stack.push_async_callback(dispatcher.close)
            timers = Timers(clock)
            svc.extra["timers"] = timers
            # The segment engine registers itself here (svc.extra["segments"]).
            segments = SegmentEngine(store, clock, timers, baseline)  # type: ignore[arg-type]
            await segments.open()
            stack.push_async_callback(segments.close)
            svc.extra["segments"] = segments
            svc.extra.setdefault("profile_extensions", []).append(segments.profile_extension)
            automations = AutomationEngine(store, clock, timers, dispatcher, svc.extra.get("segments"),
                                           **engine_settings(config, svc.signing_secret))
            await automations.start()
            engine = Engine(store, bus, svc.extra.get("segments"), automations, metrics)
            svc.extra.update(automations=automations, engine=engine)
            await engine.start()
            stack.push_async_callback(engine.close)
            await automations.recover()
            timers.start()
            stack.callback(timers.shutdown)
            webhook_jobs = WebhookJobs(store, bus, clock, trait_names(webhook_sources))
            svc.extra.update(webhook_sources=webhook_sources, webhook_jobs=webhook_jobs)
            await webhook_jobs.start()
            stack.push_async_callback(webhook_jobs.close)
            app.state.services = svc
            prune = asyncio.create_task(_prune_loop(svc), name="prune-old-keys")
            stack.push_async_callback(_cancel, prune)
            log.info("retenshund ready", extra={"data_dir": str(config.data_dir)})
            yield {"services": svc}
        log.info("store closed")

    routes = [*ingest_api.routes, *users_api.routes, *templates_api.routes, *messages_api.routes,
              *inbox_api.routes, *push_api.routes, *tracking_api.routes, *automations_api.routes, *ops_api.routes,
              *segments_api.routes, *inbox_ws_api.routes,
              *dashboard_api.routes, *webhooks_api.routes, *analytics_api.routes, *(extra_routes or []),
              # Last: the dashboard is mounted at / and would shadow anything after it.
              *static_api.routes()]
    middleware = [Middleware(RequestMetrics, metrics=metrics)]
    if config.server.allowed_origins:
        middleware.append(Middleware(
            _CORS,
            allow_origins=config.server.allowed_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "content-encoding", "idempotency-key"],
            # A browser SDK backs off on 429 only if it may read how long.
            expose_headers=["retry-after"],
            max_age=600,
        ))
    app = App(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _gone,
                            Exception: _crash},
    )
    app.state.metrics = metrics
    app.fast_path = ingest_api.FastPath(app, metrics, cors=bool(config.server.allowed_origins))
    return app
