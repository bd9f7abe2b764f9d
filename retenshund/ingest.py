"""Segment-format payloads -> validated, normalised events ready to store.

Pure functions, no HTTP: the decoders are built once at import, and every
error names the field (``batch[3].event``) and what to send instead."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import msgspec

from .clock import LAST_MS, parse_iso
from .errors import ApiError
from .jsonbody import DECODE_ERRORS, check_depth, json_error, size_text
from .ids import random_hex
from .store.base import EventIn

TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_ID = 255
# Event times we keep: from the epoch to the last millisecond a datetime holds.
# Everything downstream (day numbers, ISO output, templates) works in this range.
EARLIEST_MS = 0
LATEST_MS = LAST_MS
MAX_GZIP_MEMBERS = 16

Id = str | int  # some SDKs send numeric user ids; they are stored as strings


class SegmentEvent(msgspec.Struct, kw_only=True):
    """One call of the Segment HTTP Tracking API."""

    type: str | None = None
    userId: Id | None = None
    anonymousId: Id | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = None
    originalTimestamp: str | None = None
    sentAt: str | None = None
    messageId: Id | None = None
    groupId: Id | None = None
    previousId: Id | None = None
    writeKey: str | None = None


class BatchRequest(msgspec.Struct, kw_only=True):
    batch: list[msgspec.Raw]
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = None


class Rejected(msgspec.Struct):
    index: int
    code: str
    message: str


class IngestResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    success: bool
    accepted: int | None = None
    duplicates: int | None = None
    rejected: list[Rejected] | None = None


_event_decoder = msgspec.json.Decoder(SegmentEvent)
_batch_decoder = msgspec.json.Decoder(BatchRequest)


def read_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The request body, gunzipped if needed, refusing anything over ``limit``."""
    encoding = (encoding or "").strip().lower()  # content codings are case-insensitive
    if not encoding or encoding == "identity":
        if len(raw) > limit:
            raise too_large(limit)
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise ApiError(400, "unsupported_encoding",
                       f"Content-Encoding {encoding!r} is not supported; send gzip or an uncompressed body")
    # Decompress with a ceiling: a small gzip bomb must not become a huge buffer.
    # A gzip body may be several members one after another (RFC 1952), up to
    # MAX_GZIP_MEMBERS (each one's leftover bytes are copied, so thousands of
    # tiny members would cost quadratic time); anything else after the last
    # member is an error, not something to ignore.
    parts: list[bytes] = []
    size = 0
    rest = raw
    for _ in range(MAX_GZIP_MEMBERS):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise ApiError(400, "invalid_gzip", "the body is not valid gzip (Content-Encoding: gzip was sent)") from None
        parts.append(part)
        size += len(part)
        if size > limit or d.unconsumed_tail:
            raise too_large(limit)
        if not d.eof:
            raise ApiError(400, "invalid_gzip", "the gzip body is truncated")
        rest = d.unused_data
        if not rest:
            return b"".join(parts)
    raise ApiError(400, "invalid_gzip", f"the gzip body has more than {MAX_GZIP_MEMBERS} members; send one")


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {size_text(limit)}; send fewer or smaller events")


def decode_event(body: bytes, type_: str) -> SegmentEvent:
    try:
        payload = _event_decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise json_error(exc) from None
    check_depth(body, payload)
    if payload.type is None:
        payload.type = type_
    return payload


def decode_batch(body: bytes) -> BatchRequest:
    """The batch, its items still raw. Its own context and integrations are held
    to the depth limit by ``check_batch_depth``, once the key is known (walking
    them is the costly part); each item is checked as it is decoded."""
    try:
        return _batch_decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise json_error(exc) from None


def check_batch_depth(body: bytes, req: BatchRequest) -> None:
    for name, value in (("context", req.context), ("integrations", req.integrations)):
        if value:
            check_depth(body, value, name, level=2)  # the body is level 1


def _id(value: Id | None, field: str) -> str | None:
    if value is None:
        return None
    text = str(value) if not isinstance(value, bool) else None
    if text is None:
        raise ApiError(400, "invalid_field", f"{field}: expected a string id")
    if not text or len(text) > MAX_ID:
        raise ApiError(400, "invalid_field", f"{field}: must be 1 to {MAX_ID} characters")
    return text


