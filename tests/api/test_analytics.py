"""Message analytics over HTTP: counts, rates and time to trigger against
hand-computed values."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from retenshund.clock import FakeClock, iso
from retenshund.store import sqlite_analytics
from retenshund.store.base import NewMessage
from tests.conftest import PUBLISHABLE, Api, make_config, running
from tests.messaging_helpers import put_template, send, settle, setup_user

DAY_MS = 86_400_000
FAR = 10**12  # a lease no dispatcher poll will outlive: seeded jobs stay ours


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running(make_config(tmp_path / "data"), FakeClock()) as a:
        yield a


def now(api: Api) -> int:
    assert api.clock is not None
    return api.clock.now_ms()


async def seed(api: Api, mid: str, *, created: int, channel: str = "email", template: str = "welcome",
               automation: str | None = None, trigger: int | None = None, outcome: str | None = None,
               at: int | None = None, then: tuple[str, ...] = (), suppressed: bool = False) -> None:
    """A message written through the store as the dispatcher would, with chosen times."""
    store = api.services.store
    await store.create_messages([NewMessage(
        message_id=mid, user_id="u1", channel=channel, template_id=template, category="product_updates",
        automation_id=automation, trigger_at=created if trigger is None else trigger, due_at=created,
        status="suppressed" if suppressed else "queued", reason="unsubscribed: test" if suppressed else None,
    )], now_ms=created, lease_ms=FAR)
    when = created if at is None else at
    if outcome is not None:
        await store.complete(mid, 0, outcome, when)
    for status in then:
        assert await store.advance_status(mid, status, when)


async def seed_templates(api: Api) -> None:
    t = now(api) - 3_600_000
    await seed(api, "w1", created=t, automation="a1")
    await seed(api, "w2", created=t, automation="a1", suppressed=True)
    await seed(api, "w3", created=t, automation="a1", outcome="sent")
    await seed(api, "w4", created=t, automation="a1", outcome="sent", then=("opened",))
    await seed(api, "w5", created=t, automation="a1", channel="in_app", outcome="delivered", then=("opened", "clicked"))
    await seed(api, "w6", created=t, automation="a1", outcome="failed")
    await seed(api, "w7", created=t, automation="a1", outcome="sent", then=("bounced",))
    await seed(api, "p1", created=t, template="promo", channel="push", outcome="delivered")
    await seed(api, "p2", created=t, template="promo", channel="push", outcome="delivered")
    # Outside a one-day window.
    await seed(api, "old", created=now(api) - 2 * DAY_MS, outcome="delivered")


def statuses(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(("queued", "sent", "delivered", "opened", "clicked", "failed", "bounced", "suppressed"), 0)
    return base | counts


async def test_counts_and_rates_by_template_by_hand(api: Api) -> None:
    await seed_templates(api)
    r = await api.get("/v1/analytics/messages?group_by=template&since=1d")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["group_by"] == "template" and body["since"] == iso(now(api) - DAY_MS)
    assert set(body["counting"]) == {"window", "current", "reached"} and set(body["rate_definitions"]) == {
        "delivery", "open", "click", "unsubscribe"}
    welcome, promo = body["groups"]
    assert welcome["key"] == "welcome" and welcome["messages"] == 7
    assert welcome["current"] == statuses(queued=1, suppressed=1, sent=1, opened=1, clicked=1, failed=1, bounced=1)
    # History: every message but the suppressed one was queued; w3, w4, w7 were sent; w7 then bounced.
    assert welcome["reached"] == statuses(queued=6, sent=3, delivered=1, opened=2, clicked=1, failed=1, bounced=1,
                                          suppressed=1) | {"unsubscribed": 0}
    # delivered-or-sent now: w3, w4, w5 = 3; attempted: those + w6 failed + w7 bounced = 5.
    assert welcome["rates"] == {"delivery": 0.6, "open": 0.6667, "click": 0.3333, "unsubscribe": None}
    assert promo == {"key": "promo", "messages": 2, "current": statuses(delivered=2),
                     "reached": statuses(queued=2, delivered=2) | {"unsubscribed": 0},
                     "rates": {"delivery": 1.0, "open": 0.0, "click": 0.0, "unsubscribe": None}}
    totals = body["totals"]
    assert totals["key"] is None and totals["messages"] == 9
    assert totals["current"]["delivered"] == 2 and totals["reached"]["queued"] == 8
    assert totals["rates"]["delivery"] == round(5 / 7, 4)


async def test_group_by_channel_and_automation_and_filters(api: Api) -> None:
    await seed_templates(api)
    by_channel = (await api.get("/v1/analytics/messages?group_by=channel&since=1d")).json()["groups"]
    assert [(g["key"], g["messages"]) for g in by_channel] == [("email", 6), ("push", 2), ("in_app", 1)]
    by_automation = (await api.get("/v1/analytics/messages?group_by=automation&since=1d")).json()["groups"]
    assert [(g["key"], g["messages"]) for g in by_automation] == [("a1", 7), (None, 2)]
    only_a1 = (await api.get("/v1/analytics/messages?group_by=channel&since=1d&automation_id=a1")).json()
    assert [(g["key"], g["messages"]) for g in only_a1["groups"]] == [("email", 6), ("in_app", 1)]
    # The default window (7d) includes the old message; an ISO since works as well.
    week = (await api.get("/v1/analytics/messages?group_by=template")).json()
    assert week["totals"]["messages"] == 10
    since = iso(now(api) - 90 * 60_000)
    iso_window = (await api.get("/v1/analytics/messages", params={"group_by": "template", "since": since})).json()
    assert iso_window["totals"]["messages"] == 9


async def test_messages_sent_through_the_api_are_counted(api: Api) -> None:
    await setup_user(api, "u1")
    await setup_user(api, "u2")
    await put_template(api)
    for user in ("u1", "u2"):
        await send(api, {"user_id": user, "channel": ["in_app", "push", "email"]})
    await settle(api)
    body = (await api.get("/v1/analytics/messages?group_by=channel&since=1h")).json()
    groups = {g["key"]: g for g in body["groups"]}
    # in_app is delivered; push has no subscription (suppressed); email is not configured here (failed).
    assert groups["in_app"]["current"] == statuses(delivered=2)
    assert groups["push"]["current"] == statuses(suppressed=2)
    assert groups["email"]["current"] == statuses(failed=2)
    assert groups["in_app"]["reached"]["queued"] == 2 and groups["push"]["reached"]["suppressed"] == 2
    assert [groups[c]["rates"]["delivery"] for c in ("in_app", "push", "email")] == [1.0, None, 0.0]
    assert body["totals"]["messages"] == 6


async def test_unsubscribe_rate_appears_once_unsubscribes_are_recorded(api: Api) -> None:
    t = now(api) - 60_000
    for mid in ("e1", "e2", "e3", "e4"):
        await seed(api, mid, created=t, outcome="sent")
    before = (await api.get("/v1/analytics/messages?group_by=channel&since=1d")).json()["groups"][0]
    assert before["rates"]["unsubscribe"] is None

    # Stands in for the unsubscribe page recording an "unsubscribed" history
    # entry on the message whose link was used (not wired there yet).
    def record(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO message_history (message_id, seq, status, at, detail) VALUES ('e2', 99,"
                     " 'unsubscribed', ?, 'product_updates')", (t,))

    await api.services.store.writer.run(record)
    after = (await api.get("/v1/analytics/messages?group_by=channel&since=1d")).json()["groups"][0]
    assert after["reached"]["unsubscribed"] == 1
    assert after["rates"]["unsubscribe"] == 0.25


LATENCIES_IN_APP = [0, 3, 7, 40, 120, 800, 2_000, 15_000, 70_000, 4_000_000]


async def seed_latencies(api: Api) -> None:
    t = now(api) - 3 * 3_600_000
    for i, ms in enumerate(LATENCIES_IN_APP):
        await seed(api, f"i{i}", channel="in_app", created=t, trigger=t - 10, outcome="delivered", at=t - 10 + ms)
    for i in range(3):
        await seed(api, f"p{i}", channel="push", created=t, trigger=t, outcome="delivered", at=t + 5)
    # Delivered before the window, and never delivered: both left out.
    await seed(api, "old", channel="push", created=t - 3 * DAY_MS, outcome="delivered", at=t - 3 * DAY_MS + 9)
    await seed(api, "waiting", channel="push", created=t)


def nonzero(histogram: list[dict[str, Any]]) -> dict[str, int]:
    return {b["label"]: b["count"] for b in histogram if b["count"]}


async def test_time_to_trigger_percentiles_and_histogram_by_hand(api: Api) -> None:
    await seed_latencies(api)
    r = await api.get("/v1/analytics/time-to-trigger?since=1d")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "delivered_at - trigger_at" in body["measure"]
    in_app, push = body["channels"]
    # Nearest rank over 10 values: p50 = 5th, p90 = 9th, p99 = 10th.
    assert (in_app["channel"], in_app["count"], in_app["p50_ms"], in_app["p90_ms"], in_app["p99_ms"],
            in_app["max_ms"]) == ("in_app", 10, 120, 70_000, 4_000_000, 4_000_000)
    assert len(in_app["histogram"]) == 19
    assert nonzero(in_app["histogram"]) == {"<1ms": 1, "2.5ms-5ms": 1, "5ms-10ms": 1, "25ms-50ms": 1,
                                            "100ms-250ms": 1, "500ms-1s": 1, "1s-2.5s": 1, "10s-30s": 1,
                                            "1m-5m": 1, ">=1h": 1}
    assert (push["channel"], push["count"], push["p50_ms"], push["p90_ms"], push["p99_ms"]) == ("push", 3, 5, 5, 5)
    assert nonzero(push["histogram"]) == {"5ms-10ms": 3}
    assert push["histogram"][3] == {"label": "5ms-10ms", "from_ms": 5, "to_ms": 10, "count": 3}
    # A window that starts after everything was delivered is empty.
    assert (await api.get("/v1/analytics/time-to-trigger?since=1h")).json()["channels"] == []


@pytest.mark.parametrize("path, field", [
    ("/v1/analytics/messages", "group_by"),
    ("/v1/analytics/messages?group_by=status", "group_by"),
    ("/v1/analytics/messages?group_by=channel&since=last+week", "since"),
    ("/v1/analytics/time-to-trigger?since=7+days", "since"),
])
async def test_bad_parameters_are_400_naming_the_field(api: Api, path: str, field: str) -> None:
    r = await api.get(path)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_field" and error["message"].startswith(f"{field}: ")


async def test_analytics_needs_a_secret_key(api: Api) -> None:
    for path in ("/v1/analytics/messages?group_by=channel", "/v1/analytics/time-to-trigger"):
        assert (await api.get(path, key=None)).status_code == 401
        assert (await api.get(path, key=PUBLISHABLE)).status_code == 403


async def test_queries_are_served_by_indexes(api: Api) -> None:
    path = api.services.store.path
    current = sqlite_analytics.CURRENT.format(col="channel", filters="")
    by_automation = sqlite_analytics.CURRENT.format(col="channel", filters="AND automation_id = ?")
    latency = sqlite_analytics.LATENCY_BUCKETS.format(case="0")
    with sqlite3.connect(path) as conn:
        def plan(sql: str, args: tuple[Any, ...]) -> str:
            return " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "USING INDEX messages_created" in plan(current, (0, 1))
        assert "USING INDEX messages_automation" in plan(by_automation, (0, 1, "a1"))
        assert "USING COVERING INDEX messages_delivered" in plan(latency, (0, 1))
        # The partial index holds only "unsubscribed" rows: EXISTS reads at most one.
        assert "USING INDEX message_history_unsubscribed" in plan(sqlite_analytics.UNSUBSCRIBES_RECORDED, ())


async def test_openapi_lists_the_analytics_endpoints(api: Api) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/v1/analytics/messages"] and "get" in paths["/v1/analytics/time-to-trigger"]
