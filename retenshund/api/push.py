"""Web push: the VAPID public key for the browser, and subscriptions."""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..auth import key_from_headers
from ..errors import ApiError
from ..store.base import PushSubscription
from .common import decode, ingest_key, json, secret, services, user


class SubscriptionKeys(msgspec.Struct):
    p256dh: str
    auth: str


class Subscription(msgspec.Struct):
    endpoint: str
    keys: SubscriptionKeys
    expirationTime: int | float | None = None


class SubscribeRequest(msgspec.Struct, kw_only=True):
    subscription: Subscription
    user_id: str | None = None


class UnsubscribeRequest(msgspec.Struct, kw_only=True):
    endpoint: str
    user_id: str | None = None


async def vapid_public_key(request: Request) -> Response:
    await ingest_key(request)  # publishable or secret
    return json({"public_key": services(request).credentials.vapid().public_key})


async def _who(request: Request, user_id: str | None) -> str:
    """The user: from a user token, or named by a caller with a secret key."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip().count(".") == 2:
        caller = user(request)
        if user_id and user_id != caller.user_id:
            raise ApiError(403, "forbidden", "user_id: a user token may only subscribe its own user")
        assert caller.user_id is not None
        return caller.user_id
    if key_from_headers(request):
        await secret(request)
        if not user_id:
            raise ApiError(400, "invalid_field", "user_id: required when subscribing with a secret key")
        return user_id
    raise ApiError(401, "missing_user_token", "send the user token as Authorization: Bearer <token>")


async def subscribe(request: Request) -> Response:
    svc = services(request)
    req = await decode(request, SubscribeRequest, limit=8192)
    user_id = await _who(request, req.user_id)
    sub = req.subscription
    parts = urlsplit(sub.endpoint)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ApiError(400, "invalid_field", "subscription.endpoint: must be the push service's https URL")
    if not sub.keys.p256dh or not sub.keys.auth:
        raise ApiError(400, "invalid_field", "subscription.keys: p256dh and auth are required")
    await svc.store.add_push_subscription(
        user_id, PushSubscription(endpoint=sub.endpoint, p256dh=sub.keys.p256dh, auth=sub.keys.auth,
                                  created_at=svc.clock.now_ms()),
        request.headers.get("user-agent"), svc.clock.now_ms())
    return json({"user_id": user_id, "endpoint": sub.endpoint}, status=201)


async def unsubscribe(request: Request) -> Response:
    svc = services(request)
    req = await decode(request, UnsubscribeRequest, limit=8192)
    user_id = await _who(request, req.user_id)
    owned = {s.endpoint for s in await svc.store.push_subscriptions(user_id)}
    if req.endpoint in owned:
        await svc.store.delete_push_subscription(req.endpoint)
    return Response(status_code=204)


routes = [
    Route("/v1/push/vapid-public-key", vapid_public_key, methods=["GET"]),
    Route("/v1/push/subscriptions", subscribe, methods=["POST"]),
    Route("/v1/push/subscriptions", unsubscribe, methods=["DELETE"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/push/vapid-public-key", "The VAPID public key (applicationServerKey)", "ingest"),
    openapi.Endpoint("POST", "/v1/push/subscriptions", "Save a browser's push subscription", "user",
                     SubscribeRequest, status=201),
    openapi.Endpoint("DELETE", "/v1/push/subscriptions", "Remove a push subscription", "user", UnsubscribeRequest,
                     status=204),
)
