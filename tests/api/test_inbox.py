"""The inbox REST API: newest first, read/unread/archived, badge counts, and no
cross-user reads, ever."""

from __future__ import annotations

from tests.conftest import Api
from tests.messaging_helpers import put_template, send, settle, setup_user


async def token_for(api: Api, user_id: str) -> str:
    return (await api.post(f"/v1/users/{user_id}/token")).json()["token"]  # type: ignore[no-any-return]


async def three_messages(api: Api, user_id: str = "u1") -> list[str]:
    await setup_user(api, user_id)
    await put_template(api)
    ids = [(await send(api, {"user_id": user_id, "channel": "in_app",
                             "variables": {"milestone": str(i)}}))["message_id"] for i in range(3)]
    await settle(api)
    return ids


async def test_list_read_archive_and_counts(api: Api) -> None:
    ids = await three_messages(api)
    t = await token_for(api, "u1")
    inbox = (await api.get("/v1/inbox", key=t)).json()
    assert sorted(m["id"] for m in inbox["messages"]) == sorted(ids)
    stamps = [m["created_at"] for m in inbox["messages"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert inbox["unread_count"] == 3
    assert set(inbox["messages"][0]) == {"id", "title", "body", "url", "data", "created_at", "read_at", "archived_at"}
    r = await api.post(f"/v1/inbox/{ids[0]}/read", key=t)
    assert r.status_code == 200 and r.json() == {"unread_count": 2}
    r = await api.post(f"/v1/inbox/{ids[1]}/archive", key=t)
    assert r.json() == {"unread_count": 1}
    visible = (await api.get("/v1/inbox", key=t)).json()["messages"]
    assert {m["id"] for m in visible} == {ids[2], ids[0]}
    everything = (await api.get("/v1/inbox?include_archived=true", key=t)).json()["messages"]
    assert len(everything) == 3
    assert [m["archived_at"] is not None for m in everything if m["id"] == ids[1]] == [True]
    assert (await api.post("/v1/inbox/read-all", key=t)).json() == {"unread_count": 0}
    # Reading counts as opening the message.
    m = (await api.get(f"/v1/messages/{ids[0]}")).json()
    assert m["status"] == "opened"


async def test_paging_with_next_before(api: Api) -> None:
    ids = await three_messages(api)
    t = await token_for(api, "u1")
    everything = [m["id"] for m in (await api.get("/v1/inbox", key=t)).json()["messages"]]
    p1 = (await api.get("/v1/inbox?limit=2", key=t)).json()
    p2 = (await api.get(f"/v1/inbox?limit=2&before={p1['next_before']}", key=t)).json()
    assert [m["id"] for m in p1["messages"] + p2["messages"]] == everything
    assert sorted(everything) == sorted(ids)
    assert p2["next_before"] is None


async def test_a_token_for_one_user_never_touches_another(api: Api) -> None:
    ids_a = await three_messages(api, "alice")
    await setup_user(api, "bob")
    bob = await token_for(api, "bob")
    assert (await api.get("/v1/inbox", key=bob)).json() == {"messages": [], "unread_count": 0, "next_before": None}
    assert (await api.post(f"/v1/inbox/{ids_a[0]}/read", key=bob)).status_code == 404
    assert (await api.post(f"/v1/inbox/{ids_a[0]}/archive", key=bob)).status_code == 404
    await api.post("/v1/inbox/read-all", key=bob)
    alice = await token_for(api, "alice")
    assert (await api.get("/v1/inbox", key=alice)).json()["unread_count"] == 3


async def test_bad_tokens_are_401(api: Api) -> None:
    for key in (None, "garbage", "a.b.c"):
        r = await api.get("/v1/inbox", key=key)
        assert r.status_code == 401
    # An API key is not a user token.
    assert (await api.get("/v1/inbox")).status_code == 401
