"""Bad input of every kind gets the contract's error shape and status, never a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import PUBLISHABLE, SECRET, Api, make_config, running


def assert_error(r, status: int, code: str | None = None, mentions: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"] and "Traceback" not in r.text
    if code:
        assert body["error"]["code"] == code
    if mentions:
        assert mentions in body["error"]["message"]


@pytest.mark.parametrize("body, mentions", [
    (b"{not json", "body"),
    (b"[1,2]", "body"),
    (b'"text"', "body"),
    (b'{"userId": "u1"}', "event"),
    (b'{"userId": "u1", "event": 5}', "event"),
    (b'{"userId": true, "event": "x"}', "userId"),
    (b'{"event": "x"}', "userId"),
    (b'{"userId": "u1", "event": "x", "properties": [1]}', "properties"),
    (b'{"userId": "u1", "event": "x", "timestamp": "not a time"}', "timestamp"),
    (b'{"userId": "", "event": "x"}', "userId"),
    (b'{"userId": "u1", "event": "' + b"x" * 300 + b'"}', "event"),
    (b"", "body"),
])
async def test_bad_track_bodies_are_400_naming_the_field(api: Api, body: bytes, mentions: str) -> None:
    r = await api.http.post("/v1/track", content=body, headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert_error(r, 400, mentions=mentions)


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("path, body, code, mentions", [
    ("/v1/track", b'{"userId": "z\xff", "event": "x"}', "invalid_json", "UTF-8"),
    ("/v1/identify", b'{"userId": "z\xff"}', "invalid_json", "UTF-8"),
    ("/v1/batch", b'{"batch": [{"type": "track", "userId": "z\xff", "event": "x"}]}', "invalid_batch", "UTF-8"),
    ("/v1/track", b'{"userId": "u", "event": "x", "properties": {"a": ' + DEEP + b"}}", "invalid_json", "nested"),
    # The body is level 1, properties 2, the arrays in "a" 3 to 65.
    ("/v1/track", b'{"userId": "u", "event": "x", "properties": {"a": ' + b"[" * 63 + b"]" * 63 + b"}}",
     "invalid_json", "at most 64 levels"),
    ("/v1/batch", b'{"batch": [], "context": {"a": ' + DEEP + b"}}", "invalid_json", "nested"),
    # Deeper than the decoder can even skip: the batch cannot be cut into items.
    ("/v1/batch", b'{"batch": [{"type": "track", "properties": ' + DEEP + b"}]}", "invalid_json", "nested"),
    ("/v1/batch", b"{}", "invalid_field", "batch: required"),
    ("/v1/track", b"[1, 2]", "invalid_field", "body: Expected `object`, got `array`"),
])
async def test_bytes_no_decoder_expects_are_400_not_500(api: Api, path: str, body: bytes, code: str,
                                                         mentions: str) -> None:
    """Not UTF-8, nested past 64 levels (or deeper than Python's stack), or JSON of
    the wrong shape: each is named, and well-formed JSON is never called invalid."""
    r = await api.http.post(path, content=body, headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert_error(r, 400, code, mentions)


async def test_64_levels_are_accepted_and_65_are_not(api: Api) -> None:
    def body(levels: int) -> bytes:  # the body and properties are two levels; every array one more
        return (b'{"userId": "u", "event": "x", "properties": {"a": ' + b"[" * (levels - 2) + b"]" * (levels - 2)
                + b"}}")

    r = await api.http.post("/v1/track", content=body(64), headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert r.status_code == 200, r.text
    r = await api.http.post("/v1/track", content=body(65), headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert_error(r, 400, "invalid_json", "at most 64 levels")


async def test_a_batch_context_is_held_to_the_depth_limit_after_the_key(api: Api) -> None:
    """Walking a deep context costs time: a caller without a valid key gets its
    401 first, one with a key the depth error naming the context."""
    body = (b'{"batch": [{"type": "track", "userId": "u", "event": "x"}], "context": {"a": '
            + b"[" * 100 + b"]" * 100 + b"}}")
    r = await api.http.post("/v1/batch", content=body)
    assert_error(r, 401, "missing_api_key")
    r = await api.http.post("/v1/batch", content=body, headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert_error(r, 400, "invalid_json", "context: nested too deeply")


async def test_a_batch_item_that_is_not_utf8_or_too_deep_is_rejected_alone(api: Api) -> None:
    body = (b'{"batch": [{"type": "track", "userId": "u", "event": "ok"},'
            b' {"type": "track", "userId": "u\xfe", "event": "x"},'
            b' {"type": "track", "userId": "u", "event": "x", "properties": {"p": '
            + b"[" * 100 + b"]" * 100 + b"}}]}")
    r = await api.http.post("/v1/batch", content=body, headers={"Authorization": f"Bearer {PUBLISHABLE}"})
    assert r.status_code == 200, r.text
    rejected = r.json()["rejected"]
    assert [(x["index"], x["code"]) for x in rejected] == [(1, "invalid_json"), (2, "invalid_json")]
    assert "batch[1]" in rejected[0]["message"] and "batch[2]" in rejected[1]["message"]


async def test_other_routes_refuse_bad_bytes_and_depth_too(api: Api) -> None:
    r = await api.http.put("/v1/users/u/preferences", content=b'{"channels": {"email\xff": true}}',
                           headers={"Authorization": f"Bearer {SECRET}"})
    assert_error(r, 400, "invalid_json", "UTF-8")
    for depth in (100, 5000):
        r = await api.http.post("/v1/messages/send", headers={"Authorization": f"Bearer {SECRET}"},
                                content=b'{"user_id": "u", "channel": "inapp", "template_id": "t", "variables": {"v": '
                                + b"[" * depth + b"]" * depth + b"}}")
        assert_error(r, 400, "invalid_json", "nested")


@pytest.mark.parametrize("fields, mentions", [
    ({"timestamp": "2000-01-01T00:00:00Z", "sentAt": "9999-01-01T00:00:00Z"}, "sentAt"),
    ({"timestamp": "9999-12-31T00:00:00Z", "sentAt": "2000-01-01T00:00:00Z"}, "sentAt"),
    ({"timestamp": "1969-12-31T23:59:59Z"}, "timestamp"),
])
async def test_a_time_outside_1970_to_9999_is_refused_even_after_skew_correction(
        api: Api, fields: dict[str, str], mentions: str) -> None:
    """A publishable key is public: an event whose corrected time no datetime can
    hold would otherwise have broken the user's history for good."""
    r = await api.post("/v1/track", {"userId": "poison", "event": "x", **fields}, key=PUBLISHABLE)
    assert_error(r, 400, "invalid_field", mentions)
    assert (await api.get("/v1/users/poison/events")).status_code == 200


async def test_a_paging_cursor_past_64_bits_is_400(api: Api) -> None:
    for before in ("99999999999999999999999", "-1", "0"):
        assert_error(await api.get(f"/v1/users/u/events?before={before}"), 400, "invalid_field", "before")


async def test_batch_must_be_a_list(api: Api) -> None:
    r = await api.post("/v1/batch", {"batch": {"type": "track"}}, key=PUBLISHABLE)
    assert_error(r, 400, "invalid_field", "batch")
    r = await api.post("/v1/batch", {"batch": []}, key=PUBLISHABLE)
    assert_error(r, 400, "invalid_field", "batch")


async def test_group_and_alias_need_their_ids(api: Api) -> None:
    assert_error(await api.post("/v1/group", {"userId": "u1"}, key=PUBLISHABLE), 400, mentions="groupId")
    assert_error(await api.post("/v1/alias", {"userId": "u1"}, key=PUBLISHABLE), 400, mentions="previousId")


async def test_missing_and_bad_keys(api: Api) -> None:
    assert_error(await api.post("/v1/track", {"userId": "u", "event": "e"}, key=None), 401, "missing_api_key")
    assert_error(await api.post("/v1/track", {"userId": "u", "event": "e"}, key="pk_wrong"), 401, "invalid_api_key")
    r = await api.http.post("/v1/track", json={"userId": "u", "event": "e"},
                            headers={"Authorization": "Basic !!!notbase64"})
    assert_error(r, 401, "invalid_authorization")
    r = await api.http.post("/v1/track", json={"userId": "u", "event": "e"},
                            headers={"Authorization": "Digest abc"})
    assert_error(r, 401, "invalid_authorization")


async def test_publishable_key_on_a_secret_route_is_403(api: Api) -> None:
    assert_error(await api.get("/v1/users/u1", key=PUBLISHABLE), 403, "forbidden")
    assert_error(await api.post("/v1/users/u1/token", key=PUBLISHABLE), 403, "forbidden")
    assert_error(await api.delete("/v1/users/u1", key=PUBLISHABLE), 403, "forbidden")


async def test_unknown_routes_and_methods(api: Api) -> None:
    assert_error(await api.get("/v1/nothing-here"), 404, "not_found")
    assert_error(await api.get("/v1/track"), 405, "method_not_allowed")


async def test_bad_query_parameters(api: Api) -> None:
    assert_error(await api.get("/v1/users/u1/events?limit=5000"), 400, mentions="limit")
    assert_error(await api.get("/v1/users/u1/events?limit=abc"), 400, mentions="limit")
    assert_error(await api.get("/v1/users/u1/events?before=xyz"), 400, mentions="before")


async def test_bad_preferences_and_tokens(api: Api) -> None:
    assert_error(await api.put("/v1/users/u1/preferences", {"channels": {"email": "no"}}), 400, mentions="channels")
    assert_error(await api.put("/v1/users/u1/preferences", {"colour": "red"}), 400)
    assert_error(await api.put("/v1/users/u1/preferences", {}), 400)
    assert_error(await api.post("/v1/users/u1/token", {"expires_in": "forever"}), 400, mentions="expires_in")
    # A misspelt field is named, not ignored (the token would silently live the default 24 h).
    assert_error(await api.post("/v1/users/u1/token", {"ttl": "1h"}), 400, mentions="ttl")
    assert_error(await api.put("/v1/users/u1/preferences", {"channels": {"emial": False}}), 400,
                 "invalid_field", "channels.emial")


async def test_a_publishable_key_is_limited_per_client_address_too(tmp_path: Path) -> None:
    # The key is in every visitor's browser: one address running hot is refused
    # while the app's other visitors go on.
    config = make_config(tmp_path / "d", limits={"publishable_rate": 1000.0, "publishable_client_rate": 1.0})
    async with running(config) as api:
        statuses = [(await api.post("/v1/track", {"userId": "u", "event": "e"}, key=PUBLISHABLE)).status_code
                    for _ in range(4)]
        assert statuses[:2] == [200, 200] and statuses[-1] == 429
        r = await api.post("/v1/track", {"userId": "u", "event": "e"}, key=PUBLISHABLE)
        assert_error(r, 429, "rate_limited")
        assert "your address" in r.json()["error"]["message"]
        other = httpx.ASGITransport(app=api.app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=other, base_url="http://test") as visitor:
            r = await visitor.post("/v1/batch", json={"batch": [{"type": "track", "userId": "v", "event": "e"}]},
                                   headers={"Authorization": f"Bearer {PUBLISHABLE}"})
            assert r.status_code == 200


async def test_rate_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    config = make_config(tmp_path / "d", limits={"publishable_rate": 1.0})
    async with running(config) as api:
        statuses = [(await api.post("/v1/track", {"userId": "u", "event": "e"}, key=PUBLISHABLE)).status_code
                    for _ in range(4)]
        assert statuses[:2] == [200, 200] and 429 in statuses
        r = await api.post("/v1/track", {"userId": "u", "event": "e"}, key=PUBLISHABLE)
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        # Secret keys are not limited by default.
        for _ in range(5):
            assert (await api.post("/v1/track", {"userId": "u", "event": "e"}, key=SECRET)).status_code == 200
