"""The send API: idempotency, per-channel messages, status and history, preferences."""

from __future__ import annotations

import asyncio

from tests.conftest import Api
from tests.messaging_helpers import put_template, send, settle, setup_user, wait_status


async def test_in_app_send_is_delivered_into_the_inbox(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": "in_app"})
    assert out["status"] == "queued" and out["message_id"].startswith("msg_")
    m = await wait_status(api, out["message_id"], "delivered")
    assert [h["status"] for h in m["history"]] == ["queued", "delivered"]
    assert m["rendered"]["title"] == "You reached 10,000 messages"
    assert m["time_to_trigger_ms"] is not None and m["time_to_trigger_ms"] >= 0
    token = (await api.post("/v1/users/u1/token")).json()["token"]
    inbox = (await api.get("/v1/inbox", key=token)).json()
    assert inbox["unread_count"] == 1
    assert inbox["messages"][0]["id"] == out["message_id"]
    assert inbox["messages"][0]["data"] == {"kind": "milestone", "value": "10,000 messages"}


async def test_a_list_of_channels_makes_one_message_each(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": ["in_app", "push"]})
    assert [m["channel"] for m in out["messages"]] == ["in_app", "push"]
    assert len({m["message_id"] for m in out["messages"]}) == 2
    push = await wait_status(api, out["messages"][1]["message_id"], "suppressed")
    assert push["reason"].startswith("no address")


async def test_status_changes_are_events_in_the_users_stream(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": "in_app"})
    await wait_status(api, out["message_id"], "delivered")
    events = (await api.get("/v1/users/u1/events")).json()["events"]
    delivered = [e for e in events if e["event"] == "message_delivered"]
    assert len(delivered) == 1
    assert delivered[0]["properties"] == {"message_id": out["message_id"], "channel": "in_app",
                                          "template_id": "milestone"}


async def test_each_status_is_one_event_however_often_it_is_reached_again(api: Api) -> None:
    # Status events skip the messageId dedupe table: the status machine alone
    # must keep them once-only.
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": "in_app"})
    mid = out["message_id"]
    await wait_status(api, mid, "delivered")
    token = (await api.post("/v1/users/u1/token")).json()["token"]
    for path in (f"/v1/inbox/{mid}/read", f"/v1/inbox/{mid}/read", f"/v1/inbox/{mid}/archive"):
        assert (await api.post(path, {}, key=token)).status_code == 200
    await settle(api)
    names = [e["event"] for e in (await api.get("/v1/users/u1/events")).json()["events"]]
    assert names.count("message_delivered") == 1 and names.count("message_opened") == 1


async def test_idempotency_key_replays_the_first_answer(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    first = await send(api, {"user_id": "u1", "channel": "in_app"}, headers={"Idempotency-Key": "k1"})
    again = await api.post("/v1/messages/send", {"user_id": "u1", "channel": "in_app", "template_id": "milestone",
                                                 "variables": {"milestone": "10,000 messages"}},
                           headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.json() == first
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.post("/v1/messages/send", {"user_id": "u1", "channel": "in_app", "template_id": "milestone",
                                                 "variables": {"milestone": "something else"}},
                           headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    await settle(api)
    assert len((await api.get("/v1/users/u1/messages")).json()["messages"]) == 1


async def test_fifty_concurrent_sends_with_one_key_make_one_message_and_one_delivery(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    body = {"user_id": "u1", "channel": "in_app", "template_id": "milestone", "variables": {"milestone": "x"},
            "idempotency_key": "same"}
    answers = await asyncio.gather(*(api.post("/v1/messages/send", body) for _ in range(50)))
    assert {r.status_code for r in answers} == {202}
    assert len({r.json()["message_id"] for r in answers}) == 1
    await settle(api)
    assert len((await api.get("/v1/users/u1/messages")).json()["messages"]) == 1
    token = (await api.post("/v1/users/u1/token")).json()["token"]
    assert (await api.get("/v1/inbox", key=token)).json()["unread_count"] == 1


async def test_channel_opt_out_suppresses_but_transactional_ignores_category_opt_outs(api: Api) -> None:
    await setup_user(api)
    await put_template(api)  # category product_updates
    await put_template(api, "receipt", {"in_app": {"title": "Receipt"}})  # transactional
    await api.put("/v1/users/u1/preferences", {"categories": {"product_updates": False, "transactional": False}})
    a = await send(api, {"user_id": "u1", "channel": "in_app"})
    b = await send(api, {"user_id": "u1", "channel": "in_app", "template_id": "receipt"})
    blocked = await wait_status(api, a["message_id"], "suppressed")
    assert "category product_updates" in blocked["reason"]
    await wait_status(api, b["message_id"], "delivered")
    await api.put("/v1/users/u1/preferences", {"channels": {"in_app": False}})
    c = await send(api, {"user_id": "u1", "channel": "in_app", "template_id": "receipt"})
    assert "in_app turned off" in (await wait_status(api, c["message_id"], "suppressed"))["reason"]


async def test_send_validation(api: Api) -> None:
    await put_template(api, "push_only", {"push": {"title": "x"}})
    cases = [
        ({"user_id": "u1", "channel": "sms", "template_id": "push_only"}, 400, "channel"),
        ({"user_id": "u1", "channel": [], "template_id": "push_only"}, 400, "channel"),
        ({"user_id": "u1", "channel": "email", "template_id": "push_only"}, 422, "channel"),
        ({"user_id": "u1", "channel": "push", "template_id": "missing"}, 404, "template_id"),
        ({"user_id": "", "channel": "push", "template_id": "push_only"}, 400, "user_id"),
        ({"channel": "push", "template_id": "push_only"}, 400, "user_id"),
        ({"user_id": "u1", "channel": "push", "template_id": "push_only", "extra": 1}, 400, "extra"),
    ]
    for body, status, field in cases:
        r = await api.post("/v1/messages/send", body)
        assert r.status_code == status, (body, r.text)
        assert field in r.json()["error"]["message"], (body, r.text)


async def test_message_log_filters_and_unknown_ids(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    a = await send(api, {"user_id": "u1", "channel": "in_app"})
    await send(api, {"user_id": "u1", "channel": "push"})
    await settle(api)
    in_app = (await api.get("/v1/messages?channel=in_app")).json()["messages"]
    assert [m["message_id"] for m in in_app] == [a["message_id"]]
    assert len((await api.get("/v1/messages?status=suppressed")).json()["messages"]) == 1
    assert (await api.get("/v1/messages?status=lost")).status_code == 400
    assert (await api.get("/v1/messages/msg_nope")).status_code == 404


async def test_deleting_a_user_removes_their_messages_and_inbox(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": "in_app"})
    await wait_status(api, out["message_id"], "delivered")
    assert (await api.delete("/v1/users/u1")).status_code == 204
    assert (await api.get(f"/v1/messages/{out['message_id']}")).status_code == 404
    token = (await api.post("/v1/users/u1/token")).json()["token"]
    assert (await api.get("/v1/inbox", key=token)).json()["messages"] == []


async def test_metrics_count_outcomes_by_channel_and_time_to_trigger(api: Api) -> None:
    await setup_user(api)
    await put_template(api)
    out = await send(api, {"user_id": "u1", "channel": ["in_app", "push"]})
    await wait_status(api, out["messages"][0]["message_id"], "delivered")
    await wait_status(api, out["messages"][1]["message_id"], "suppressed")
    text = (await api.get("/metrics", key=None)).text
    assert 'retenshun_messages_total{channel="in_app",status="delivered"} 1.0' in text
    assert 'retenshun_messages_total{channel="push",status="suppressed"} 1.0' in text
    assert 'retenshun_time_to_trigger_seconds_count{channel="in_app"} 1.0' in text
    assert 'retenshun_time_to_trigger_seconds_bucket{channel="in_app",le="+Inf"} 1.0' in text
    ttt = [line for line in text.splitlines() if line.startswith("retenshun_time_to_trigger_seconds")]
    assert ttt and not [line for line in ttt if 'channel="push"' in line]  # no push was delivered
    assert "retenshun_store_commit_ops_count" in text
