"""Dashboard sign-in, the session cookie as a secret key (CSRF-safe), the live
events WebSocket, the draft preview and user search."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from retenshund import dashboard_session
from retenshund.clock import FakeClock
from retenshund.credentials import key_hash, key_id
from tests.conftest import PUBLISHABLE, SECRET, Api, make_config, running
from tests.support.daemon import PUBLISHABLE as E2E_PUBLISHABLE
from tests.support.daemon import SECRET as E2E_SECRET
from tests.support.daemon import Daemon

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def dash(tmp_path: Path) -> AsyncIterator[Api]:
    clock = FakeClock()
    async with running(make_config(tmp_path / "data", auth={"admin_password": PASSWORD}), clock) as a:
        yield a


async def login(api: Api, secret: str = SECRET, **kw: Any) -> dict[str, Any]:
    r = await api.http.post("/dashboard/login", json={"secret": secret}, **kw)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_signing_in_with_a_secret_key_sets_a_strict_httponly_cookie(dash: Api) -> None:
    r = await dash.http.post("/dashboard/login", json={"secret": SECRET})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(dashboard_session.COOKIE + "=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "max-age=43200" in lowered
    assert "secure" not in lowered  # plain http here
    body = r.json()
    assert body["method"] == "secret_key" and body["csrf_token"] and body["expires_at"].endswith("Z")
    assert SECRET not in cookie  # the key itself never goes into the cookie
    assert (await dash.http.get("/dashboard/session")).json()["csrf_token"] == body["csrf_token"]


async def test_the_cookie_is_secure_when_served_over_https(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", server={"public_url": "https://engage.example.com"})
    async with running(config) as api:
        r = await api.http.post("/dashboard/login", json={"secret": SECRET})
        assert "secure" in r.headers["set-cookie"].lower()


async def test_the_session_reads_the_api_and_changes_need_the_csrf_token(dash: Api) -> None:
    session = await login(dash)
    assert (await dash.http.get("/v1/templates")).status_code == 200
    template = {"name": "Hi", "in_app": {"title": "Hi {{ user.name }}", "body": "b"}}
    r = await dash.http.put("/v1/templates/hi", json=template)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_token_invalid"
    r = await dash.http.put("/v1/templates/hi", json=template, headers={"X-CSRF-Token": "x" * 43})
    assert r.status_code == 403
    r = await dash.http.put("/v1/templates/hi", json=template, headers={"X-CSRF-Token": session["csrf_token"]})
    assert r.status_code == 201


async def test_no_cookie_and_no_key_is_still_401(dash: Api) -> None:
    r = await dash.http.get("/v1/templates")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


async def test_a_key_header_wins_over_a_cookie(dash: Api) -> None:
    dash.http.cookies.set(dashboard_session.COOKIE, "v1.forged.cookie")
    assert (await dash.get("/v1/templates")).status_code == 200  # Bearer sk_: the key path, as before
    assert (await dash.get("/v1/templates", key=PUBLISHABLE)).status_code == 403
    assert (await dash.http.get("/v1/templates")).status_code == 401  # the forged cookie alone


async def test_a_tampered_or_expired_session_is_refused(dash: Api) -> None:
    await login(dash)
    good = dash.http.cookies[dashboard_session.COOKIE]
    version, _, mac = good.split(".")
    forged = dashboard_session._b64(b'{"m":"admin_password","h":"","n":"x","exp":99999999999}')
    dash.http.cookies.set(dashboard_session.COOKIE, f"{version}.{forged}.{mac}")
    r = await dash.http.get("/v1/templates")
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_expired"
    dash.http.cookies.set(dashboard_session.COOKIE, good)
    assert (await dash.http.get("/v1/templates")).status_code == 200
    assert dash.clock is not None
    dash.clock.advance(12 * 3600 * 1000 + 1000)
    assert (await dash.http.get("/v1/templates")).status_code == 401
    assert (await dash.http.get("/dashboard/session")).json() == {"signed_in": False}


async def test_admin_password_signs_in_and_wrong_secrets_do_not(dash: Api) -> None:
    assert (await login(dash, PASSWORD))["method"] == "admin_password"
    assert (await dash.http.get("/v1/templates")).status_code == 200
    for wrong in ("nope", PUBLISHABLE, "sk_not_a_key", PASSWORD + "x"):
        r = await dash.http.post("/dashboard/login", json={"secret": wrong})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials", wrong


async def test_no_admin_password_means_no_password_sign_in(api: Api) -> None:
    r = await api.http.post("/dashboard/login", json={"secret": ""})
    assert r.status_code == 401


async def test_repeated_failures_are_throttled(dash: Api) -> None:
    for _ in range(10):
        assert (await dash.http.post("/dashboard/login", json={"secret": "guess"})).status_code == 401
    r = await dash.http.post("/dashboard/login", json={"secret": SECRET})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


async def test_sign_in_from_another_origin_is_refused(dash: Api) -> None:
    r = await dash.http.post("/dashboard/login", json={"secret": SECRET}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = await dash.http.post("/dashboard/login", json={"secret": SECRET}, headers={"Origin": "http://test"})
    assert r.status_code == 200


async def test_revoking_the_key_ends_its_sessions(dash: Api) -> None:
    store_key = "sk_live_from_the_store_000001"
    await dash.services.store.add_api_key(key_id(store_key), "secret", key_hash(store_key), "sk_live…0001", "t", 0)
    await login(dash, store_key)
    assert (await dash.http.get("/v1/templates")).status_code == 200
    await dash.services.store.revoke_api_key(key_id(store_key), 1)
    assert (await dash.http.get("/v1/templates")).status_code == 401


async def test_logout_clears_the_cookie(dash: Api) -> None:
    await login(dash)
    r = await dash.http.post("/dashboard/logout")
    assert r.status_code == 204
    assert "max-age=0" in r.headers["set-cookie"].lower()
    assert (await dash.http.get("/v1/templates")).status_code == 401


async def test_draft_preview_renders_unsaved_edits_for_a_real_user(dash: Api) -> None:
    session = await login(dash)
    await dash.post("/v1/identify", {"userId": "ada", "traits": {"name": "Ada"}}, key=PUBLISHABLE)
    headers = {"X-CSRF-Token": session["csrf_token"]}
    draft = {"name": "d", "push": {"title": "Hi {{ user.name }}", "body": "card {{ event.last4 }}", "url": "/x"}}
    r = await dash.http.post("/dashboard/templates/preview", headers=headers, json={
        "template": draft, "channel": "push", "user_id": "ada", "event": {"last4": "4242"}})
    assert r.status_code == 200, r.text
    assert r.json()["rendered"]["title"] == "Hi Ada" and r.json()["rendered"]["body"] == "card 4242"
    bad = {"name": "d", "push": {"title": "{% if %}", "body": "b"}}
    r = await dash.http.post("/dashboard/templates/preview", headers=headers,
                             json={"template": bad, "channel": "push"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("push.title")
    r = await dash.http.post("/dashboard/templates/preview", json={"template": draft, "channel": "push"})
    assert r.status_code == 403  # no CSRF token


async def test_user_search_is_a_prefix_in_id_order_with_paging(api: Api) -> None:
    ids = ["ada", "adam", "adele", "bob", "ad"]
    await api.post("/v1/batch", {"batch": [{"type": "identify", "userId": u, "traits": {"n": u}} for u in ids]},
                   key=PUBLISHABLE)
    await api.post("/v1/track", {"anonymousId": "anon-1", "event": "x"}, key=PUBLISHABLE)
    body = (await api.get("/v1/users?query=ad")).json()
    assert [u["user_id"] for u in body["users"]] == ["ad", "ada", "adam", "adele"]
    assert body["next_after"] is None and body["users"][1]["traits"] == {"n": "ada"}
    page1 = (await api.get("/v1/users?query=ad&limit=2")).json()
    page2 = (await api.get(f"/v1/users?query=ad&limit=2&after={page1['next_after']}")).json()
    assert [u["user_id"] for u in page1["users"] + page2["users"]] == ["ad", "ada", "adam", "adele"]
    everyone = (await api.get("/v1/users")).json()["users"]
    assert [u["user_id"] for u in everyone] == sorted(ids)  # anonymous profiles are not listed
    assert (await api.get("/v1/users?query=zz")).json() == {"users": [], "next_after": None}
    assert (await api.get("/v1/users", key=PUBLISHABLE)).status_code == 403


# -- the live events WebSocket (a real daemon process) ----------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("dash-ws") / "data") as d:
        yield d


def ws_url(d: Daemon, query: str = "") -> str:
    return d.url.replace("http://", "ws://") + "/dashboard/events/ws" + query


def session_cookie(d: Daemon) -> str:
    r = httpx.post(d.url + "/dashboard/login", json={"secret": E2E_SECRET})
    assert r.status_code == 200
    return f"{dashboard_session.COOKIE}={r.cookies[dashboard_session.COOKIE]}"


def track(d: Daemon, user_id: str, event: str, **properties: Any) -> None:
    r = httpx.post(d.url + "/v1/track", json={"userId": user_id, "event": event, "properties": properties},
                   auth=(E2E_PUBLISHABLE, ""))
    assert r.status_code == 200


@pytest.mark.e2e
def test_live_events_stream_committed_events_to_a_signed_in_page(daemon: Daemon) -> None:
    track(daemon, "u1", "before")
    headers = {"Cookie": session_cookie(daemon), "Origin": daemon.url}
    with connect(ws_url(daemon, "?backlog=1"), additional_headers=headers, open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello"
        assert sum(n for _, n in hello["rate"]["minutes"]) >= 1
        backlog = json.loads(ws.recv(timeout=5))
        assert backlog["backlog"] is True and [e["event"] for e in backlog["events"]] == ["before"]
        track(daemon, "u2", "report_generated", kind="weekly")
        frame = json.loads(ws.recv(timeout=5))
        assert frame["type"] == "events" and frame["count"] == 1
        event = frame["events"][0]
        assert event["event"] == "report_generated" and event["user_id"] == "u2"
        assert event["properties"] == {"kind": "weekly"}
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}


@pytest.mark.e2e
def test_live_events_need_a_session_and_the_same_origin(daemon: Daemon) -> None:
    for headers, code in (({"Origin": daemon.url}, 4401),
                          ({"Origin": "https://evil.example", "Cookie": session_cookie(daemon)}, 4403),
                          ({"Origin": daemon.url, "Cookie": f"{dashboard_session.COOKIE}=v1.forged.x"}, 4401)):
        with connect(ws_url(daemon), additional_headers=headers, open_timeout=5) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
