"""The real Segment Python SDK (``segment-analytics-python``) against a real daemon.

The SDK is pointed at ``retenshund`` with the publishable key as its write key
and gzip on, in both of its modes (a background consumer that batches, and
``sync_mode``, one POST /v1/batch per call). Everything it sent is then read
back through the HTTP API with the secret key: each call stored once, with its
traits, properties and their JSON types, and the anonymous histories (alias and
identify-with-both-ids) merged into the known user."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from tests.support.daemon import PUBLISHABLE, SECRET, Daemon

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("segment") / "data") as d:
        yield d


class Recorder:
    """Wraps the SDK client and keeps what each call enqueued, in order."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
            ok, msg = method(*args, **kwargs)
            assert ok, f"the SDK refused to enqueue {name}: {msg}"
            self.sent.append(msg)
            return msg

        return call


def _get(daemon: Daemon, path: str, **params: Any) -> httpx.Response:
    return httpx.get(daemon.url + path, params=params, headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)


def _all_events(daemon: Daemon, user_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 3}  # small pages: the cursor is exercised too
        if before:
            params["before"] = before
        r = _get(daemon, f"/v1/users/{user_id}/events", **params)
        assert r.status_code == 200, r.text
        page = r.json()
        events += page["events"]
        before = page["next_before"]
        if not before:
            return events


def _parse(ts: str) -> dt.datetime:
    assert ts.endswith("Z") and len(ts) == len("2026-11-26T08:00:00.000Z"), ts
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