def _time(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise ApiError(400, "invalid_field",
                       f"{field}: {value!r} is not an ISO 8601 time (like 2026-11-26T08:00:00.000Z)") from None


def normalise(
    p: SegmentEvent,
    *,
    now_ms: int,
    prefix: str = "",
    batch_sent_at: int | None = None,
    batch_context: dict[str, Any] | None = None,
) -> EventIn:
    """Validate one event and turn it into what the store keeps."""
    f = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    type_ = p.type
    if type_ not in TYPES:
        raise ApiError(400, "invalid_field", f"{f('type')}: must be one of {', '.join(TYPES)}")
    # An empty id is no id (some SDKs send userId "" for a signed-out visitor).
    user_id = _id(p.userId if p.userId != "" else None, f("userId"))
    anonymous_id = _id(p.anonymousId if p.anonymousId != "" else None, f("anonymousId"))
    if user_id is None and anonymous_id is None:
        raise ApiError(400, "invalid_field", f"{f('userId')}: send userId or anonymousId (or both)")
    event = None
    data: dict[str, Any] = {}
    if type_ == "track":
        if not p.event or not isinstance(p.event, str):
            raise ApiError(400, "invalid_field", f"{f('event')}: required for track (the event's name)")
        if len(p.event) > MAX_ID:
            raise ApiError(400, "invalid_field", f"{f('event')}: at most {MAX_ID} characters")
        event = p.event
    elif type_ == "group":
        group_id = _id(p.groupId, f("groupId"))
        if group_id is None:
            raise ApiError(400, "invalid_field", f"{f('groupId')}: required for group")
        data["groupId"] = group_id
    elif type_ == "alias":
        previous = _id(p.previousId, f("previousId"))
        if previous is None or user_id is None:
            raise ApiError(400, "invalid_field",
                           f"{f('previousId') if previous is None else f('userId')}: alias needs userId and previousId")
        data["previousId"] = previous
    if p.properties is not None:
        data["properties"] = p.properties
    if p.traits is not None:
        data["traits"] = p.traits
    context = p.context
    if batch_context:
        context = {**batch_context, **(context or {})}
    if context:
        data["context"] = context
    if p.integrations is not None:
        data["integrations"] = p.integrations
    if p.name is not None:
        data["name"] = p.name
    if p.category is not None:
        data["category"] = p.category

    # Clock skew: the client's clock may be off; trust the difference between
    # its timestamp and its sentAt, anchored at our receipt time.
    timestamp = _time(p.timestamp or p.originalTimestamp, f("timestamp"))
    sent_at = _time(p.sentAt, f("sentAt"))
    if sent_at is None:  # not `or`: 1970-01-01T00:00:00Z is a time too
        sent_at = batch_sent_at
    if timestamp is None:
        timestamp = now_ms
    elif sent_at is not None:
        timestamp = now_ms - (sent_at - timestamp)
        if not EARLIEST_MS <= timestamp <= LATEST_MS:
            raise ApiError(400, "invalid_field",
                           f"{f('timestamp')} / {f('sentAt')}: corrected for the client's clock (received time"
                           " - (sentAt - timestamp)) the event's time falls outside 1970-9999; check both")
    if not EARLIEST_MS <= timestamp <= LATEST_MS:
        raise ApiError(400, "invalid_field", f"{f('timestamp')}: must fall between 1970 and 9999")

    message_id = _id(p.messageId, f("messageId")) or f"srv-{random_hex()}"
    return EventIn(message_id=message_id, type=type_, event=event, user_id=user_id,
                   anonymous_id=anonymous_id, data=data, timestamp=timestamp, received_at=now_ms)


def normalise_batch(
    req: BatchRequest, *, now_ms: int, max_event_bytes: int
) -> tuple[list[EventIn], list[Rejected]]:
    """The valid events of a batch, and why each of the others was rejected."""
    sent_at = _time(req.sentAt, "sentAt")
    good: list[EventIn] = []
    bad: list[Rejected] = []
    for index, raw in enumerate(req.batch):
        prefix = f"batch[{index}]"
        try:
            if len(raw) > max_event_bytes:
                raise ApiError(413, "event_too_large",
                               f"{prefix}: larger than {size_text(max_event_bytes)}; send smaller properties")
            try:
                payload = _event_decoder.decode(raw)
            except DECODE_ERRORS as exc:
                raise json_error(exc, prefix) from None
            check_depth(bytes(raw), payload, prefix)
            if payload.type is None:
                raise ApiError(400, "invalid_field", f"{prefix}.type: required in a batch ({', '.join(TYPES)})")
            good.append(normalise(payload, now_ms=now_ms, prefix=prefix,
                                  batch_sent_at=sent_at, batch_context=req.context))
        except ApiError as err:
            bad.append(Rejected(index, err.code, err.message))
    return good, bad


def gzip_body(data: bytes) -> bytes:
    """For tests and clients: what a Segment SDK sends with gzip on."""
    return gzip.compress(data)
