"""The in-app inbox for the browser, authenticated by the user's signed token.
A token for user A never reads or changes anything of user B: every query is
scoped by the token's subject, never by an id from the request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..channels.inapp import inbox_json
from ..clock import iso, parse_iso
from ..errors import ApiError, not_found
from .common import USER_TOKEN, IntQuery, Query, json, services, user

LIMIT = IntQuery("limit", "Messages per page", low=1, high=200, default=50)
BEFORE = Query("before", "Paging: the next_before of the previous page (an ISO time, '|' and a message id)")
INCLUDE_ARCHIVED = Query("include_archived", "Also list archived messages (true, 1 or yes; anything else is false)",
                         type="boolean", default=False)


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    at, _, item_id = raw.partition("|")
    try:
        return parse_iso(at), item_id
    except ValueError:
        raise ApiError(400, "invalid_field", "before: pass the next_before value of the previous page") from None


async def list_inbox(request: Request) -> Response:
    caller = user(request)
    svc = services(request)
    limit = LIMIT.read(request)
    include_archived = (INCLUDE_ARCHIVED.get(request) or "false").lower() in ("1", "true", "yes")
    assert caller.user_id is not None
    items = await svc.store.inbox_list(caller.user_id, limit=limit, before=_cursor(BEFORE.get(request)),
                                       include_archived=include_archived)
    unread = await svc.store.inbox_unread(caller.user_id)
    next_before = f"{iso(items[-1].created_at)}|{items[-1].id}" if len(items) == limit else None
    return json({"messages": [inbox_json(i) for i in items], "unread_count": unread, "next_before": next_before})


async def _one(request: Request, action: str) -> Response:
    caller = user(request)
    svc = services(request)
    assert caller.user_id is not None
    change = getattr(svc.extra["inbox"], action)  # Inbox.read / Inbox.archive
    if not await change(caller.user_id, request.path_params["item_id"]):
        raise not_found("inbox message")
    return json({"unread_count": await svc.store.inbox_unread(caller.user_id)})


async def read_one(request: Request) -> Response:
    return await _one(request, "read")


async def archive_one(request: Request) -> Response:
    return await _one(request, "archive")


async def read_all(request: Request) -> Response:
    caller = user(request)
    svc = services(request)
    assert caller.user_id is not None
    await svc.extra["inbox"].read_all(caller.user_id)
    return json({"unread_count": await svc.store.inbox_unread(caller.user_id)})


routes = [
    Route("/v1/inbox", list_inbox, methods=["GET"]),
    Route("/v1/inbox/read-all", read_all, methods=["POST"]),
    Route("/v1/inbox/{item_id}/read", read_one, methods=["POST"]),
    Route("/v1/inbox/{item_id}/archive", archive_one, methods=["POST"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/inbox", "The user's inbox, newest first (limit, before, include_archived)", "user",
                     query=(LIMIT, BEFORE, INCLUDE_ARCHIVED, USER_TOKEN)),
    openapi.Endpoint("POST", "/v1/inbox/read-all", "Mark every message read", "user", query=(USER_TOKEN,)),
    openapi.Endpoint("POST", "/v1/inbox/{item_id}/read", "Mark one message read", "user", query=(USER_TOKEN,)),
    openapi.Endpoint("POST", "/v1/inbox/{item_id}/archive", "Archive one message", "user", query=(USER_TOKEN,)),
    # Read by inbox_ws.InboxSocket itself (a raw ASGI endpoint), the same way.
    openapi.Endpoint("GET", "/v1/inbox/ws", "WebSocket: hello, message and unread_count frames (?token=)", "user",
                     query=(USER_TOKEN,)),
)
