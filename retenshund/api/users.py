"""The Users API: profiles, their events, deletion (GDPR), tokens, preferences."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi, tokens
from ..clock import iso
from ..durations import DefinitionError, parse_duration
from ..errors import ApiError, not_found
from ..messages import CHANNELS
from ..store.base import StoredEvent
from .common import IntQuery, Query, RawRoute, decode, json, secret, services

MAX_QUERY = 255
SEARCH_QUERY = Query("query", "The start of the user ids to list; empty lists every user", default="",
                     max_length=MAX_QUERY)
SEARCH_LIMIT = IntQuery("limit", "Users per page", low=1, high=500, default=50)
SEARCH_AFTER = Query("after", "Paging: the next_after of the previous page")
EVENTS_LIMIT = IntQuery("limit", "Events per page", low=1, high=1000, default=100)
EVENTS_BEFORE = Query("before", "Paging: the next_before of the previous page (events older than it)")


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    expires_in: str | None = None


class TokenResponse(msgspec.Struct):
    token: str
    expires_at: str


class EventOut(msgspec.Struct):
    id: str
    message_id: str
    type: str
    event: str | None
    properties: dict[str, Any]
    traits: dict[str, Any]
    context: dict[str, Any]
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    timestamp: str
    received_at: str


class EventsPage(msgspec.Struct):
    events: list[EventOut]
    next_before: str | None


class GroupOut(msgspec.Struct):
    group_id: str
    traits: dict[str, Any]
    joined_at: str


class UserOut(msgspec.Struct):
    user_id: str
    traits: dict[str, Any]
    groups: list[GroupOut]
    segments: list[str]
    engagement: dict[str, Any] | None
    preferences: dict[str, Any]
    created_at: str
    last_seen_at: str


class PreferencesRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    channels: dict[str, bool | None] | None = None
    categories: dict[str, bool | None] | None = None


def event_json(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "id": str(e.id),
        "message_id": e.message_id,
        "type": e.type,
        "event": e.event if e.type == "track" else d.get("name"),
        "properties": d.get("properties") or {},
        "traits": d.get("traits") or {},
        "context": d.get("context") or {},
        "user_id": e.user_id,
        "anonymous_id": e.anonymous_id,
        "group_id": d.get("groupId"),
        "timestamp": iso(e.timestamp),
        "received_at": iso(e.received_at),
    }


async def get_user(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    user_id = request.path_params["user_id"]
    profile = await svc.store.get_profile(user_id)
    if profile is None:
        raise not_found(f"user {user_id!r}")
    body: dict[str, Any] = {
        "user_id": profile.user_id,
        "traits": profile.traits,
        "groups": [{"group_id": g.group_id, "traits": g.traits, "joined_at": iso(g.joined_at)}
                   for g in profile.groups],
        "segments": [],
        "engagement": None,
        "preferences": _preferences(profile.preferences),
        "created_at": iso(profile.created_at),
        "last_seen_at": iso(profile.last_seen_at),
    }
    for extend in svc.extra.get("profile_extensions", []):
        body.update(await extend(profile))
    return json(body)


async def user_events(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    limit = EVENTS_LIMIT.read(request)
    raw_before = EVENTS_BEFORE.get(request)
    before = None
    if raw_before:
        try:
            before = int(raw_before)
        except ValueError:
            before = 0
        if not 0 < before < 2**63:  # an event id: SQLite's integers are 64-bit
            raise ApiError(400, "invalid_field", "before: pass the next_before value of the previous page")
    events = await svc.store.user_events(request.path_params["user_id"], limit=limit, before=before)
    next_before = str(events[-1].id) if len(events) == limit else None
    return json({"events": [event_json(e) for e in events], "next_before": next_before})


async def user_messages(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    lister = svc.extra.get("user_messages")
    messages = await lister(request.path_params["user_id"]) if lister else []
    return json({"messages": messages})


async def delete_user(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    if not await svc.store.delete_user(request.path_params["user_id"]):
        raise not_found(f"user {request.path_params['user_id']!r}")
    for hook in svc.extra.get("on_user_deleted", []):
        await hook(request.path_params["user_id"])
    # Open inbox sockets of a deleted user are closed: nothing of theirs is left to show.
    hub = svc.extra.get("hub")
    if hub is not None:
        hub.close_user(request.path_params["user_id"])
    return Response(status_code=204)


async def user_token(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    req = await decode(request, TokenRequest, empty_ok=True)
    ttl_text = req.expires_in or svc.config.auth.user_token_ttl
    try:
        ttl_ms = parse_duration(ttl_text, "expires_in")
    except DefinitionError as exc:
        raise ApiError(400, "invalid_field", f"{exc.field}: {exc.message}") from None
    if ttl_ms < 1000 or ttl_ms > 366 * 86_400_000:
        raise ApiError(400, "invalid_field", "expires_in: between 1s and 366d")
    issued = svc.clock.now_ms() // 1000  # whole seconds, as in the token's iat and exp
    token = tokens.mint(svc.signing_secret, request.path_params["user_id"], ttl_ms // 1000, now=issued)
    return json({"token": token, "expires_at": iso((issued + ttl_ms // 1000) * 1000)})


async def preferences(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    user_id = request.path_params["user_id"]
    if request.method == "GET":
        profile = await svc.store.get_profile(user_id)
        return json({"user_id": user_id, **_preferences(profile.preferences if profile else {})})
    req = await decode(request, PreferencesRequest)
    # null for an unknown name is allowed: it removes what an older version let in.
    unknown = sorted(name for name, value in (req.channels or {}).items() if name not in CHANNELS and value is not None)
    if unknown:
        raise ApiError(400, "invalid_field", f"channels.{unknown[0]}: not a channel; use {', '.join(CHANNELS)}")
    patch = {k: v for k, v in msgspec.to_builtins(req).items() if v is not None}
    if not patch:
        raise ApiError(400, "invalid_field", "body: send channels and/or categories, e.g. {\"channels\": {\"email\": false}}")
    prefs = await svc.store.set_preferences(user_id, patch, svc.clock.now_ms())
    return json({"user_id": user_id, **_preferences(prefs)})


def _preferences(stored: dict[str, Any]) -> dict[str, Any]:
    """One shape everywhere: both maps, empty for a user who set nothing."""
    return {"channels": {}, "categories": {}, **stored}


async def search_users(request: Request) -> Response:
    """Users whose id starts with ``query`` (all users when empty), in id order;
    page with ``after`` = the previous page's ``next_after``."""
    await secret(request)
    svc = services(request)
    query = SEARCH_QUERY.get(request) or ""
    if len(query) > MAX_QUERY:
        raise ApiError(400, "invalid_field", f"query: at most {MAX_QUERY} characters (the start of a user id)")
    limit = SEARCH_LIMIT.read(request)
    found = await svc.store.search_users(query, limit, SEARCH_AFTER.get(request) or None)  # type: ignore[attr-defined]
    return json({"users": [{"user_id": p.user_id, "traits": p.traits, "created_at": iso(p.created_at),
                            "last_seen_at": iso(p.last_seen_at)} for p in found],
                 "next_after": found[-1].user_id if len(found) == limit else None})


