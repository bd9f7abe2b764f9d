"""Segment-compatible ingestion over HTTP."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from retenshund.clock import FakeClock, iso, parse_iso
from tests.conftest import PUBLISHABLE, SECRET, Api, make_config, running


async def events_of(api: Api, user: str) -> list[dict]:
    r = await api.get(f"/v1/users/{user}/events?limit=1000")
    assert r.status_code == 200, r.text
    return r.json()["events"]


async def test_track_with_each_auth_form(api: Api) -> None:
    basic = base64.b64encode(f"{PUBLISHABLE}:".encode()).decode()
    r1 = await api.http.post("/v1/track", json={"userId": "u1", "event": "a"},
                             headers={"Authorization": f"Basic {basic}"})
    r2 = await api.post("/v1/track", {"userId": "u1", "event": "b"}, key=PUBLISHABLE)
    r3 = await api.post("/v1/track", {"userId": "u1", "event": "c", "writeKey": PUBLISHABLE}, key=None)
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    assert r1.json() == {"success": True}
    assert sorted(e["event"] for e in await events_of(api, "u1")) == ["a", "b", "c"]


async def test_every_call_type_is_stored_with_its_fields(api: Api) -> None:
    k = PUBLISHABLE
    assert (await api.post("/v1/identify", {"userId": "u1", "traits": {"email": "a@x.io"}}, key=k)).status_code == 200
    assert (await api.post("/v1/page", {"userId": "u1", "name": "Pricing", "properties": {"path": "/p"}},
                           key=k)).status_code == 200
    assert (await api.post("/v1/screen", {"userId": "u1", "name": "Home"}, key=k)).status_code == 200
    assert (await api.post("/v1/group", {"userId": "u1", "groupId": "acme", "traits": {"seats": 5}},
                           key=k)).status_code == 200
    assert (await api.post("/v1/alias", {"userId": "u1", "previousId": "guest-1"}, key=k)).status_code == 200
    events = await events_of(api, "u1")
    assert [e["type"] for e in events] == ["alias", "group", "screen", "page", "identify"]
    assert events[3]["event"] == "Pricing" and events[3]["properties"] == {"path": "/p"}
    assert events[1]["group_id"] == "acme"
    user = (await api.get("/v1/users/u1")).json()
    assert user["traits"] == {"email": "a@x.io"}
    assert user["groups"][0]["group_id"] == "acme" and user["groups"][0]["traits"] == {"seats": 5}


async def test_batch_stores_valid_items_and_names_the_rejected_ones(api: Api) -> None:
    body = {"batch": [
        {"type": "track", "userId": "u1", "event": "ok1"},
        {"type": "track", "userId": "u1"},
        {"type": "identify", "traits": {"a": 1}},
        {"type": "bogus", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "ok2", "timestamp": "yesterday"},
        {"type": "track", "userId": "u1", "event": "ok3"},
    ]}
    r = await api.post("/v1/batch", body, key=PUBLISHABLE)
    assert r.status_code == 200
    out = r.json()
    assert out["success"] is True and out["accepted"] == 2
    assert [(x["index"], x["message"].split(":")[0]) for x in out["rejected"]] == [
        (1, "batch[1].event"), (2, "batch[2].userId"), (3, "batch[3].type"), (4, "batch[4].timestamp")]
    assert sorted(e["event"] for e in await events_of(api, "u1")) == ["ok1", "ok3"]


async def test_a_batch_with_nothing_valid_is_a_400(api: Api) -> None:
    r = await api.post("/v1/batch", {"batch": [{"type": "track"}]}, key=PUBLISHABLE)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_batch"
    assert "batch[0]" in r.json()["error"]["message"]


async def test_message_id_dedupe_is_exact(api: Api) -> None:
    for _ in range(3):
        r = await api.post("/v1/batch", {"batch": [
            {"type": "track", "userId": "u1", "event": "e", "messageId": f"m{i}"} for i in range(50)]},
            key=PUBLISHABLE)
        assert r.status_code == 200
    events = await events_of(api, "u1")
    assert sorted(e["message_id"] for e in events) == sorted(f"m{i}" for i in range(50))


async def test_missing_message_id_is_generated(api: Api) -> None:
    await api.post("/v1/track", {"userId": "u1", "event": "e"}, key=PUBLISHABLE)
    await api.post("/v1/track", {"userId": "u1", "event": "e"}, key=PUBLISHABLE)
    ids = [e["message_id"] for e in await events_of(api, "u1")]
    assert len(set(ids)) == 2 and all(ids)


async def test_gzip_bodies_are_accepted(api: Api) -> None:
    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u1", "event": "z"}]}).encode())
    r = await api.http.post("/v1/batch", content=body, headers={
        "Authorization": f"Bearer {PUBLISHABLE}", "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert [e["event"] for e in await events_of(api, "u1")] == ["z"]


async def test_gzip_in_any_case_and_in_several_members_is_read_whole(api: Api) -> None:
    """Content codings are case-insensitive, and a gzip body may be several
    members back to back (RFC 1952); bytes after the last member are an error."""
    text = json.dumps({"batch": [{"type": "track", "userId": "u2", "event": "a"},
                                 {"type": "track", "userId": "u2", "event": "b"}]}).encode()
    half = len(text) // 2
    headers = {"Authorization": f"Bearer {PUBLISHABLE}", "Content-Encoding": "GZIP"}
    r = await api.http.post("/v1/batch", content=gzip.compress(text[:half]) + gzip.compress(text[half:]),
                            headers=headers)
    assert r.status_code == 200, r.text
    assert sorted(e["event"] for e in await events_of(api, "u2")) == ["a", "b"]
    r = await api.http.post("/v1/batch", content=gzip.compress(text) + b"trailing junk", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_gzip"
    # Each member's leftover is copied: thousands of empty ones would cost quadratic time.
    r = await api.http.post("/v1/batch", content=gzip.compress(text) + gzip.compress(b"") * 20_000, headers=headers)
    assert r.status_code == 400 and "members" in r.json()["error"]["message"]


async def test_a_sent_at_of_the_epoch_still_corrects_the_clock(tmp_path: Path) -> None:
    clock = FakeClock(1_780_000_000_000)
    async with running(make_config(tmp_path / "data"), clock=clock) as api:
        r = await api.post("/v1/track", {"userId": "u3", "event": "e", "timestamp": "1970-01-01T00:00:00Z",
                                         "sentAt": "1970-01-01T00:00:00.000Z"}, key=PUBLISHABLE)
        assert r.status_code == 200
        [e] = await events_of(api, "u3")
        assert parse_iso(e["timestamp"]) == clock.now_ms()  # sent the moment it happened: now


async def test_a_gzip_bomb_is_refused_as_too_large(api: Api) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    assert len(bomb) < 32_000
    r = await api.http.post("/v1/batch", content=bomb, headers={
        "Authorization": f"Bearer {PUBLISHABLE}", "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


async def test_size_limits_are_checked_before_parsing(api: Api) -> None:
    big = {"userId": "u1", "event": "e", "properties": {"x": "a" * 40_000}}
    r = await api.post("/v1/track", big, key=PUBLISHABLE)
    assert r.status_code == 413
    r = await api.http.post("/v1/batch", content=b"{" + b" " * 600_000,
                            headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert r.status_code == 413
    r = await api.post("/v1/batch", {"batch": [big, {"type": "track", "userId": "u1", "event": "small"}]},
                       key=PUBLISHABLE)
    assert r.status_code == 200
    assert r.json()["rejected"][0]["code"] == "event_too_large"


async def test_timestamps_are_corrected_for_client_clock_skew(tmp_path: Path) -> None:
    clock = FakeClock(parse_iso("2026-11-26T08:00:00Z"))
    async with running(make_config(tmp_path / "d"), clock) as api:
        # The client's clock is 1 h fast: it says it sent at 09:00:05 an event from 09:00:00.
        r = await api.post("/v1/track", {"userId": "u1", "event": "e", "timestamp": "2026-11-26T09:00:00Z",
                                         "sentAt": "2026-11-26T09:00:05Z"}, key=PUBLISHABLE)
        assert r.status_code == 200
        r = await api.post("/v1/track", {"userId": "u1", "event": "f"}, key=PUBLISHABLE)
        events = {e["event"]: e for e in await events_of(api, "u1")}
        assert events["e"]["timestamp"] == "2026-11-26T07:59:55.000Z"
        assert events["e"]["received_at"] == iso(clock.now_ms())
        assert events["f"]["timestamp"] == "2026-11-26T08:00:00.000Z"


async def test_batch_level_sent_at_and_context_apply_to_items(tmp_path: Path) -> None:
    clock = FakeClock(parse_iso("2026-11-26T08:00:00Z"))
    async with running(make_config(tmp_path / "d"), clock) as api:
        r = await api.post("/v1/batch", {
            "sentAt": "2026-11-26T07:00:10Z", "context": {"library": {"name": "x"}},
            "batch": [{"type": "track", "userId": "u1", "event": "e", "timestamp": "2026-11-26T07:00:00Z",
                       "context": {"ip": "1.2.3.4"}}]}, key=PUBLISHABLE)
        assert r.status_code == 200
        [e] = await events_of(api, "u1")
        assert e["timestamp"] == "2026-11-26T07:59:50.000Z"
        assert e["context"] == {"library": {"name": "x"}, "ip": "1.2.3.4"}


async def test_numeric_ids_are_stored_as_strings(api: Api) -> None:
    r = await api.post("/v1/track", {"userId": 42, "event": "e"}, key=PUBLISHABLE)
    assert r.status_code == 200
    assert (await api.get("/v1/users/42")).json()["user_id"] == "42"


async def test_secret_keys_can_ingest_too(api: Api) -> None:
    assert (await api.post("/v1/track", {"userId": "u1", "event": "e"}, key=SECRET)).status_code == 200


async def test_ingestion_is_counted_in_the_request_metrics(api: Api) -> None:
    """Ingestion skips the router (api.ingest.FastPath) but not the metrics."""
    await api.post("/v1/track", {"userId": "u1", "event": "a"}, key=PUBLISHABLE)
    await api.post("/v1/track", {"userId": "u1"}, key=PUBLISHABLE)  # no event: 400
    text = (await api.http.get("/metrics")).text
    assert 'retenshun_http_requests_total{method="POST",route="/v1/track",status="200"} 1.0' in text
    assert 'retenshun_http_requests_total{method="POST",route="/v1/track",status="400"} 1.0' in text
    assert 'retenshun_http_request_seconds_count{route="/v1/track"} 2.0' in text
    assert 'retenshun_events_ingested_total{type="track"} 1.0' in text


async def test_ingestion_errors_have_the_contract_shape(api: Api) -> None:
    r = await api.post("/v1/track", {"userId": "u1"}, key=PUBLISHABLE)
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "invalid_field", "message": "event: required for track (the event's name)"}}
    r = await api.post("/v1/track", {"userId": "u1", "event": "a"}, key="pk_nope")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_browser_ingestion_gets_cors_headers(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", server={"allowed_origins": ["https://app.example"]})
    async with running(config) as api:
        r = await api.http.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u1", "event": "a"}]},
                                headers={**api._auth(PUBLISHABLE), "Origin": "https://app.example"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        # So that the browser lets the SDK read how long to back off after a 429.
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()
        r = await api.http.post("/v1/track", json={"userId": "u1", "event": "b"},
                                headers={**api._auth(PUBLISHABLE), "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        # A server-side call (no Origin) needs no CORS headers.
        r = await api.post("/v1/track", {"userId": "u1", "event": "c"}, key=PUBLISHABLE)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert sorted(e["event"] for e in await events_of(api, "u1")) == ["a", "b", "c"]


async def test_an_empty_user_id_beside_an_anonymous_id_counts_as_none(api: Api) -> None:
    r = await api.post("/v1/track", {"userId": "", "anonymousId": "anon-1", "event": "viewed"}, key=PUBLISHABLE)
    assert r.status_code == 200, r.text
    stored = await api.services.store.events_after(0, 10)
    assert [(e.user_id, e.anonymous_id) for e in stored] == [(None, "anon-1")]


async def test_a_refused_cors_preflight_has_the_error_shape(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", server={"allowed_origins": ["https://app.example"]})
    async with running(config) as api:
        for origin, method in (("https://evil.example", "POST"), ("https://app.example", "PATCH")):
            r = await api.http.options("/v1/track", headers={"Origin": origin, "Access-Control-Request-Method": method})
            assert r.status_code == 400 and r.headers["content-type"] == "application/json"
            assert r.json()["error"]["code"] == "cors_not_allowed"
        r = await api.http.options("/v1/track", headers={"Origin": "https://app.example",
                                                          "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"


async def test_a_client_that_leaves_mid_body_is_not_an_error(tmp_path: Path, caplog: Any) -> None:
    """On the routed path (a browser's call, CORS on) as on the fast one."""
    config = make_config(tmp_path / "data", server={"allowed_origins": ["https://app.example"]})
    async with running(config) as api:
        sent: list[dict[str, Any]] = []
        parts = [{"type": "http.request", "body": b'{"userId": "u", ', "more_body": True},
                 {"type": "http.disconnect"}]

        async def receive() -> dict[str, Any]:
            return parts.pop(0) if parts else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/track", "raw_path": b"/v1/track", "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8470),
                 "headers": [(b"origin", b"https://app.example"), (b"content-type", b"application/json"),
                             (b"authorization", f"Bearer {PUBLISHABLE}".encode())]}
        with caplog.at_level("ERROR"):
            await api.app(scope, receive, send)
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
        assert sent and sent[0]["status"] != 500
