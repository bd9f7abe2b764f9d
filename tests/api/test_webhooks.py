"""Inbound webhooks over real HTTP through the in-process app.

Signatures are computed here with hmac/hashlib from the providers' documented
schemes, independently of retenshund.webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retenshund import webhooks as wh
from retenshund.app import create_app
from retenshund.clock import FakeClock
from retenshund.config import ConfigError
from retenshund.store import sqlite_webhooks
from tests.conftest import PUBLISHABLE, Api, make_config, running

STRIPE_SECRET = "whsec_stripe_test_0123456789"
STANDARD_KEY = b"standard-webhooks-key-0123456789"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
MINUTE_MS = 60_000
DAY_MS = 86_400_000

WEBHOOKS = {
    "stripe": {"kind": "stripe", "secret": STRIPE_SECRET, "map": [
        {"type": "customer.source.expiring", "event": "card_expiring", "user_trait": "stripe_customer_id",
         "user_path": "data.object.customer",
         "properties": {"last4": "data.object.last4", "exp_month": "data.object.exp_month",
                        "exp_year": "data.object.exp_year"}}]},
    "app": {"kind": "standard", "secret": STANDARD_SECRET, "map": [
        {"type": "seat.removed", "event": "team_member_left", "user_id_path": "data.user_id",
         "properties": {"team": "data.team"}}]},
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config = make_config(tmp_path / "data", webhooks=WEBHOOKS, store={"dedupe_window": "1h"})
    async with running(config, FakeClock()) as a:
        yield a


def now_s(api: Api) -> int:
    assert api.clock is not None
    return api.clock.now_ms() // 1000


def card_event(event_id: str = "evt_1", customer: str = "cus_1") -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": "customer.source.expiring",
                       "data": {"object": {"id": "card_1", "object": "card", "customer": customer,
                                           "last4": "4242", "exp_month": 12, "exp_year": 2026}}}).encode()


def stripe_sig(body: bytes, t: int, secret: str = STRIPE_SECRET) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


async def post_stripe(api: Api, body: bytes, *, t: int | None = None, header: str | None = None) -> httpx.Response:
    t = now_s(api) if t is None else t
    header = header if header is not None else f"t={t},v1={stripe_sig(body, t)}"
    return await api.http.post("/v1/webhooks/stripe", content=body,
                               headers={"Stripe-Signature": header, "Content-Type": "application/json"})


async def post_standard(api: Api, msg_id: str, payload: dict[str, Any]) -> httpx.Response:
    body = json.dumps(payload).encode()
    ts = now_s(api)
    mac = hmac.new(STANDARD_KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return await api.http.post("/v1/webhooks/app", content=body, headers={
        "webhook-id": msg_id, "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode()})


async def identify(api: Api, user_id: str, **traits: Any) -> None:
    r = await api.post("/v1/identify", {"userId": user_id, "traits": traits}, key=PUBLISHABLE)
    assert r.status_code == 200, r.text


async def events(api: Api, user_id: str, name: str | None = None) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/users/{user_id}/events?limit=1000")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [e for e in r.json()["events"] if name is None or e["event"] == name]


async def test_stripe_card_expiring_becomes_an_event_for_the_user_with_the_trait(api: Api) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    await identify(api, "u2", stripe_customer_id="cus_2")
    r = await post_stripe(api, card_event())
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "event": "card_expiring"}
    [event] = await events(api, "u1", "card_expiring")
    assert event["properties"] == {"last4": "4242", "exp_month": 12, "exp_year": 2026,
                                   "webhook_source": "stripe", "webhook_event_id": "evt_1"}
    assert event["message_id"] == "wh:stripe:evt_1" and event["type"] == "track"
    assert await events(api, "u2", "card_expiring") == []


async def test_the_event_flows_on_the_bus_like_any_event(api: Api) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    svc = api.services
    sub = svc.bus.subscribe("test", await svc.store.last_event_id())
    try:
        assert (await post_stripe(api, card_event())).status_code == 200
        batch = await asyncio.wait_for(sub.next_batch(), timeout=5)
    finally:
        sub.close()
    assert [(e.event, e.profile_user_id) for e in batch] == [("card_expiring", "u1")]


async def test_the_same_event_id_again_is_acknowledged_and_stored_once_for_days(api: Api) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    assert (await post_stripe(api, card_event())).json()["event"] == "card_expiring"
    # A retry seconds later, freshly signed (Stripe signs every attempt anew).
    assert api.clock is not None
    api.clock.advance(30_000)
    again = await post_stripe(api, card_event())
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True}
    # Four days on, after ingest dedupe forgot the id (dedupe_window is 1h here)
    # and the webhook job pruned what is older than its own 7-day window.
    api.clock.advance(4 * DAY_MS)
    store = api.services.store
    await store.prune_message_ids(api.clock.now_ms() - 3_600_000)
    await store.prune_webhooks(seen_before_ms=api.clock.now_ms() - wh.DEDUPE_MS,
                               unmatched_before_ms=api.clock.now_ms() - wh.UNMATCHED_KEEP_MS)
    late = await post_stripe(api, card_event())
    assert late.status_code == 200 and late.json()["duplicate"] is True
    assert len(await events(api, "u1", "card_expiring")) == 1


@pytest.mark.parametrize("case", ["bad_signature", "other_secret", "stale", "future", "tampered", "missing"])
async def test_bad_or_stale_signatures_are_401_and_store_nothing(api: Api, case: str) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    body = card_event()
    t = now_s(api)
    if case == "bad_signature":
        r = await post_stripe(api, body, header=f"t={t},v1={'ab' * 32}")
    elif case == "other_secret":
        r = await post_stripe(api, body, header=f"t={t},v1={stripe_sig(body, t, 'whsec_someone_else')}")
    elif case == "stale":
        r = await post_stripe(api, body, t=t - 6 * 60)
    elif case == "future":
        r = await post_stripe(api, body, t=t + 6 * 60)
    elif case == "tampered":
        signed = f"t={t},v1={stripe_sig(body, t)}"
        r = await post_stripe(api, body.replace(b'"4242"', b'"0000"'), header=signed)
    else:
        r = await api.http.post("/v1/webhooks/stripe", content=body)
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == {"stale": "stale_signature", "future": "stale_signature",
                             "missing": "missing_signature"}.get(case, "invalid_signature")
    assert await events(api, "u1", "card_expiring") == []
    # Not even the id was recorded: the genuine delivery is still taken as new.
    ok = await post_stripe(api, body)
    assert ok.json() == {"received": True, "event": "card_expiring"}


async def test_a_stale_signature_is_judged_by_the_app_clock(api: Api) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    body = card_event()
    signed_at = now_s(api)
    assert api.clock is not None
    api.clock.advance(5 * MINUTE_MS)
    assert (await post_stripe(api, body, t=signed_at)).status_code == 200
    api.clock.advance(1_001)
    r = await post_stripe(api, card_event("evt_2"), t=signed_at)
    assert r.status_code == 401 and r.json()["error"]["code"] == "stale_signature"


async def test_several_v1_signatures_one_matching_is_accepted(api: Api) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    body = card_event()
    t = now_s(api)
    header = f"t={t},v1={stripe_sig(body, t, 'whsec_old_secret')},v1={stripe_sig(body, t)},v0=legacy"
    r = await post_stripe(api, body, header=header)
    assert r.status_code == 200 and r.json()["event"] == "card_expiring"


async def test_standard_webhooks_variant(api: Api) -> None:
    payload = {"type": "seat.removed", "timestamp": "2026-05-28T00:00:00Z",
               "data": {"user_id": "u7", "team": "acme"}}
    r = await post_standard(api, "msg_1", payload)
    assert r.status_code == 200 and r.json() == {"received": True, "event": "team_member_left"}
    again = await post_standard(api, "msg_1", payload)
    assert again.json() == {"received": True, "duplicate": True}
    [event] = await events(api, "u7", "team_member_left")
    assert event["properties"] == {"team": "acme", "webhook_source": "app", "webhook_event_id": "msg_1"}
    # The id is signed: a replay under another id with the old signature fails.
    body = json.dumps(payload).encode()
    ts = now_s(api)
    mac = hmac.new(STANDARD_KEY, f"msg_1.{ts}.".encode() + body, hashlib.sha256).digest()
    forged = await api.http.post("/v1/webhooks/app", content=body, headers={
        "webhook-id": "msg_2", "webhook-timestamp": str(ts), "webhook-signature": "v1," + base64.b64encode(mac).decode()})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"


async def test_unknown_user_is_kept_as_unmatched_then_replayed_when_the_trait_appears(api: Api) -> None:
    r = await post_stripe(api, card_event("evt_9", customer="cus_new"))
    assert r.status_code == 200
    assert r.json() == {"received": True, "unmatched": "no user with trait stripe_customer_id = 'cus_new'"}
    listed = (await api.get("/v1/webhooks/unmatched?source=stripe")).json()["unmatched"]
    assert [(u["event_id"], u["event"], u["user_trait"], u["value"], u["replayed_at"]) for u in listed] == [
        ("evt_9", "card_expiring", "stripe_customer_id", "cus_new", None)]
    assert listed[0]["properties"]["last4"] == "4242"
    assert (await api.get("/v1/webhooks/unmatched?source=app")).json()["unmatched"] == []
    assert (await api.get("/v1/webhooks/unmatched", key=PUBLISHABLE)).status_code == 403
    assert (await api.get("/v1/webhooks/unmatched", key=None)).status_code == 401

    # The user signs up and gets the trait: the webhook is replayed into their events.
    await identify(api, "u5", stripe_customer_id="cus_new")
    jobs = api.services.extra["webhook_jobs"]
    await asyncio.wait_for(jobs.caught_up(await api.services.store.last_event_id()), timeout=5)
    [event] = await events(api, "u5", "card_expiring")
    assert event["properties"]["webhook_event_id"] == "evt_9"
    assert (await api.get("/v1/webhooks/unmatched?source=stripe")).json()["unmatched"] == []
    [replayed] = (await api.get("/v1/webhooks/unmatched?include_replayed=true")).json()["unmatched"]
    assert replayed["replayed_user_id"] == "u5" and replayed["replayed_at"] is not None
    # And the provider's retry of it is still a duplicate.
    assert (await post_stripe(api, card_event("evt_9", customer="cus_new"))).json()["duplicate"] is True
    assert len(await events(api, "u5", "card_expiring")) == 1


async def test_unmatched_are_replayed_at_start_too(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", webhooks=WEBHOOKS)
    clock = FakeClock()
    async with running(config, clock) as api:
        assert (await post_stripe(api, card_event("evt_3", customer="cus_3"))).json()["unmatched"]
    # The trait arrives while nothing replays (no map looks users up by it then).
    without_traits = make_config(tmp_path / "data", webhooks={"app": WEBHOOKS["app"]})
    async with running(without_traits, clock) as api:
        await identify(api, "u3", stripe_customer_id="cus_3")
        assert await events(api, "u3", "card_expiring") == []
    async with running(config, clock) as api:
        [event] = await events(api, "u3", "card_expiring")
        assert event["properties"]["webhook_event_id"] == "evt_3"


async def test_unknown_type_is_acknowledged_ignored_and_recorded(api: Api) -> None:
    await identify(api, "u1", stripe_customer_id="cus_1")
    body = json.dumps({"id": "evt_c", "type": "charge.succeeded", "data": {"object": {"customer": "cus_1"}}}).encode()
    r = await post_stripe(api, body)
    assert r.status_code == 200
    assert r.json() == {"received": True, "ignored": "no map for type charge.succeeded"}
    assert [e["event"] for e in await events(api, "u1") if e["type"] == "track"] == []
    assert (await post_stripe(api, body)).json() == {"received": True, "duplicate": True}


async def test_unknown_source_is_404(api: Api) -> None:
    r = await api.http.post("/v1/webhooks/paypal", content=b"{}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_webhook_source"
    assert "[webhooks.paypal]" in r.json()["error"]["message"]


async def test_too_large_body_is_413_before_anything_else(api: Api) -> None:
    body = b'{"id": "evt_big", "pad": "' + b"x" * wh.MAX_BODY + b'"}'
    r = await post_stripe(api, body)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_invalid_json_with_a_valid_signature_is_400(api: Api) -> None:
    for body in (b"{not json", b"[1, 2]"):
        r = await post_stripe(api, body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    no_id = json.dumps({"type": "customer.source.expiring"}).encode()
    r = await post_stripe(api, no_id)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("id: ")


async def test_user_lookup_uses_the_trait_index(api: Api) -> None:
    store = api.services.store
    sql = sqlite_webhooks.FIND_BY_TRAIT.format(trait="stripe_customer_id")
    with sqlite3.connect(store.path) as conn:
        plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ("cus_1",)))
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert "USING INDEX profiles_webhook_trait_stripe_customer_id" in plan
    assert "profiles_webhook_trait_stripe_customer_id" in names


async def test_indexes_of_traits_no_longer_configured_are_dropped(tmp_path: Path) -> None:
    first = make_config(tmp_path / "data", webhooks=WEBHOOKS)
    async with running(first, FakeClock()) as api:
        path = api.services.store.path
    second = make_config(tmp_path / "data", webhooks={"app": WEBHOOKS["app"]})
    async with running(second, FakeClock()):
        with sqlite3.connect(path) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert not [n for n in names if n.startswith("profiles_webhook_trait_")]


def test_bad_webhook_settings_stop_the_app_at_creation(tmp_path: Path) -> None:
    bad = make_config(tmp_path / "data", webhooks={"stripe": {"kind": "stripe", "secret": STRIPE_SECRET,
                                                              "map": [{"type": "t", "event": "e"}]}})
    with pytest.raises(ConfigError, match=r"webhooks\.stripe\.map\[0\]\.user_trait"):
        create_app(bad)


async def test_openapi_lists_the_webhook_endpoints(api: Api) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/v1/webhooks/{source}"] and "get" in paths["/v1/webhooks/unmatched"]
    assert paths["/v1/webhooks/{source}"]["post"]["security"] == []