routes = [
    Route("/v1/users", search_users, methods=["GET"]),
    RawRoute("/v1/users/{user_id}", get_user, methods=["GET"]),
    RawRoute("/v1/users/{user_id}", delete_user, methods=["DELETE"]),
    RawRoute("/v1/users/{user_id}/events", user_events, methods=["GET"]),
    RawRoute("/v1/users/{user_id}/messages", user_messages, methods=["GET"]),
    RawRoute("/v1/users/{user_id}/token", user_token, methods=["POST"]),
    RawRoute("/v1/users/{user_id}/preferences", preferences, methods=["GET", "PUT"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/users", "Users whose id starts with query, in id order (query, limit, after)",
                     "secret", query=(SEARCH_QUERY, SEARCH_LIMIT, SEARCH_AFTER)),
    openapi.Endpoint("GET", "/v1/users/{user_id}", "A user's profile", "secret", None, UserOut),
    openapi.Endpoint("DELETE", "/v1/users/{user_id}", "Delete everything of a user (GDPR)", "secret", status=204),
    openapi.Endpoint("GET", "/v1/users/{user_id}/events", "A user's events, newest first (limit, before)",
                     "secret", None, EventsPage, query=(EVENTS_LIMIT, EVENTS_BEFORE)),
    openapi.Endpoint("GET", "/v1/users/{user_id}/messages", "Messages sent to a user, newest first", "secret"),
    openapi.Endpoint("POST", "/v1/users/{user_id}/token", "A signed user token for the browser", "secret",
                     TokenRequest, TokenResponse, body_required=False),
    openapi.Endpoint("PUT", "/v1/users/{user_id}/preferences", "Channel and category opt-outs", "secret",
                     PreferencesRequest),
    openapi.Endpoint("GET", "/v1/users/{user_id}/preferences", "A user's channel and category opt-outs", "secret"),
)
