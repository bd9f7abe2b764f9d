"""The Segments API through HTTP, with the real engine loop and a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from retenshund.app import create_app
from retenshund.clock import FakeClock, iso
from retenshund.config import ConfigError
from retenshund.durations import DAY_MS
from tests.conftest import PUBLISHABLE, Api, make_config, running

START = 20_600 * DAY_MS + 9 * 3_600_000
PRO = {"trait": "plan", "op": "eq", "value": "pro"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Api]:
    async with running(make_config(tmp_path / "data"), FakeClock(START)) as api:
        yield api


async def quiesce(api: Api) -> None:
    """Until the engine loop has handled every committed event, its own included."""
    svc = api.services
    for _ in range(20):
        before = await svc.store.last_event_id()
        await svc.extra["engine"].settle()
        if await svc.store.last_event_id() == before:
            return
    raise AssertionError("the engine did not settle")


async def at(api: Api, ms: int) -> None:
    assert api.clock is not None
    api.clock.set(ms)
    await api.services.extra["timers"].run_due()
    await quiesce(api)


async def ingest(api: Api, path: str, body: dict[str, Any]) -> None:
    r = await api.post(path, body, key=PUBLISHABLE)
    assert r.status_code == 200, r.text
    await quiesce(api)


async def segment_events(api: Api, user_id: str) -> list[tuple[str, dict[str, Any], str]]:
    events = (await api.get(f"/v1/users/{user_id}/events")).json()["events"]
    return [(e["event"], e["properties"], e["timestamp"]) for e in reversed(events)
            if e["event"] in ("segment_entered", "segment_exited")]


async def test_put_validates_the_condition_and_names_the_field(app: Api) -> None:
    r = await app.put("/v1/segments/pro", {"name": "Pro", "condition": {"all": [
        PRO, {"trait": "seats", "op": "bigger", "value": 3}]}})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_field"
    assert r.json()["error"]["message"].startswith("condition.all[1].op: ")
    bad = [({"name": "x", "condition": {"event": "login", "within": "7 days"}}, "condition.within: "),
           ({"name": "x", "condition": {"event": "segment_entered"}}, "condition.event: "),
           ({"condition": PRO}, "name: "),
           ({"name": "x"}, "condition: "),
           ({"name": "x", "condition": PRO, "owner": "me"}, "owner: ")]
    for body, field in bad:
        r = await app.put("/v1/segments/pro", body)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(field), (body, r.text)
    r = await app.put("/v1/segments/has space", {"name": "x", "condition": PRO})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("segment_id: ")
    assert (await app.put("/v1/segments/pro", {"name": "x", "condition": PRO}, key=PUBLISHABLE)).status_code == 403
    assert (await app.get("/v1/segments")).json() == {"segments": []}


async def test_definitions_round_trip(app: Api) -> None:
    r = await app.put("/v1/segments/pro", {"name": "Pro", "condition": PRO})
    assert r.status_code == 201
    body = r.json()
    assert body == {"segment_id": "pro", "name": "Pro", "condition": PRO, "version": 1, "member_count": 0,
                    "created_at": iso(START), "updated_at": iso(START)}
    # What GET returns can be sent back as it is.
    again = await app.put("/v1/segments/pro", (await app.get("/v1/segments/pro")).json())
    assert again.status_code == 200 and again.json()["version"] == 1
    assert [s["segment_id"] for s in (await app.get("/v1/segments")).json()["segments"]] == ["pro"]
    assert (await app.delete("/v1/segments/pro")).status_code == 204
    assert (await app.get("/v1/segments/pro")).status_code == 404
    assert (await app.delete("/v1/segments/pro")).status_code == 404
    assert (await app.get("/v1/segments/pro/members")).status_code == 404


async def test_membership_follows_identify_and_shows_on_the_profile(app: Api) -> None:
    await app.put("/v1/segments/pro", {"name": "Pro", "condition": PRO})
    await ingest(app, "/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}})
    user = (await app.get("/v1/users/u1")).json()
    assert user["segments"] == ["pro"]
    assert user["engagement"]["state"] == "new"
    assert (await app.get("/v1/segments/pro")).json()["member_count"] == 1
    await ingest(app, "/v1/identify", {"userId": "u1", "traits": {"plan": "free"}})
    assert (await app.get("/v1/users/u1")).json()["segments"] == []
    assert await segment_events(app, "u1") == [("segment_entered", {"segment_id": "pro"}, iso(START)),
                                               ("segment_exited", {"segment_id": "pro"}, iso(START))]


async def test_a_saved_segment_is_back_filled_without_events(app: Api) -> None:
    await ingest(app, "/v1/batch", {"batch": [{"type": "identify", "userId": f"u{i}", "traits": {"plan": "pro"}}
                                              for i in range(3)]})
    r = await app.put("/v1/segments/pro", {"name": "Pro", "condition": PRO})
    assert r.json()["member_count"] == 3
    await quiesce(app)
    assert await segment_events(app, "u1") == []


async def test_window_exit_at_the_precise_instant(app: Api) -> None:
    await app.put("/v1/segments/active", {"name": "Active", "condition": {
        "event": "login", "count": {"gte": 3}, "within": "7d"}})
    for day in range(3):
        await at(app, START + day * DAY_MS)
        await ingest(app, "/v1/track", {"userId": "u1", "event": "login"})
    assert (await app.get("/v1/users/u1")).json()["segments"] == ["active"]
    await at(app, START + 7 * DAY_MS - 1)
    assert (await app.get("/v1/users/u1")).json()["segments"] == ["active"]
    await at(app, START + 7 * DAY_MS)
    assert (await app.get("/v1/users/u1")).json()["segments"] == []
    assert await segment_events(app, "u1") == [
        ("segment_entered", {"segment_id": "active"}, iso(START + 2 * DAY_MS)),
        ("segment_exited", {"segment_id": "active"}, iso(START + 7 * DAY_MS))]


async def test_members_page_by_user_id(app: Api) -> None:
    await app.put("/v1/segments/pro", {"name": "Pro", "condition": PRO})
    await ingest(app, "/v1/batch", {"batch": [{"type": "identify", "userId": f"u{i}", "traits": {"plan": "pro"}}
                                              for i in range(5)]})
    seen: list[str] = []
    after = ""
    while True:
        page = (await app.get(f"/v1/segments/pro/members?limit=2&after={after}")).json()
        seen += [m["user_id"] for m in page["members"]]
        assert all(m["entered_at"] == iso(START) for m in page["members"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ["u0", "u1", "u2", "u3", "u4"]
    assert (await app.get("/v1/segments/pro/members?limit=0")).status_code == 400


async def test_member_counts_over_time(app: Api) -> None:
    await app.put("/v1/segments/pro", {"name": "Pro", "condition": PRO})
    await ingest(app, "/v1/batch", {"batch": [{"type": "identify", "userId": f"u{i}", "traits": {"plan": "pro"}}
                                              for i in range(3)]})
    await at(app, START + DAY_MS)
    await ingest(app, "/v1/identify", {"userId": "u0", "traits": {"plan": "free"}})
    await at(app, START + 2 * DAY_MS)
    points = (await app.get("/v1/segments/pro/counts?days=30")).json()["points"]
    assert points == [
        {"day": "2026-05-27", "members": 3, "entered": 3, "exited": 0},
        {"day": "2026-05-28", "members": 2, "entered": 0, "exited": 1},
        {"day": "2026-05-29", "members": 2, "entered": 0, "exited": 0},
    ]


async def test_deleting_a_user_removes_their_memberships(app: Api) -> None:
    await app.put("/v1/segments/pro", {"name": "Pro", "condition": PRO})
    await ingest(app, "/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}})
    assert (await app.delete("/v1/users/u1")).status_code == 204
    assert (await app.get("/v1/segments/pro")).json()["member_count"] == 0
    assert (await app.get("/v1/segments/pro/members")).json() == {"members": [], "next_after": None}


async def test_the_openapi_document_lists_the_segment_endpoints(app: Api) -> None:
    paths = (await app.get("/openapi.json")).json()["paths"]
    assert {"put", "get", "delete"} <= set(paths["/v1/segments/{segment_id}"])
    assert "get" in paths["/v1/segments/{segment_id}/members"] and "get" in paths["/v1/segments/{segment_id}/counts"]


def test_a_bad_baseline_setting_stops_the_start_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="engine.drop_ratio"):
        create_app(make_config(tmp_path / "data", engine={"drop_ratio": "half"}), announce=False)
