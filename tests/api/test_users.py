"""The Users API: profile, events, delete, tokens, preferences."""

from __future__ import annotations

import time

from retenshund import tokens
from retenshund.clock import parse_iso
from tests.conftest import PUBLISHABLE, Api


async def test_profile_has_the_contract_fields(api: Api) -> None:
    await api.post("/v1/identify", {"userId": "u1", "traits": {"email": "a@x.io", "timezone": "Europe/Berlin"}},
                   key=PUBLISHABLE)
    r = await api.get("/v1/users/u1")
    assert r.status_code == 200
    body = r.json()
    assert {"user_id", "traits", "groups", "segments", "engagement", "created_at", "last_seen_at"} <= set(body)
    assert body["traits"]["timezone"] == "Europe/Berlin"
    assert body["created_at"].endswith("Z")


async def test_unknown_user_is_404(api: Api) -> None:
    r = await api.get("/v1/users/nobody")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_events_page_with_next_before(api: Api) -> None:
    await api.post("/v1/batch", {"batch": [{"type": "track", "userId": "u1", "event": f"e{i}"} for i in range(5)]},
                   key=PUBLISHABLE)
    r1 = (await api.get("/v1/users/u1/events?limit=2")).json()
    r2 = (await api.get(f"/v1/users/u1/events?limit=2&before={r1['next_before']}")).json()
    r3 = (await api.get(f"/v1/users/u1/events?limit=2&before={r2['next_before']}")).json()
    names = [e["event"] for e in r1["events"] + r2["events"] + r3["events"]]
    assert names == ["e4", "e3", "e2", "e1", "e0"]
    assert r3["next_before"] is None


async def test_delete_removes_the_user_entirely(api: Api) -> None:
    await api.post("/v1/identify", {"userId": "u1", "traits": {"email": "a@x.io"}}, key=PUBLISHABLE)
    r = await api.delete("/v1/users/u1")
    assert r.status_code == 204
    assert (await api.get("/v1/users/u1")).status_code == 404
    assert (await api.get("/v1/users/u1/events")).json()["events"] == []
    assert (await api.delete("/v1/users/u1")).status_code == 404


async def test_user_token_is_a_pinned_hs256_jwt_for_that_user(api: Api) -> None:
    r = await api.post("/v1/users/u1/token", {"expires_in": "1h"})
    assert r.status_code == 200
    token = r.json()["token"]
    claims = tokens.verify(api.services.signing_secret, token)
    assert claims["sub"] == "u1"
    assert 3500 <= claims["exp"] - time.time() <= 3700
    assert parse_iso(r.json()["expires_at"]) == claims["exp"] * 1000  # the token's own expiry, to the second


async def test_a_token_lives_at_least_a_second(api: Api) -> None:
    for short in ("500ms", "999ms"):
        r = await api.post("/v1/users/u1/token", {"expires_in": short})
        assert r.status_code == 400 and "expires_in" in r.json()["error"]["message"]
    claims = tokens.verify(api.services.signing_secret, (await api.post("/v1/users/u1/token", {"expires_in": "1s"})).json()["token"])
    assert claims["exp"] - claims["iat"] == 1


async def test_messages_list_is_empty_before_any_send(api: Api) -> None:
    r = await api.get("/v1/users/u1/messages")
    assert r.status_code == 200 and r.json() == {"messages": []}


async def test_preferences_have_one_shape_for_every_user(api: Api) -> None:
    empty = {"channels": {}, "categories": {}}
    assert (await api.get("/v1/users/nobody/preferences")).json() == {"user_id": "nobody", **empty}
    await api.post("/v1/identify", {"userId": "quiet"}, key=PUBLISHABLE)
    assert (await api.get("/v1/users/quiet/preferences")).json() == {"user_id": "quiet", **empty}
    assert (await api.get("/v1/users/quiet")).json()["preferences"] == empty
    r = await api.put("/v1/users/quiet/preferences", {"channels": {"email": False}})
    assert r.json() == {"user_id": "quiet", "channels": {"email": False}, "categories": {}}
    # null removes any name, even one no longer accepted (older versions let misspellings in)
    assert (await api.put("/v1/users/quiet/preferences", {"channels": {"emial": None}})).status_code == 200


async def test_preferences_round_trip(api: Api) -> None:
    r = await api.put("/v1/users/u1/preferences", {"channels": {"email": False}, "categories": {"marketing": False}})
    assert r.status_code == 200
    assert r.json()["channels"] == {"email": False}
    got = (await api.get("/v1/users/u1/preferences")).json()
    assert got["categories"] == {"marketing": False}


async def test_metrics_show_requests_ingestion_commits_and_bus_lag(api: Api) -> None:
    await api.post("/v1/batch", {"batch": [{"type": "track", "userId": "u1", "event": "e"} for _ in range(3)]},
                   key=PUBLISHABLE)
    text = (await api.get("/metrics", key=None)).text
    assert 'retenshun_events_ingested_total{type="track"} 3.0' in text
    assert "retenshun_store_commit_seconds_count" in text
    assert 'retenshun_http_requests_total{method="POST",route="/v1/batch",status="200"} 1.0' in text
    assert 'retenshun_bus_lag{subscriber="engine"}' in text


async def test_openapi_describes_every_route(api: Api) -> None:
    from starlette.routing import Mount, WebSocketRoute

    doc = (await api.get("/openapi.json", key=None)).json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for route in api.app.routes:
        if isinstance(route, Mount):
            continue
        methods = {"GET"} if isinstance(route, WebSocketRoute) else (route.methods or set()) - {"HEAD"}
        for method in methods:
            assert (method, route.path) in documented, (method, route.path)
    assert doc["openapi"].startswith("3.")
    assert "SegmentEvent" in doc["components"]["schemas"]


async def test_a_user_id_with_a_slash_is_reachable_percent_encoded(api: Api) -> None:
    """Ingestion takes any string as an id; the Users API must reach every user it
    holds (GDPR delete included), so a / sent as %2F stays part of the id."""
    await api.post("/v1/identify", {"userId": "org/42", "traits": {"plan": "pro"}}, key=PUBLISHABLE)
    await api.post("/v1/identify", {"userId": "org", "traits": {"plan": "free"}}, key=PUBLISHABLE)
    await api.post("/v1/track", {"userId": "org/42", "event": "opened"}, key=PUBLISHABLE)
    r = await api.get("/v1/users/org%2F42")
    assert r.status_code == 200 and r.json()["user_id"] == "org/42" and r.json()["traits"]["plan"] == "pro"
    assert [e["type"] for e in (await api.get("/v1/users/org%2F42/events")).json()["events"]] == ["track", "identify"]
    # Not to be confused with the sub-resources of user "org":
    assert (await api.get("/v1/users/org/42")).status_code == 404
    assert (await api.get("/v1/users/org%2Fevents")).status_code == 404  # a user id, not org's events
    assert [e["type"] for e in (await api.get("/v1/users/org/events")).json()["events"]] == ["identify"]
    assert (await api.post("/v1/users/org%2F42/token", {})).status_code == 200
    assert (await api.delete("/v1/users/org%2F42")).status_code == 204
    assert (await api.get("/v1/users/org%2F42")).status_code == 404
    assert (await api.get("/v1/users/org")).json()["traits"]["plan"] == "free"
    # Without an encoded slash, a path routes as before: decoded, with the trailing-slash redirect.
    assert [e["type"] for e in (await api.get("/v1/users/org/%65vents")).json()["events"]] == ["identify"]
    r = await api.get("/v1/users/org/")
    assert r.status_code == 307 and r.headers["location"].endswith("/v1/users/org")
