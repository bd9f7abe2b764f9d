"""The Python client (retenshund.client) against a real daemon process, and its
retry rules against a transport double."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from retenshund import tokens
from retenshund.client import AsyncRetenshun, Retenshun, RetenshunError
from tests.support.daemon import PUBLISHABLE, SECRET, Daemon, free_port, wait_until

SIGNING = "e2e-signing-secret-0123456789"
TEMPLATE = {"name": "Milestone", "in_app": {"title": "You reached {{ milestone }}", "body": "Well done {{ user.name }}"}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("client") / "data") as d:
        httpx.put(f"{d.url}/v1/templates/milestone", json=TEMPLATE,
                  headers={"Authorization": f"Bearer {SECRET}"}).raise_for_status()
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Retenshun]:
    with Retenshun(daemon.url, SECRET, signing_secret=SIGNING) as r:
        yield r


def test_identify_and_track_reach_the_profile_once(client: Retenshun) -> None:
    client.identify("ada", {"email": "ada@example.com", "name": "Ada", "plan": "pro"})
    client.track("ada", "report_generated", {"report_type": "weekly_summary"}, message_id="m-report-1")
    client.track("ada", "report_generated", {"report_type": "weekly_summary"}, message_id="m-report-1")
    user = client.get_user("ada")
    assert user["traits"] == {"email": "ada@example.com", "name": "Ada", "plan": "pro"}
    events = httpx.get(f"{client.host}/v1/users/ada/events", headers={"Authorization": f"Bearer {SECRET}"}).json()
    tracked = [e for e in events["events"] if e["type"] == "track"]
    assert [(e["event"], e["message_id"]) for e in tracked] == [("report_generated", "m-report-1")]
    assert tracked[0]["properties"] == {"report_type": "weekly_summary"}
    assert tracked[0]["context"]["library"]["name"] == "retenshun-python"


def test_group_and_alias_reach_the_profile(client: Retenshun, daemon: Daemon) -> None:
    httpx.post(f"{daemon.url}/v1/track", json={"anonymousId": "anon-77", "event": "visited_pricing"},
               auth=(PUBLISHABLE, "")).raise_for_status()
    client.alias("eve", "anon-77")
    client.group("eve", "acme", {"name": "Acme", "seats": 12})
    user = client.get_user("eve")
    assert [(g["group_id"], g["traits"]) for g in user["groups"]] == [("acme", {"name": "Acme", "seats": 12})]
    events = httpx.get(f"{daemon.url}/v1/users/eve/events", headers={"Authorization": f"Bearer {SECRET}"}).json()
    assert "visited_pricing" in [e["event"] for e in events["events"]]  # the anonymous history was merged


def test_send_is_idempotent_and_conflicts_are_errors(client: Retenshun) -> None:
    client.identify("bo", {"name": "Bo"})
    first = client.messages.send("bo", "milestone", channel="in_app", variables={"milestone": "10,000 messages"},
                                 idempotency_key="milestone-bo-10k")
    again = client.messages.send("bo", "milestone", channel="in_app", variables={"milestone": "10,000 messages"},
                                 idempotency_key="milestone-bo-10k")
    assert first["message_id"].startswith("msg_") and again == first
    message = wait_until(lambda: (m := client.messages.get(first["message_id"]))["status"] == "delivered" and m,
                         10, "the in-app message to be delivered")
    assert message["rendered"]["title"] == "You reached 10,000 messages"
    with pytest.raises(RetenshunError) as conflict:
        client.messages.send("bo", "milestone", channel="in_app", variables={"milestone": "other"},
                             idempotency_key="milestone-bo-10k")
    assert conflict.value.status == 409 and conflict.value.code == "idempotency_conflict"
    assert "Idempotency-Key" in conflict.value.message


def test_a_list_of_channels_returns_one_message_each(client: Retenshun) -> None:
    TEMPLATE_BOTH = {"name": "Both", "in_app": {"title": "t", "body": "b"}, "push": {"title": "t", "body": "b"}}
    httpx.put(f"{client.host}/v1/templates/both", json=TEMPLATE_BOTH,
              headers={"Authorization": f"Bearer {SECRET}"}).raise_for_status()
    r = client.messages.send("cy", "both", channel=["in_app", "push"])
    assert [m["channel"] for m in r["messages"]] == ["in_app", "push"]


def test_contract_errors_become_retenshun_errors(daemon: Daemon, client: Retenshun) -> None:
    with pytest.raises(RetenshunError) as missing:
        client.messages.send("ada", "no_such_template", channel="email")
    assert missing.value.status == 404 and missing.value.code == "template_not_found"
    with Retenshun(daemon.url, "sk_wrong_key_000000") as bad, pytest.raises(RetenshunError) as unauthorized:
        bad.track("ada", "x")
    assert unauthorized.value.status == 401 and unauthorized.value.code == "invalid_api_key"
    with pytest.raises(RetenshunError) as bad_input:
        client.messages.send("", "milestone", channel="in_app")
    assert bad_input.value.status == 400 and "user_id" in bad_input.value.message


def test_user_token_is_minted_locally_and_the_daemon_accepts_it(daemon: Daemon, client: Retenshun) -> None:
    token = client.user_token("ada", expires_in="1h")
    claims = tokens.verify(SIGNING, token)
    assert claims["sub"] == "ada" and claims["exp"] - claims["iat"] == 3600
    inbox = httpx.get(f"{daemon.url}/v1/inbox", headers={"Authorization": f"Bearer {token}"})
    assert inbox.status_code == 200 and "unread_count" in inbox.json()
    # Without the signing secret the client asks the daemon (one round trip).
    with Retenshun(daemon.url, SECRET) as remote:
        remote_token = remote.user_token("ada", expires_in=600)
    assert tokens.verify(SIGNING, remote_token)["sub"] == "ada"


def test_an_unreachable_daemon_is_a_network_error() -> None:
    with Retenshun(f"http://127.0.0.1:{free_port()}", SECRET, max_retries=0, timeout=2) as r, \
            pytest.raises(RetenshunError) as err:
        r.track("ada", "x")
    assert err.value.status == 0 and err.value.code == "network_error"


async def test_the_async_client_does_the_same(daemon: Daemon) -> None:
    async with AsyncRetenshun(daemon.url, SECRET, signing_secret=SIGNING) as r:
        await r.identify("dee", {"name": "Dee"})
        await r.track("dee", "signed_up", {"plan": "free"})
        sent = await r.messages.send("dee", "milestone", channel="in_app", variables={"milestone": "1"})
        assert sent["status"] in ("queued", "delivered")
        assert (await r.get_user("dee"))["traits"]["name"] == "Dee"
        assert tokens.verify(SIGNING, await r.user_token("dee"))["sub"] == "dee"
        with pytest.raises(RetenshunError) as err:
            await r.messages.send("dee", "nope", channel="in_app")
        assert err.value.code == "template_not_found"


# -- retries, against a transport double -----------------------------------------


def test_retries_repeat_the_same_request_so_nothing_happens_twice() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy"}})
        if len(seen) == 2:
            return httpx.Response(429, headers={"Retry-After": "0"},
                                  json={"error": {"code": "rate_limited", "message": "slow down"}})
        return httpx.Response(202, json={"message_id": "msg_1", "status": "queued"})

    with Retenshun("http://daemon", SECRET, transport=httpx.MockTransport(handler)) as r:
        assert r.messages.send("ada", "milestone", channel="in_app") == {"message_id": "msg_1", "status": "queued"}
    keys = {req.headers["idempotency-key"] for req in seen}
    assert len(seen) == 3 and len(keys) == 1 and next(iter(keys)).startswith("py_")
    assert len({req.content for req in seen}) == 1


def test_retries_give_up_with_the_last_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, headers={"Retry-After": "0"},
                              json={"error": {"code": "rate_limited", "message": "too many requests"}})

    transport = httpx.MockTransport(handler)
    with Retenshun("http://daemon", SECRET, max_retries=2, transport=transport) as r, \
            pytest.raises(RetenshunError) as err:
        r.track("ada", "x", message_id="same")
    assert calls == 3 and err.value.status == 429 and err.value.retry_after == 0


def test_client_errors_are_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        return httpx.Response(400, json={"error": {"code": "invalid_field", "message": "event: required"}})

    with Retenshun("http://daemon", SECRET, transport=httpx.MockTransport(handler)) as r, \
            pytest.raises(RetenshunError) as err:
        r.track("ada", "x")
    assert len(calls) == 1 and err.value.code == "invalid_field" and err.value.message == "event: required"
    assert calls[0]["userId"] == "ada" and calls[0]["messageId"]


def test_the_key_is_never_in_the_repr() -> None:
    r = Retenshun("http://daemon", SECRET)
    assert SECRET not in repr(r)
    r.close()
    with pytest.raises(ValueError):
        Retenshun("http://daemon", SECRET, signing_secret="short")

