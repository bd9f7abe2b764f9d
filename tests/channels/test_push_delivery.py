"""Web push end to end: subscription routes, then the send API to a real push
service that checks VAPID and decrypts the payload as a browser would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retenshund.clock import FakeClock
from tests.conftest import PUBLISHABLE, Api, make_config, running
from tests.messaging_helpers import put_template, send, settle, setup_user, wait_status
from tests.support.push_service import PushService, make_subscription, running_push_service


@pytest.fixture
async def push() -> AsyncIterator[PushService]:
    async with running_push_service() as service:
        yield service


async def subscribe(api: Api, service: PushService, user_id: str = "u1") -> dict:  # type: ignore[type-arg]
    vapid = (await api.get("/v1/push/vapid-public-key", key=PUBLISHABLE)).json()["public_key"]
    sub, _key = make_subscription(service, application_server_key=vapid)
    token = (await api.post(f"/v1/users/{user_id}/token")).json()["token"]
    r = await api.post("/v1/push/subscriptions", {"subscription": sub}, key=token)
    assert r.status_code == 201, r.text
    return sub


def push_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_config(tmp_path / "d", push={"subject": "mailto:ops@acme.example", "ttl": 3600})


async def test_push_is_encrypted_signed_and_carries_the_users_data(tmp_path: Path, push: PushService) -> None:
    async with running(push_config(tmp_path)) as api:
        await setup_user(api, "u1", name="Ada")
        await put_template(api)
        await subscribe(api, push)
        out = await send(api, {"user_id": "u1", "channel": "push"})
        [got] = await push.wait_for(1)
        m = await wait_status(api, out["message_id"], "delivered")
        payload = json.loads(got.payload)
        assert payload == {"title": "10,000 messages!", "body": "Well done Ada", "url": "https://app.example.com/m",
                           "message_id": out["message_id"]}
        assert got.jwt_claims["sub"] == "mailto:ops@acme.example"
        assert got.headers["ttl"] == "3600"
        assert m["time_to_trigger_ms"] is not None
        # The service worker reports the click.
        r = await api.http.post(f"/v1/messages/{out['message_id']}/clicked")
        assert r.status_code == 204
        assert (await api.get(f"/v1/messages/{out['message_id']}")).json()["status"] == "clicked"


async def test_gone_subscriptions_are_deleted(tmp_path: Path, push: PushService) -> None:
    async with running(push_config(tmp_path)) as api:
        await setup_user(api)
        await put_template(api)
        sub = await subscribe(api, push)
        push.respond(sub["endpoint"].rsplit("/", 1)[1], 410)
        out = await send(api, {"user_id": "u1", "channel": "push"})
        m = await wait_status(api, out["message_id"], "suppressed")
        assert "expired" in m["reason"]
        assert await api.services.store.push_subscriptions("u1") == []


async def test_429_honours_retry_after(tmp_path: Path, push: PushService) -> None:
    clock = FakeClock()
    async with running(push_config(tmp_path), clock) as api:
        await setup_user(api)
        await put_template(api)
        await subscribe(api, push)
        push.respond(None, 429, {"Retry-After": "600"})
        out = await send(api, {"user_id": "u1", "channel": "push"})
        await settle(api)
        dispatcher = api.services.extra["dispatcher"]
        clock.advance(590_000)
        assert await dispatcher.run_due() == 0  # Retry-After not over yet
        clock.advance(20_000)
        assert await dispatcher.run_due() == 1
        await wait_status(api, out["message_id"], "delivered")
        assert len(push.received) == 1


async def test_a_user_token_cannot_subscribe_someone_else(api: Api, push: PushService) -> None:
    sub, _ = make_subscription(push)
    token = (await api.post("/v1/users/u1/token")).json()["token"]
    r = await api.post("/v1/push/subscriptions", {"subscription": sub, "user_id": "u2"}, key=token)
    assert r.status_code == 403
    r = await api.post("/v1/push/subscriptions", {"subscription": sub}, key=None)
    assert r.status_code == 401
    r = await api.post("/v1/push/subscriptions", {"subscription": sub, "user_id": "u2"})  # secret key
    assert r.status_code == 201
    r = await api.post("/v1/push/subscriptions", {"subscription": {"endpoint": "ftp://x", "keys": sub["keys"]}},
                       key=token)
    assert r.status_code == 400 and "endpoint" in r.json()["error"]["message"]


async def test_vapid_key_needs_a_key(api: Api) -> None:
    assert (await api.get("/v1/push/vapid-public-key", key=None)).status_code == 401
    key = (await api.get("/v1/push/vapid-public-key", key=PUBLISHABLE)).json()["public_key"]
    assert len(key) == 87  # 65 bytes, base64url without padding
