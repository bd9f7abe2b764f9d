"""Server-side send, message status and history."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import messages as msgs
from .. import openapi
from ..errors import ApiError, not_found
from ..store.base import IdempotencyConflict, NewMessage
from .common import IntQuery, Query, decode, json, secret, services

LIST_STATUS = Query("status", "Only messages with this status now", enum=msgs.STATUSES)
LIST_CHANNEL = Query("channel", "Only messages on this channel", enum=msgs.CHANNELS)
LIST_TEMPLATE = Query("template_id", "Only messages of this template")
LIST_AUTOMATION = Query("automation_id", "Only messages sent by this automation")
LIST_LIMIT = IntQuery("limit", "Messages at most, newest first", low=1, high=1000, default=100)


async def send(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    req = await decode(request, msgs.SendRequest)
    header_key = request.headers.get("idempotency-key")
    if header_key and req.idempotency_key and header_key != req.idempotency_key:
        raise ApiError(400, "invalid_field", "idempotency_key: differs from the Idempotency-Key header; send one")
    req.idempotency_key = header_key or req.idempotency_key
    msgs.validate(req)
    channels = msgs.channels_of(req)
    template = await svc.extra["templates"].get(req.template_id)
    if template is None:
        raise ApiError(404, "template_not_found",
                       f"template_id: no template {req.template_id!r}; create it with PUT /v1/templates/{{id}}")
    missing = [c for c in channels if c not in template.channels]
    if missing:
        raise ApiError(422, "no_channel_content",
                       f"channel: template {req.template_id!r} has no {', '.join(missing)} content"
                       f" (it has {', '.join(template.channels)})")
    now = svc.clock.now_ms()
    category = req.category or template.category
    new = [NewMessage(message_id=msgs.new_message_id(), user_id=req.user_id, channel=c, template_id=req.template_id,
                      category=category, variables=req.variables, trigger_at=now, due_at=now) for c in channels]
    if "in_app" in channels:
        # Delivered in the same transaction that creates it (see Dispatcher.inline).
        await svc.extra["dispatcher"].inline(new, await svc.store.profile_for_send(req.user_id))
    was_list = isinstance(req.channel, list)
    idem = (req.idempotency_key, msgs.body_hash(req)) if req.idempotency_key else None
    try:
        outcome = await svc.store.create_messages(
            new, now_ms=now, lease_ms=svc.extra["dispatcher"].lease_ms, idempotency=idem,
            response=lambda made: msgs.send_response(made, was_list))
    except IdempotencyConflict:
        raise ApiError(409, "idempotency_conflict",
                       "Idempotency-Key: this key was used in the last 24 h with a different body;"
                       " use a new key for a new message") from None
    if outcome.replay is not None:
        return json(outcome.replay, status=202, headers={"Idempotent-Replayed": "true"})
    svc.extra["dispatcher"].delivered_inline(outcome.messages)
    svc.extra["dispatcher"].submit([m for m in outcome.messages if m.inbox is None])
    return json(msgs.send_response(outcome.messages, was_list), status=202)


async def get_message(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    m = await svc.store.get_message(request.path_params["message_id"])
    if m is None:
        raise not_found(f"message {request.path_params['message_id']!r}")
    return json(msgs.message_json(m))


async def list_messages(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    status = LIST_STATUS.get(request)
    if status is not None and status not in msgs.STATUSES:
        raise ApiError(400, "invalid_field", f"status: one of {', '.join(msgs.STATUSES)}")
    channel = LIST_CHANNEL.get(request)
    if channel is not None and channel not in msgs.CHANNELS:
        raise ApiError(400, "invalid_field", "channel: one of email, push, in_app")
    found = await svc.store.list_messages(status=status, channel=channel, template_id=LIST_TEMPLATE.get(request),
                                          automation_id=LIST_AUTOMATION.get(request), limit=LIST_LIMIT.read(request))
    return json({"messages": [msgs.message_json(m) for m in found]})


async def clicked(request: Request) -> Response:
    """A push notification was clicked (reported by the service worker).

    No key: the worker has none. Message ids carry 80 random bits, so only
    someone who received the message can report it, and all it can do is
    move that message's status forward to clicked."""
    svc = services(request)
    message_id = request.path_params["message_id"]
    if not await svc.store.get_message(message_id):
        raise not_found("message")
    await svc.store.advance_status(message_id, "clicked", svc.clock.now_ms(), "push notification clicked")
    return Response(status_code=204)


async def user_messages(svc, user_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [msgs.message_json(m) for m in await svc.store.user_messages(user_id, 200)]


routes = [
    Route("/v1/messages/send", send, methods=["POST"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/{message_id}", get_message, methods=["GET"]),
    Route("/v1/messages/{message_id}/clicked", clicked, methods=["POST"]),
]

openapi.document(
    openapi.Endpoint("POST", "/v1/messages/send", "Send a template to a user on one or more channels "
                     "(Idempotency-Key header)", "secret", msgs.SendRequest, status=202),
    openapi.Endpoint("GET", "/v1/messages", "Message log (status, channel, template_id, automation_id, limit)",
                     "secret", query=(LIST_STATUS, LIST_CHANNEL, LIST_TEMPLATE, LIST_AUTOMATION, LIST_LIMIT)),
    openapi.Endpoint("GET", "/v1/messages/{message_id}", "A message with its status history", "secret"),
    openapi.Endpoint("POST", "/v1/messages/{message_id}/clicked", "Report a push click (service worker)", "none",
                     status=204),
)
