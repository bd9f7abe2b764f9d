"""Messages: the send request, ids, idempotency, and how a message looks in the API."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import msgspec

from .clock import iso
from .errors import ApiError
from .ids import random_bytes
from .store.base import Message

CHANNELS = ("email", "push", "in_app")
STATUSES = ("queued", "sent", "delivered", "opened", "clicked", "failed", "bounced", "suppressed")
IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000


class SendRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: str
    channel: str | list[str]
    template_id: str
    variables: dict[str, Any] = {}
    # Overrides the template's category for this send (what users opt out of).
    category: str | None = None
    idempotency_key: str | None = None


class Queued(msgspec.Struct):
    message_id: str
    channel: str
    status: str


def new_message_id() -> str:
    """``msg_`` + 26 chars of Crockford-ish base32: 48 bits of time, then 80 random bits,
    so ids sort by creation and cannot be guessed."""
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + random_bytes(10)
    return "msg_" + base64.b32encode(raw).decode().rstrip("=").lower()


def channels_of(req: SendRequest) -> list[str]:
    chosen = [req.channel] if isinstance(req.channel, str) else list(req.channel)
    if not chosen:
        raise ApiError(400, "invalid_field", "channel: name at least one of email, push, in_app")
    for c in chosen:
        if c not in CHANNELS:
            raise ApiError(400, "invalid_field", f"channel: {c!r} is not a channel; use email, push or in_app")
    if len(set(chosen)) != len(chosen):
        raise ApiError(400, "invalid_field", "channel: each channel at most once")
    return chosen


def validate(req: SendRequest) -> None:
    if not req.user_id or len(req.user_id) > 255:
        raise ApiError(400, "invalid_field", "user_id: 1 to 255 characters")
    if not req.template_id:
        raise ApiError(400, "invalid_field", "template_id: required (PUT /v1/templates/{id} first)")
    if req.idempotency_key is not None and not 1 <= len(req.idempotency_key) <= 255:
        raise ApiError(400, "invalid_field", "idempotency_key: 1 to 255 characters")


def body_hash(req: SendRequest) -> str:
    """What "the same body" means for idempotency: every field but the key itself."""
    fields = msgspec.to_builtins(req)
    fields.pop("idempotency_key", None)
    return hashlib.sha256(msgspec.json.encode(fields, order="sorted")).hexdigest()


def _accepted(m: Message) -> str:
    # The 202 says the send was accepted ("queued", as the contract has it), even
    # when an in-app message was already delivered in the same transaction;
    # GET /v1/messages/{id} tells where it is now.
    return "queued" if m.status in ("queued", "delivered") else m.status


def send_response(messages: list[Message], channel_was_list: bool) -> dict[str, Any]:
    if channel_was_list:
        return {"messages": [{"message_id": m.message_id, "channel": m.channel, "status": _accepted(m),
                              **({"reason": m.reason} if m.reason else {})} for m in messages]}
    m = messages[0]
    return {"message_id": m.message_id, "status": _accepted(m), **({"reason": m.reason} if m.reason else {})}


def message_json(m: Message) -> dict[str, Any]:
    ttt = m.delivered_at - m.trigger_at if m.delivered_at is not None else None
    return {
        "message_id": m.message_id,
        "user_id": m.user_id,
        "channel": m.channel,
        "template_id": m.template_id,
        "category": m.category,
        "automation_id": m.automation_id,
        "status": m.status,
        "reason": m.reason,
        "history": [{"status": h.status, "at": iso(h.at), "detail": h.detail} for h in m.history],
        "rendered": m.rendered,
        "variables": m.variables,
        "created_at": iso(m.created_at),
        "delivered_at": iso(m.delivered_at),
        "time_to_trigger_ms": ttt,
    }
