"""The acceptance stories of product.md, end to end through the HTTP API with a
controllable clock (days of waiting run in milliseconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retenshund.clock import FakeClock, parse_iso
from tests.conftest import Api, make_config, running
from tests.scenarios.helpers import DAY, HOUR, advance, identify, journal_of, messages_of, put, quiesce, track

T0 = parse_iso("2026-11-26T12:00:00Z")


@pytest.fixture
async def sapi(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        yield api


def by_channel(msgs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["channel"]: m for m in msgs}


async def test_plan_limit_prompt_appears_in_app_with_the_real_numbers(sapi: Api) -> None:
    await put(sapi, "/v1/templates/upgrade", {"in_app": {
        "title": "You used {{ event.used }} of {{ event.limit }} seats", "body": "Upgrade to {{ event.next_plan }}"}})
    await put(sapi, "/v1/automations/plan-limit", {
        "trigger": {"event": "plan_limit_reached"}, "steps": [{"send": {"channel": "in_app", "template_id": "upgrade"}}]})
    await identify(sapi, "u1", email="u1@x.io")
    await track(sapi, "u1", "plan_limit_reached", used=10, limit=10, next_plan="Team")
    [m] = await messages_of(sapi, "u1")
    assert m["status"] == "delivered"
    assert m["rendered"]["title"] == "You used 10 of 10 seats" and m["rendered"]["body"] == "Upgrade to Team"
    assert m["automation_id"] == "plan-limit"
    assert [j["kind"] for j in await journal_of(sapi, "u1")][::-1] == ["entered", "sent", "completed"]


async def test_cart_recovery_waits_emails_then_pushes_and_stops_on_order(sapi: Api) -> None:
    await put(sapi, "/v1/templates/cart1", {"email": {"subject": "Your cart ({{ event.total }})", "text": "Come back"},
                                            "in_app": {"title": "Cart"}})
    await put(sapi, "/v1/templates/cart2", {"push": {"title": "Still thinking?"}, "in_app": {"title": "Cart 2"}})
    await put(sapi, "/v1/automations/cart", {
        "name": "Cart recovery",
        "trigger": {"event": "cart_abandoned", "where": {"properties.total": {"gt": 50}}},
        "steps": [{"wait": "1h"}, {"send": {"channel": "in_app", "template_id": "cart1"}},
                  {"wait_for": "order_completed", "timeout": "24h", "if_not": [
                      {"send": {"channel": "in_app", "template_id": "cart2"}}]}],
        "exit_on": ["order_completed"]})
    for user in ("buyer", "quitter", "small"):
        await identify(sapi, user)
    await track(sapi, "buyer", "cart_abandoned", total=80)
    await track(sapi, "quitter", "cart_abandoned", total=120)
    await track(sapi, "small", "cart_abandoned", total=20)  # where: total > 50 -> no run
    assert await messages_of(sapi, "buyer") == []
    await advance(sapi, HOUR - 1000)
    assert await messages_of(sapi, "buyer") == []  # not before the hour
    await advance(sapi, 1000)
    assert [m["template_id"] for m in await messages_of(sapi, "buyer")] == ["cart1"]
    assert [m["template_id"] for m in await messages_of(sapi, "quitter")] == ["cart1"]
    await track(sapi, "buyer", "order_completed")
    await advance(sapi, DAY)
    assert [m["template_id"] for m in await messages_of(sapi, "buyer")] == ["cart1"]
    assert [m["template_id"] for m in await messages_of(sapi, "quitter")] == ["cart2", "cart1"]
    assert await messages_of(sapi, "small") == []
    runs = {r["user_id"]: r["status"] for r in (await sapi.get("/v1/automations/cart/runs")).json()["runs"]}
    assert runs == {"buyer": "exited", "quitter": "completed"}
    assert "exited" in [j["kind"] for j in await journal_of(sapi, "buyer", "cart")]


async def test_wait_for_takes_the_happened_branch(sapi: Api) -> None:
    await put(sapi, "/v1/templates/t", {"in_app": {"title": "{{ kind }}"}})
    await put(sapi, "/v1/automations/onboard", {
        "trigger": {"event": "signed_up"},
        "steps": [{"wait_for": "project_created", "timeout": "2d",
                   "if_happened": [{"send": {"channel": "in_app", "template_id": "t", "variables": {"kind": "yay"}}}],
                   "if_not": [{"send": {"channel": "in_app", "template_id": "t", "variables": {"kind": "nudge"}}}]}]})
    await identify(sapi, "a")
    await identify(sapi, "b")
    await track(sapi, "a", "signed_up")
    await track(sapi, "b", "signed_up")
    await advance(sapi, HOUR)
    await track(sapi, "a", "project_created")
    await advance(sapi, 2 * DAY)
    assert [m["rendered"]["title"] for m in await messages_of(sapi, "a")] == ["yay"]
    assert [m["rendered"]["title"] for m in await messages_of(sapi, "b")] == ["nudge"]


async def test_team_member_left_reaches_the_remaining_members(sapi: Api) -> None:
    await put(sapi, "/v1/templates/left", {"in_app": {"title": "{{ event.name }} left your team"}})
    await put(sapi, "/v1/automations/member-left", {
        "trigger": {"event": "member_left", "group_path": "properties.team_id"},
        "steps": [{"send": {"channel": "in_app", "template_id": "left"}}]})
    for user, team in (("ann", "t1"), ("bob", "t1"), ("cat", "t1"), ("dan", "t2")):
        r = await sapi.post("/v1/group", {"userId": user, "groupId": team}, key="pk_test_publishable_0001")
        assert r.status_code == 200
    await track(sapi, "ann", "member_left", team_id="t1", name="Ann")
    assert [m["rendered"]["title"] for m in await messages_of(sapi, "bob")] == ["Ann left your team"]
    assert len(await messages_of(sapi, "cat")) == 1
    assert await messages_of(sapi, "ann") == [] and await messages_of(sapi, "dan") == []


async def test_subscription_renewed_thank_you_has_a_usage_summary_from_own_events(sapi: Api) -> None:
    await put(sapi, "/v1/templates/thanks", {"in_app": {
        "title": "Thanks for renewing!",
        "body": "You generated {{ reports }} reports and spent {{ spent }} (last order {{ last_order }})."}})
    await put(sapi, "/v1/automations/renewed", {
        "trigger": {"event": "subscription_renewed"},
        "steps": [{"send": {"channel": "in_app", "template_id": "thanks", "computed": {
            "reports": {"count": "report_generated", "within": "30d"},
            "spent": {"sum": "order_completed", "property": "total", "within": "30d"},
            "last_order": {"last": "order_completed", "property": "total"}}}}]})
    await identify(sapi, "u1")
    await track(sapi, "u1", "report_generated")
    await advance(sapi, 40 * DAY)  # this one is too old to count
    for _ in range(3):
        await track(sapi, "u1", "report_generated")
    await track(sapi, "u1", "order_completed", total=20)
    await track(sapi, "u1", "order_completed", total=22.5)
    await track(sapi, "u1", "subscription_renewed")
    [m] = await messages_of(sapi, "u1")
    assert m["rendered"]["body"] == "You generated 3 reports and spent 42.5 (last order 22.5)."


async def test_frequency_cap_skips_reentry_and_the_journal_says_why(sapi: Api) -> None:
    await put(sapi, "/v1/templates/t", {"in_app": {"title": "hi"}})
    await put(sapi, "/v1/automations/capped", {
        "trigger": {"event": "ping"}, "frequency_cap": {"max": 1, "per": "7d"},
        "steps": [{"send": {"channel": "in_app", "template_id": "t"}}]})
    await identify(sapi, "u1")
    await track(sapi, "u1", "ping")
    await track(sapi, "u1", "ping")
    assert len(await messages_of(sapi, "u1")) == 1
    kinds = [j["kind"] for j in await journal_of(sapi, "u1", "capped")]
    assert "skipped_frequency_cap" in kinds
    await advance(sapi, 7 * DAY + 1)
    await track(sapi, "u1", "ping")
    assert len(await messages_of(sapi, "u1")) == 2


async def test_quiet_hours_defer_in_the_users_timezone(sapi: Api) -> None:
    # 12:00 UTC is 21:00 in Tokyo: inside 21:00-08:00 there.
    await put(sapi, "/v1/templates/t", {"in_app": {"title": "hi"}})
    await put(sapi, "/v1/automations/quiet", {
        "trigger": {"event": "ping"}, "quiet_hours": {"start": "21:00", "end": "08:00"},
        "steps": [{"send": {"channel": "in_app", "template_id": "t"}}]})
    await identify(sapi, "tokyo", timezone="Asia/Tokyo")
    await identify(sapi, "london", timezone="Europe/London")
    await track(sapi, "tokyo", "ping")
    await track(sapi, "london", "ping")
    assert (await messages_of(sapi, "london"))[0]["status"] == "delivered"
    [m] = await messages_of(sapi, "tokyo")
    assert m["status"] == "queued"  # deferred, not dropped
    deferred = [j for j in await journal_of(sapi, "tokyo") if j["kind"] == "deferred_quiet_hours"]
    assert deferred and "2026-11-26T23:00:00.000Z" in deferred[0]["detail"]
    await advance(sapi, 11 * HOUR - 1000)
    assert (await messages_of(sapi, "tokyo"))[0]["status"] == "queued"
    await advance(sapi, 1000)
    assert (await messages_of(sapi, "tokyo"))[0]["status"] == "delivered"


async def test_in_app_first_then_email_only_if_still_unread(tmp_path: Path) -> None:
    from tests.support.smtp_server import SmtpTestServer

    async with SmtpTestServer() as smtp:
        config = make_config(tmp_path / "d", email={"host": smtp.host, "port": smtp.port, "starttls": False,
                                                    "from": "a@acme.example"})
        async with running(config, FakeClock(T0)) as api:
            await put(api, "/v1/templates/n", {"in_app": {"title": "New comment"}})
            await put(api, "/v1/templates/n_mail", {"email": {"subject": "New comment", "text": "see it"}})
            await put(api, "/v1/automations/comment", {
                "trigger": {"event": "commented"},
                "steps": [{"send": {"channel": "in_app", "template_id": "n",
                                    "fallback": {"after": "30m", "channel": "email", "template_id": "n_mail"}}}]})
            await identify(api, "reader", email="reader@x.io")
            await identify(api, "away", email="away@x.io")
            await track(api, "reader", "commented")
            await track(api, "away", "commented")
            reader_inapp = next(m for m in await messages_of(api, "reader") if m["channel"] == "in_app")
            token = (await api.post("/v1/users/reader/token")).json()["token"]
            assert (await api.post(f"/v1/inbox/{reader_inapp['message_id']}/read", key=token)).status_code == 200
            await advance(api, 30 * 60_000)
            await smtp.wait_for(1)
            assert [m.rcpt_tos for m in smtp.messages] == [["away@x.io"]]
            reader = by_channel(await messages_of(api, "reader"))
            assert reader["email"]["status"] == "suppressed" and "read" in reader["email"]["reason"]


async def test_editing_an_automation_does_not_change_runs_in_flight(sapi: Api) -> None:
    await put(sapi, "/v1/templates/a", {"in_app": {"title": "A"}})
    await put(sapi, "/v1/templates/b", {"in_app": {"title": "B"}})
    await put(sapi, "/v1/automations/v", {"trigger": {"event": "go"},
                                          "steps": [{"wait": "1d"}, {"send": {"channel": "in_app", "template_id": "a"}}]})
    await identify(sapi, "early")
    await identify(sapi, "late")
    await track(sapi, "early", "go")
    await put(sapi, "/v1/automations/v", {"trigger": {"event": "go"},
                                          "steps": [{"wait": "1d"}, {"send": {"channel": "in_app", "template_id": "b"}}]})
    await track(sapi, "late", "go")
    await advance(sapi, DAY)
    assert [m["rendered"]["title"] for m in await messages_of(sapi, "early")] == ["A"]
    assert [m["rendered"]["title"] for m in await messages_of(sapi, "late")] == ["B"]


async def test_holdout_users_get_nothing_and_the_report_compares_groups(sapi: Api) -> None:
    await put(sapi, "/v1/templates/t", {"in_app": {"title": "come back"}})
    await put(sapi, "/v1/automations/winback", {
        "trigger": {"event": "went_quiet"}, "holdout_percent": 50, "goal": {"event": "came_back", "within": "7d"},
        "steps": [{"send": {"channel": "in_app", "template_id": "t"}}]})
    users = [f"u{i}" for i in range(40)]
    for u in users:
        await sapi.post("/v1/track", {"userId": u, "event": "went_quiet"}, key="pk_test_publishable_0001")
    await quiesce(sapi)
    runs = (await sapi.get("/v1/automations/winback/runs?limit=1000")).json()["runs"]
    held = {r["user_id"] for r in runs if r["reason"] == "holdout"}
    treated = {r["user_id"] for r in runs} - held
    assert 5 < len(held) < 35 and len(held) + len(treated) == 40
    for u in held:
        assert await messages_of(sapi, u) == []
        assert "held_out" in [j["kind"] for j in await journal_of(sapi, u)]
    for u in sorted(treated)[:8]:
        await sapi.post("/v1/track", {"userId": u, "event": "came_back"}, key="pk_test_publishable_0001")
    await quiesce(sapi)
    report = (await sapi.get("/v1/automations/winback/report")).json()
    assert report["treated"] == {"users": len(treated), "converted": 8, "rate": 8 / len(treated)}
    assert report["holdout"]["converted"] == 0
    assert report["verdict"] and report["lift"]["absolute"] == pytest.approx(8 / len(treated))
    assert set(report["retention"]) == {"day_7", "day_14", "day_30"}


async def test_bad_definitions_name_the_step_and_field(sapi: Api) -> None:
    await put(sapi, "/v1/templates/t", {"in_app": {"title": "x"}})
    cases = [
        ({"trigger": {"event": "a"}, "steps": [{"wait": "1h"}, {"wait": "soon"}]}, "steps[1].wait"),
        ({"trigger": {"event": "a"}, "steps": [{"send": {"channel": "fax", "template_id": "t"}}]},
         "steps[0].send.channel"),
        ({"trigger": {"event": "a"}, "steps": [{"send": {"channel": "email", "template_id": "t"}}]},
         "steps[0].send.template_id"),
        ({"trigger": {"event": "a"}, "steps": [{"send": {"channel": "in_app", "template_id": "nope"}}]},
         "steps[0].send.template_id"),
        ({"trigger": {"event": "a"}, "steps": [{"wait_for": "b", "timeout": "1h",
                                                "if_not": [{"teleport": 1}]}]}, "steps[0].if_not[0]"),
        ({"trigger": {"schedule": "every day", "segment": "s"}}, "trigger.schedule"),
        ({"trigger": {"event": "a"}, "holdout_percent": 150}, "holdout_percent"),
        ({"trigger": {"event": "a"}, "quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"trigger": {"event": "a", "where": {"properties.total": {"bigger": 5}}}}, "trigger.where"),
        ({"steps": []}, "trigger"),
    ]
    for body, field in cases:
        r = await sapi.put("/v1/automations/bad", body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["message"].startswith(field), (field, r.json())
    assert (await sapi.get("/v1/automations/bad")).status_code == 404
