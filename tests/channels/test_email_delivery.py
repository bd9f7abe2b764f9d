"""Email end to end through the send API and a real SMTP server (aiosmtpd):
multipart, RFC 8058 headers, tracking, retries, bounces, unsubscribe."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retenshund.clock import FakeClock
from tests.conftest import Api, make_config, running
from tests.messaging_helpers import put_template, send, settle, setup_user, wait_status
from tests.support.smtp_server import SmtpTestServer


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpTestServer]:
    async with SmtpTestServer() as server:
        yield server


def email_config(tmp_path: Path, smtp: SmtpTestServer, **email: object):  # type: ignore[no-untyped-def]
    return make_config(tmp_path / "d", email={"host": smtp.host, "port": smtp.port, "starttls": False,
                                               "from": "Acme <hello@acme.example>", **email},
                       server={"public_url": "http://engage.test"})


async def test_email_has_both_parts_unsubscribe_headers_and_tracking(tmp_path: Path, smtp: SmtpTestServer) -> None:
    async with running(email_config(tmp_path, smtp)) as api:
        await setup_user(api, "u1", name="Ada")
        await put_template(api)
        out = await send(api, {"user_id": "u1", "channel": "email"})
        [got] = await smtp.wait_for(1)
        m = await wait_status(api, out["message_id"], "sent")
        msg = got.message
        assert got.rcpt_tos == ["u1@example.com"]
        assert msg["Subject"] == "You reached 10,000 messages"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsub = re.search(r"<(http://engage.test/u/[^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
        assert out["message_id"].split("_")[1] in msg["Message-ID"]
        parts = {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}
        assert set(parts) == {"text/plain", "text/html"}
        assert "Hi Ada" in parts["text/plain"] and "Hi Ada" in parts["text/html"]
        assert "http://engage.test/t/o/" in parts["text/html"]
        click = re.search(r'href="(http://engage.test/t/c/[^"]+)"', parts["text/html"]).group(1)  # type: ignore[union-attr]
        assert m["time_to_trigger_ms"] is not None

        # Open pixel, then click: statuses move forward with history.
        pixel = re.search(r'src="http://engage.test(/t/o/[^"]+)"', parts["text/html"]).group(1)  # type: ignore[union-attr]
        r = await api.http.get(pixel)
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
        r = await api.http.get(click.replace("http://engage.test", ""))
        assert r.status_code == 302 and r.headers["location"] == "https://app.example.com/stats"
        m = (await api.get(f"/v1/messages/{out['message_id']}")).json()
        assert [h["status"] for h in m["history"]] == ["queued", "sent", "opened", "clicked"]

        # Unsubscribe: GET only asks, POST (one-click, no cookies) does it, twice is fine.
        path = unsub.replace("http://engage.test", "")
        page = await api.http.get(path)
        assert page.status_code == 200 and "<form method=post" in page.text
        assert (await api.get("/v1/users/u1/preferences")).json()["categories"] == {}
        for _ in range(2):
            r = await api.http.post(path, content=b"List-Unsubscribe=One-Click",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert r.status_code == 200 and "unsubscribed" in r.text
        assert (await api.get("/v1/users/u1/preferences")).json()["categories"] == {"product_updates": False}
        history = (await api.get(f"/v1/messages/{out['message_id']}")).json()["history"]
        assert [h["status"] for h in history].count("unsubscribed") == 1  # twice POSTed, once recorded
        again = await send(api, {"user_id": "u1", "channel": "email"})
        assert "product_updates" in (await wait_status(api, again["message_id"], "suppressed"))["reason"]
        assert len(smtp.messages) == 1


async def test_tracking_can_be_switched_off(tmp_path: Path, smtp: SmtpTestServer) -> None:
    async with running(email_config(tmp_path, smtp, track_opens=False, track_clicks=False)) as api:
        await setup_user(api)
        await put_template(api)
        await send(api, {"user_id": "u1", "channel": "email"})
        [got] = await smtp.wait_for(1)
        html = next(p.get_content() for p in got.message.walk() if p.get_content_type() == "text/html")
        assert "/t/o/" not in html and "/t/c/" not in html and "https://app.example.com/stats" in html


async def test_forged_tracking_links_change_nothing(api: Api) -> None:
    r = await api.http.get("/t/c/AAAAforged")
    assert r.status_code == 404
    r = await api.http.post("/u/AAAAforged")
    assert r.status_code == 404
    assert (await api.http.get("/t/o/AAAA.gif")).status_code == 200  # a pixel, whatever happens


async def test_temporary_failures_retry_on_schedule_then_succeed(tmp_path: Path, smtp: SmtpTestServer) -> None:
    clock = FakeClock()
    async with running(email_config(tmp_path, smtp), clock) as api:
        await setup_user(api)
        await put_template(api)
        smtp.answer(451, "try again later", times=1)
        smtp.answer(421, "busy", times=1)
        out = await send(api, {"user_id": "u1", "channel": "email"})
        await settle(api)
        m = (await api.get(f"/v1/messages/{out['message_id']}")).json()
        assert m["status"] == "queued" and "451" in m["history"][-1]["detail"]
        dispatcher = api.services.extra["dispatcher"]
        # Not due yet: nothing is claimed before the backoff has passed.
        assert await dispatcher.run_due() == 0
        clock.advance(3600_000)
        assert await dispatcher.run_due() == 1
        await settle(api)
        m = (await api.get(f"/v1/messages/{out['message_id']}")).json()
        assert "421" in m["history"][-1]["detail"]
        clock.advance(3600_000)
        assert await dispatcher.run_due() == 1
        m = await wait_status(api, out["message_id"], "sent")
        assert len(smtp.messages) == 1


async def test_retries_give_up_into_a_visible_dead_letter(tmp_path: Path, smtp: SmtpTestServer) -> None:
    clock = FakeClock()
    async with running(email_config(tmp_path, smtp, give_up_after="3h"), clock) as api:
        await setup_user(api)
        await put_template(api)
        smtp.answer(451, "still down", times=100)
        out = await send(api, {"user_id": "u1", "channel": "email"})
        dispatcher = api.services.extra["dispatcher"]
        for _ in range(20):
            await settle(api)
            m = (await api.get(f"/v1/messages/{out['message_id']}")).json()
            if m["status"] != "queued":
                break
            clock.advance(3600_000)
            await dispatcher.run_due()
        assert m["status"] == "failed" and m["reason"].startswith("dead letter")
        failed = (await api.get("/v1/messages?status=failed")).json()["messages"]
        assert [f["message_id"] for f in failed] == [out["message_id"]]


async def test_hard_bounce_suppresses_the_address(tmp_path: Path, smtp: SmtpTestServer) -> None:
    async with running(email_config(tmp_path, smtp)) as api:
        await setup_user(api)
        await put_template(api)
        smtp.answer(550, "no such user", times=1, at="RCPT")
        out = await send(api, {"user_id": "u1", "channel": "email"})
        m = await wait_status(api, out["message_id"], "bounced")
        assert "550" in m["history"][-1]["detail"]
        again = await send(api, {"user_id": "u1", "channel": "email"})
        m = await wait_status(api, again["message_id"], "suppressed")
        assert "bounced" in m["reason"]
        assert smtp.messages == []


async def test_no_email_trait_is_suppressed_never_sent(tmp_path: Path, smtp: SmtpTestServer) -> None:
    async with running(email_config(tmp_path, smtp)) as api:
        await api.post("/v1/identify", {"userId": "u2", "traits": {"name": "x"}}, key="pk_test_publishable_0001")
        await put_template(api)
        out = await send(api, {"user_id": "u2", "channel": "email"})
        assert (await wait_status(api, out["message_id"], "suppressed"))["reason"].startswith("no address")
        assert smtp.messages == []


async def test_email_channel_without_smtp_settings_fails_clearly(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": "email"})
    m = await wait_status(api, out["message_id"], "failed")
    assert "not configured" in m["reason"]