@pytest.mark.parametrize("sync_mode", [False, True], ids=["batched", "sync_mode"])
def test_segment_sdk_calls_are_stored_once_with_types_traits_and_merges(daemon: Daemon, sync_mode: bool) -> None:
    tag = "sync" if sync_mode else "batched"
    user = f"sdk-user-{tag}"
    anon_alias = f"anon-alias-{tag}"      # merged by alias(previous_id=...)
    anon_identify = f"anon-ident-{tag}"   # merged by identify(user_id, anonymous_id)
    group = f"acme-{tag}"
    errors: list[Any] = []
    client = Client(
        PUBLISHABLE, host=daemon.url, gzip=True, sync_mode=sync_mode, max_retries=0,
        upload_size=4,  # several batches, so the server sees more than one request in batched mode
        on_error=lambda exc, batch: errors.append((exc, batch)),
    )
    sdk = Recorder(client)
    started = dt.datetime.now(dt.UTC)

    # An anonymous visitor browses before signing up.
    sdk.page(anonymous_id=anon_alias, category="Docs", name="Pricing",
             properties={"path": "/pricing", "referrer": "https://search.example/?q=retention"})
    sdk.track(anonymous_id=anon_alias, event="Viewed Plan", properties={"plan": "pro", "monthly": 49.0})
    sdk.identify(anonymous_id=anon_alias, traits={"utm_source": "newsletter", "plan": "free"})

    # The known user.
    sdk.identify(user, traits={
        "email": f"{user}@example.com", "name": "Ada Lovelace", "plan": "pro", "seats": 5,
        "beta": True, "score": 0.75, "nickname": "ada", "tags": ["early", "vip"],
        "address": {"city": "London", "zip": "NW1"},
    })
    sdk.identify(user, traits={"plan": "enterprise", "nickname": None})  # later wins; null removes
    sdk.track(user, "Report Generated", {"report_type": "weekly_summary", "rows": 1200, "cached": False,
                                         "duration_s": 1.5, "filters": {"region": "eu"}, "columns": ["a", "b"],
                                         "note": None})
    sdk.track(user, "Invoice Paid", {"amount": 99.95, "currency": "EUR", "items": 3})
    sdk.track(user, "Invoice Paid", {"amount": 10, "currency": "EUR", "items": 1})
    sdk.group(user, group, {"name": "Acme Inc", "employees": 250, "plan": "enterprise"})
    sdk.page(user, name="Dashboard", properties={"path": "/app"})

    # A second anonymous device, then the alias of the first anonymous id.
    sdk.track(anonymous_id=anon_identify, event="Opened App", properties={"platform": "ios"})
    sdk.identify(user, anonymous_id=anon_identify, traits={"timezone": "Europe/London"})
    sdk.alias(anon_alias, user)

    if not sync_mode:
        client.flush()
        client.join()
    assert errors == [], f"the SDK reported upload errors: {errors}"

    # -- the profile ------------------------------------------------------------
    r = _get(daemon, f"/v1/users/{user}")
    assert r.status_code == 200, r.text
    profile = r.json()
    assert profile["user_id"] == user
    assert profile["traits"] == {
        "email": f"{user}@example.com", "name": "Ada Lovelace", "plan": "enterprise", "seats": 5,
        "beta": True, "score": 0.75, "tags": ["early", "vip"], "address": {"city": "London", "zip": "NW1"},
        "timezone": "Europe/London",
        "utm_source": "newsletter",  # collected anonymously, kept by the merge; the known "plan" won
    }
    assert type(profile["traits"]["seats"]) is int and type(profile["traits"]["score"]) is float
    assert [g["group_id"] for g in profile["groups"]] == [group]
    assert profile["groups"][0]["traits"] == {"name": "Acme Inc", "employees": 250, "plan": "enterprise"}

    # -- the events: every call once, newest first, anonymous history included --
    events = _all_events(daemon, user)
    sent = sdk.sent
    assert [e["message_id"] for e in events] == [m["messageId"] for m in reversed(sent)]
    assert len({e["message_id"] for e in events}) == len(sent) == 13
    by_id = {e["message_id"]: e for e in events}
    finished = dt.datetime.now(dt.UTC)
    for msg in sent:
        e = by_id[msg["messageId"]]
        assert e["type"] == msg["type"]
        assert e["user_id"] == msg.get("userId")
        assert e["anonymous_id"] == msg.get("anonymousId")
        if msg["type"] == "track":
            assert e["event"] == msg["event"]
        if msg["type"] == "page":
            assert e["event"] == msg["name"]
        if msg["type"] in ("track", "page"):
            assert e["properties"] == msg["properties"]
            # JSON types survive the trip: no int became a float, no bool an int.
            for key, value in msg["properties"].items():
                assert type(e["properties"][key]) is type(value), (key, e["properties"][key], value)
        if msg["type"] in ("identify", "group"):
            assert e["traits"] == msg["traits"]
            for key, value in msg["traits"].items():
                assert type(e["traits"][key]) is type(value), (key, e["traits"][key], value)
        if msg["type"] == "group":
            assert e["group_id"] == group
        assert e["context"]["library"]["name"] == "analytics-python"
        for field in ("timestamp", "received_at"):
            at = _parse(e[field])
            assert started - dt.timedelta(seconds=2) <= at <= finished + dt.timedelta(seconds=2), (field, e)

    # The anonymous ids resolve to the user: a second profile would have kept their events.
    anon_events = [e for e in events if e["user_id"] is None]
    assert {e["anonymous_id"] for e in anon_events} == {anon_alias, anon_identify}
    assert len(anon_events) == 4

    # -- the SDK retrying a delivered batch (same messageIds) stores nothing twice --
    again = Client(PUBLISHABLE, host=daemon.url, gzip=True, sync_mode=True, max_retries=0)
    again.track(user, "Invoice Paid", {"amount": 10, "currency": "EUR", "items": 1},
                message_id=sent[7]["messageId"])
    assert [e["message_id"] for e in _all_events(daemon, user)] == [e["message_id"] for e in events]


def test_a_user_id_with_a_slash_round_trips_through_the_real_server(daemon: Daemon) -> None:
    """uvicorn decodes the path before routing; the user routes match the path as
    sent, so an id the SDK sent with a / is readable and deletable, percent-encoded."""
    client = Client(PUBLISHABLE, host=daemon.url, gzip=True, sync_mode=True)
    client.identify("org/42", {"plan": "pro"})
    client.flush()
    r = _get(daemon, "/v1/users/org%2F42")
    assert r.status_code == 200 and r.json()["user_id"] == "org/42" and r.json()["traits"] == {"plan": "pro"}
    assert [e["type"] for e in _all_events(daemon, "org%2F42")] == ["identify"]
    gone = httpx.delete(daemon.url + "/v1/users/org%2F42", headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    assert gone.status_code == 204
    assert _get(daemon, "/v1/users/org%2F42").status_code == 404
