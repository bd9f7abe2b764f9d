"""Acceptance stories 1 (card expiring, signed webhook -> three channels),
2 (engagement below the personal baseline) and 6 (milestone from code)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from retenshund.clock import FakeClock, parse_iso
from tests.conftest import PUBLISHABLE, make_config, running
from tests.scenarios.helpers import DAY, HOUR, advance, identify, messages_of, put, quiesce
from tests.support.push_service import make_subscription, running_push_service
from tests.support.smtp_server import SmtpTestServer

T0 = parse_iso("2026-11-02T00:00:00Z")
WHSEC = "whsec_test_card_expiring"


def stripe_headers(body: bytes, t: int) -> dict[str, str]:
    sig = hmac.new(WHSEC.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


async def test_card_about_to_expire_reaches_the_user_on_every_channel(tmp_path: Path) -> None:
    async with SmtpTestServer() as smtp, running_push_service() as push:
        config = make_config(
            tmp_path / "d",
            email={"host": smtp.host, "port": smtp.port, "starttls": False, "from": "billing@acme.example"},
            push={"subject": "mailto:ops@acme.example"},
            webhooks={"stripe": {"kind": "stripe", "secret": WHSEC, "map": [{
                "type": "customer.source.expiring", "event": "card_expiring", "user_trait": "stripe_customer_id",
                "user_path": "data.object.customer",
                "properties": {"last4": "data.object.last4", "exp_month": "data.object.exp_month",
                               "exp_year": "data.object.exp_year"}}]}})
        async with running(config, FakeClock(T0)) as api:
            card = {"in_app": {"title": "Your card •••• {{ event.last4 }} expires {{ event.exp_month }}/{{ event.exp_year }}"},
                    "push": {"title": "Card •••• {{ event.last4 }} expires soon",
                             "body": "Update it before {{ event.exp_month }}/{{ event.exp_year }}"},
                    "email": {"subject": "Your card ending {{ event.last4 }} expires {{ event.exp_month }}/{{ event.exp_year }}",
                              "html": "<p>Hi {{ user.name }}, please update card {{ event.last4 }}.</p>"}}
            await put(api, "/v1/templates/card_expiring", card)
            await put(api, "/v1/automations/card-expiring", {
                "trigger": {"event": "card_expiring"},
                "steps": [{"send": {"channel": ["in_app", "push", "email"], "template_id": "card_expiring"}}]})
            await identify(api, "ada", email="ada@x.io", name="Ada", stripe_customer_id="cus_42")
            vapid = (await api.get("/v1/push/vapid-public-key", key=PUBLISHABLE)).json()["public_key"]
            sub, _ = make_subscription(push, application_server_key=vapid)
            token = (await api.post("/v1/users/ada/token")).json()["token"]
            assert (await api.post("/v1/push/subscriptions", {"subscription": sub}, key=token)).status_code == 201

            body = json.dumps({"id": "evt_1", "type": "customer.source.expiring", "data": {"object": {
                "customer": "cus_42", "last4": "4242", "exp_month": 12, "exp_year": 2026}}}).encode()
            r = await api.http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body, T0 // 1000))
            assert r.status_code == 200, r.text
            await quiesce(api)
            [mail] = await smtp.wait_for(1)
            [pushed] = await push.wait_for(1)
            msgs = {m["channel"]: m for m in await messages_of(api, "ada")}
            assert {c: m["status"] for c, m in msgs.items()} == {"in_app": "delivered", "push": "delivered",
                                                                  "email": "sent"}
            assert msgs["in_app"]["rendered"]["title"] == "Your card •••• 4242 expires 12/2026"
            assert json.loads(pushed.payload)["title"] == "Card •••• 4242 expires soon"
            assert mail.message["Subject"] == "Your card ending 4242 expires 12/2026"
            assert all(m["time_to_trigger_ms"] is not None for m in msgs.values())
            # The provider retries the same event: nothing is sent twice.
            r = await api.http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body, T0 // 1000))
            assert r.status_code == 200
            assert len(await messages_of(api, "ada")) == 3


async def test_activity_below_the_users_own_baseline_starts_a_reengagement_for_that_user_alone(tmp_path: Path) -> None:
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/templates/miss_you", {"in_app": {"title": "We miss you, {{ user.name }}"}})
        await put(api, "/v1/automations/reengage", {
            "trigger": {"event": "engagement_dropped"},
            "steps": [{"send": {"channel": "in_app", "template_id": "miss_you"}}]})
        await identify(api, "steady", name="Steady")
        await identify(api, "slipping", name="Slipping")
        await identify(api, "light", name="Light")
        for day in range(35):
            # 10:00 each day. Everyone keeps their own rhythm, except "slipping",
            # who goes from 10 a day to 1 a day for the last week.
            await advance(api, (DAY if day else 10 * HOUR))
            batch = [{"type": "track", "userId": "steady", "event": "used_feature"} for _ in range(10)]
            batch += [{"type": "track", "userId": "slipping", "event": "used_feature"}
                      for _ in range(10 if day < 28 else 1)]
            if day % 3 == 0:
                batch.append({"type": "track", "userId": "light", "event": "used_feature"})
            assert (await api.post("/v1/batch", {"batch": batch}, key=PUBLISHABLE)).status_code == 200
            await quiesce(api)
        await advance(api, DAY)
        slipping = (await api.get("/v1/users/slipping")).json()["engagement"]
        assert slipping["state"] == "below_baseline" and slipping["ratio"] < 0.5
        assert (await api.get("/v1/users/steady")).json()["engagement"]["state"] == "normal"
        assert [m["rendered"]["title"] for m in await messages_of(api, "slipping")] == ["We miss you, Slipping"]
        assert await messages_of(api, "steady") == [] and await messages_of(api, "light") == []


async def test_milestone_from_code_shows_the_variables_in_the_email(tmp_path: Path) -> None:
    async with SmtpTestServer() as smtp:
        config = make_config(tmp_path / "d", email={"host": smtp.host, "port": smtp.port, "starttls": False,
                                                    "from": "hello@acme.example"})
        async with running(config) as api:
            await put(api, "/v1/templates/milestone_celebration", {
                "email": {"subject": "You reached {{ milestone }}!",
                          "html": "<h1>Congratulations {{ user.name }}</h1><p>{{ milestone }} sent.</p>"}})
            await identify(api, "user_123", email="dev@x.io", name="Grace")
            r = await api.post("/v1/messages/send", {"user_id": "user_123", "channel": "email",
                                                     "template_id": "milestone_celebration",
                                                     "variables": {"milestone": "10,000 messages"}})
            assert r.status_code == 202
            [mail] = await smtp.wait_for(1)
            text = next(p.get_content() for p in mail.message.walk() if p.get_content_type() == "text/plain")
            assert mail.message["Subject"] == "You reached 10,000 messages!"
            assert "Congratulations Grace" in text and "10,000 messages sent." in text
