"""The Segments API: definitions, members, member counts over time.

Saving a segment back-fills it over every known user before answering, without
``segment_entered`` events (see engine/segments.py for why); later changes each
write one."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import openapi
from ..clock import iso
from ..durations import DAY_MS, DefinitionError
from ..engine.segments import SegmentEngine, SegmentRow
from ..errors import bad_request, not_found
from ..services import Services
from .common import IntQuery, Query, decode, json, secret, services

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
# What GET returns beyond the definition; a PUT may send it back unchanged.
_SERVER_FIELDS = ("segment_id", "version", "member_count", "created_at", "updated_at")
_MAX_NAME = 200
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()

MEMBERS_LIMIT = IntQuery("limit", "Members per page", low=1, high=1000, default=100)
MEMBERS_AFTER = Query("after", "Paging: the next_after of the previous page")
COUNT_DAYS = IntQuery("days", "How many days back, today included (never before the segment was created)",
                      low=1, high=366, default=30)


class SegmentIn(msgspec.Struct, kw_only=True):
    name: str
    condition: dict[str, Any]


class SegmentOut(msgspec.Struct, kw_only=True):
    segment_id: str
    name: str
    condition: dict[str, Any]
    version: int
    member_count: int
    created_at: str
    updated_at: str


class SegmentList(msgspec.Struct):
    segments: list[SegmentOut]


class Member(msgspec.Struct):
    user_id: str
    entered_at: str


class MembersPage(msgspec.Struct):
    members: list[Member]
    next_after: str | None


class CountPoint(msgspec.Struct):
    day: str
    members: int | None
    entered: int
    exited: int


class Counts(msgspec.Struct):
    segment_id: str
    points: list[CountPoint]


def _engine(svc: Services) -> SegmentEngine:
    return svc.extra["segments"]  # type: ignore[no-any-return]


def check_id(segment_id: str) -> None:
    if not 1 <= len(segment_id) <= 128 or not set(segment_id) <= _ID_CHARS:
        raise bad_request("segment_id", "1-128 letters, digits, '_', '-' or '.'")


async def _out(svc: Services, row: SegmentRow) -> dict[str, Any]:
    return {"segment_id": row.segment_id, "name": row.name, "condition": row.condition, "version": row.version,
            "member_count": await svc.store.segment_member_count(row.segment_id),  # type: ignore[attr-defined]
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


async def _row(svc: Services, segment_id: str) -> SegmentRow:
    row = await svc.store.segment_row(segment_id)  # type: ignore[attr-defined]
    if row is None:
        raise not_found(f"segment {segment_id!r}")
    return row  # type: ignore[no-any-return]


async def put_segment(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    segment_id = request.path_params["segment_id"]
    check_id(segment_id)
    body = await decode(request, dict[str, Any])
    for key in _SERVER_FIELDS:
        body.pop(key, None)
    for key in body:
        if key not in ("name", "condition"):
            raise bad_request(key, "unknown field; a segment has name and condition")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME:
        raise bad_request("name", f"required: a string of 1-{_MAX_NAME} characters")
    if "condition" not in body:
        raise bad_request("condition", 'required, e.g. {"trait": "plan", "op": "eq", "value": "pro"}')
    try:
        created = await _engine(svc).put(segment_id, name, body["condition"])
    except DefinitionError as exc:
        raise bad_request(exc.field, exc.message) from None
    return json(await _out(svc, await _row(svc, segment_id)), status=201 if created else 200)


async def get_segment(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    return json(await _out(svc, await _row(svc, request.path_params["segment_id"])))


async def list_segments(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    rows = await svc.store.segment_rows()  # type: ignore[attr-defined]
    return json({"segments": [await _out(svc, row) for row in rows]})


async def delete_segment(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    segment_id = request.path_params["segment_id"]
    if not await _engine(svc).delete(segment_id):
        raise not_found(f"segment {segment_id!r}")
    return Response(status_code=204)


async def members(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    segment_id = request.path_params["segment_id"]
    await _row(svc, segment_id)
    limit = MEMBERS_LIMIT.read(request)
    after = MEMBERS_AFTER.get(request) or ""
    page = await svc.store.segment_members_page(segment_id, after, limit)  # type: ignore[attr-defined]
    return json({"members": [{"user_id": u, "entered_at": iso(at)} for u, at in page],
                 "next_after": page[-1][0] if len(page) == limit else None})


def daily_points(first_day: int, today: int, members_before: int | None,
                 rows: list[tuple[int, int | None, int, int]], live: int) -> list[dict[str, Any]]:
    """One point per day: members at the end of the day (a day without a
    snapshot, e.g. the daemon was down, carries the last one forward; today is
    live), and the entered/exited events written that day."""
    by_day = {day: (m, e, x) for day, m, e, x in rows}
    points = []
    current = members_before
    for day in range(first_day, today + 1):
        snap, entered, exited = by_day.get(day, (None, 0, 0))
        if snap is not None:
            current = snap
        points.append({"day": _dt.date.fromordinal(_EPOCH_ORDINAL + day).isoformat(),
                       "members": live if day == today else current, "entered": entered, "exited": exited})
    return points


async def counts(request: Request) -> Response:
    await secret(request)
    svc = services(request)
    segment_id = request.path_params["segment_id"]
    row = await _row(svc, segment_id)
    days = COUNT_DAYS.read(request)
    today = svc.clock.now_ms() // DAY_MS
    first = max(today - days + 1, row.created_at // DAY_MS)
    before, rows = await svc.store.segment_count_rows(segment_id, first)  # type: ignore[attr-defined]
    live = await svc.store.segment_member_count(segment_id)  # type: ignore[attr-defined]
    return json({"segment_id": segment_id, "points": daily_points(first, today, before, rows, live)})


routes = [
    Route("/v1/segments", list_segments, methods=["GET"]),
    Route("/v1/segments/{segment_id}", put_segment, methods=["PUT"]),
    Route("/v1/segments/{segment_id}", get_segment, methods=["GET"]),
    Route("/v1/segments/{segment_id}", delete_segment, methods=["DELETE"]),
    Route("/v1/segments/{segment_id}/members", members, methods=["GET"]),
    Route("/v1/segments/{segment_id}/counts", counts, methods=["GET"]),
]

openapi.document(
    openapi.Endpoint("GET", "/v1/segments", "Every segment with its member count", "secret", None, SegmentList),
    openapi.Endpoint("PUT", "/v1/segments/{segment_id}",
                     "Create or replace a segment; answers after back-filling membership (no events for that)",
                     "secret", SegmentIn, SegmentOut),
    openapi.Endpoint("GET", "/v1/segments/{segment_id}", "A segment with its member count", "secret", None,
                     SegmentOut),
    openapi.Endpoint("DELETE", "/v1/segments/{segment_id}", "Delete a segment and its memberships", "secret",
                     status=204),
    openapi.Endpoint("GET", "/v1/segments/{segment_id}/members", "Current members by user id (limit, after)",
                     "secret", None, MembersPage, query=(MEMBERS_LIMIT, MEMBERS_AFTER)),
    openapi.Endpoint("GET", "/v1/segments/{segment_id}/counts",
                     "Members at the end of each day and entered/exited per day (days, default 30)",
                     "secret", None, Counts, query=(COUNT_DAYS,)),
)
