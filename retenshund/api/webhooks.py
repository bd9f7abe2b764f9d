"""Inbound webhooks: POST /v1/webhooks/{source} (signed by the provider, no API
key) and GET /v1/webhooks/unmatched (secret key).

Order matters: the raw body is verified before it is parsed, and nothing is
stored unless the signature is good and fresh."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi, webhooks
from ..clock import iso
from ..errors import ApiError
from .common import IntQuery, Query, json, read_body, secret, services

log = logging.getLogger("retenshund.webhooks")

UNMATCHED_SOURCE = Query("source", "Only webhooks of this source (the <name> of [webhooks.<name>])")
INCLUDE_REPLAYED = Query("include_replayed", "Also list the ones already replayed to a user"
                                             " (true/1 or false/0; anything else is a 400)",
                         type="boolean", default=False)
UNMATCHED_BEFORE = IntQuery("before", "Paging: only items with a smaller id (the id of the last item of the"
                                      " previous page)", low=1, high=2**62)
UNMATCHED_LIMIT = IntQuery("limit", "Items at most, newest first", low=1, high=1000, default=100)


class WebhookResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    received: bool
    event: str | None = None
    duplicate: bool | None = None
    unmatched: str | None = None
    ignored: str | None = None


class UnmatchedItem(msgspec.Struct, kw_only=True):
    id: int
    source: str
    event_id: str
    type: str
    event: str
    user_trait: str | None
    value: str | int | None
    reason: str
    properties: dict[str, Any]
    received_at: str
    replayed_at: str | None
    replayed_user_id: str | None


class UnmatchedList(msgspec.Struct, kw_only=True):
    unmatched: list[UnmatchedItem]


def sources(request: Request) -> dict[str, webhooks.Source]:
    return services(request).extra["webhook_sources"]  # type: ignore[no-any-return]


async def receive(request: Request) -> Response:
    svc = services(request)
    name = request.path_params["source"]
    source = sources(request).get(name)
    if source is None:
        raise ApiError(404, "unknown_webhook_source",
                       f"source: no webhook source {name!r}; configure it as [webhooks.{name}] with kind and secret")
    body = await read_body(request, webhooks.MAX_BODY)
    now = svc.clock.now_ms()
    try:
        header_id = webhooks.verify(source, request.headers, body, now)
    except webhooks.SignatureError as exc:
        # Worth a line: a wrong secret in the config looks exactly like this.
        log.info("webhook refused", extra={"source": name, "code": exc.code})
        raise ApiError(401, exc.code, exc.message) from None
    payload = webhooks.decode_payload(body)
    event_id = webhooks.event_id(source, payload, header_id)
    outcome = await svc.store.receive_webhook(webhooks.map_payload(source, event_id, payload), now)
    if outcome.duplicate:
        return json(WebhookResponse(received=True, duplicate=True))
    if outcome.outcome == "stored":
        return json(WebhookResponse(received=True, event=outcome.detail))
    if outcome.outcome == "unmatched":
        # 200 all the same: the provider retrying would not make the user appear.
        return json(WebhookResponse(received=True, unmatched=outcome.detail))
    return json(WebhookResponse(received=True, ignored=outcome.detail))


async def unmatched(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    raw_include = INCLUDE_REPLAYED.get(request)
    include = "false" if raw_include is None else raw_include.lower()
    if include not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_field", "include_replayed: true or false")
    before = UNMATCHED_BEFORE.read_optional(request)
    found = await svc.store.list_unmatched_webhooks(
        source=UNMATCHED_SOURCE.get(request) or None, include_replayed=include in ("true", "1"), before=before,
        limit=UNMATCHED_LIMIT.read(request))
    return json(UnmatchedList(unmatched=[
        UnmatchedItem(id=u.id, source=u.source, event_id=u.event_id, type=u.type, event=u.event,
                      user_trait=u.user_trait, value=u.lookup_value, reason=u.reason, properties=u.properties,
                      received_at=iso(u.received_at) or "", replayed_at=iso(u.replayed_at),
                      replayed_user_id=u.replayed_user_id)
        for u in found]))


routes = [
    Route("/v1/webhooks/unmatched", unmatched, methods=["GET"]),
    Route("/v1/webhooks/{source}", receive, methods=["POST"]),
]

openapi.document(
    openapi.Endpoint("POST", "/v1/webhooks/{source}", "Inbound webhook from a configured source (Stripe-Signature"
                     " or Standard Webhooks headers; no API key)", "none", response=WebhookResponse),
    openapi.Endpoint("GET", "/v1/webhooks/unmatched", "Webhooks whose user was not found (source, include_replayed,"
                     " before, limit)", "secret", response=UnmatchedList,
                     query=(UNMATCHED_SOURCE, INCLUDE_REPLAYED, UNMATCHED_BEFORE, UNMATCHED_LIMIT)),
)
