"""Automation features beyond the stories: segment and schedule triggers, the
global fatigue cap, webhook steps, the journal's suppression entries, apply/diff."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from pathlib import Path

import pytest

from retenshund.apply import ApplyError, Client, apply, diff, load
from retenshund.channels.webhook import verify_standard_webhook
from retenshund.clock import FakeClock, parse_iso
from tests.conftest import SECRET, make_config, running
from tests.scenarios.helpers import identify, journal_of, messages_of, put, quiesce, track

T0 = parse_iso("2026-11-26T12:00:00Z")


async def test_segment_entered_triggers_and_a_schedule_runs_over_a_segment(tmp_path: Path) -> None:
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/templates/t", {"in_app": {"title": "{{ why }}"}})
        await put(api, "/v1/segments/pro", {"name": "Pro", "condition": {"trait": "plan", "op": "eq", "value": "pro"}})
        await put(api, "/v1/automations/welcome-pro", {
            "trigger": {"segment_entered": "pro"},
            "steps": [{"send": {"channel": "in_app", "template_id": "t", "variables": {"why": "welcome"}}}]})
        await put(api, "/v1/automations/weekly", {
            "trigger": {"schedule": "0 9 * * 1", "segment": "pro", "timezone": "Europe/Berlin"},
            "steps": [{"send": {"channel": "in_app", "template_id": "t", "variables": {"why": "weekly"}}}]})
        assert "weekly" in api.services.extra["timers"].cron_jobs()
        await identify(api, "ann", plan="pro")
        await identify(api, "bob", plan="free")
        assert [m["rendered"]["title"] for m in await messages_of(api, "ann")] == ["welcome"]
        assert await messages_of(api, "bob") == []
        # The cron job fires (APScheduler calls this at Monday 09:00 Berlin).
        await api.services.extra["automations"].run_schedule("weekly")
        await quiesce(api)
        assert sorted(m["rendered"]["title"] for m in await messages_of(api, "ann")) == ["weekly", "welcome"]
        assert await messages_of(api, "bob") == []


async def test_the_global_fatigue_cap_suppresses_and_the_journal_says_so(tmp_path: Path) -> None:
    config = make_config(tmp_path / "d", engine={"fatigue_cap": {"max": 2, "per": "1d"}})
    async with running(config, FakeClock(T0)) as api:
        await put(api, "/v1/templates/promo", {"category": "marketing", "in_app": {"title": "promo"}})
        await put(api, "/v1/templates/receipt", {"in_app": {"title": "receipt"}})
        for name in ("a", "b", "c"):
            await put(api, f"/v1/automations/{name}", {"trigger": {"event": f"ev_{name}"},
                                                        "steps": [{"send": {"channel": "in_app", "template_id": "promo"}}]})
        await put(api, "/v1/automations/r", {"trigger": {"event": "paid"}, "steps": [
            {"send": {"channel": "in_app", "template_id": "receipt", "category": "transactional"}}]})
        await identify(api, "u1")
        for ev in ("ev_a", "ev_b", "ev_c", "paid"):
            await track(api, "u1", ev)
        statuses = sorted((m["automation_id"], m["status"]) for m in await messages_of(api, "u1"))
        assert statuses == [("a", "delivered"), ("b", "delivered"), ("c", "suppressed"), ("r", "delivered")]
        kinds = [j["kind"] for j in await journal_of(api, "u1", "c")]
        assert "suppressed_fatigue" in kinds


async def test_a_preference_opt_out_shows_in_the_journal(tmp_path: Path) -> None:
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/templates/news", {"category": "newsletter", "in_app": {"title": "news"}})
        await put(api, "/v1/automations/n", {"trigger": {"event": "go"},
                                             "steps": [{"send": {"channel": "in_app", "template_id": "news"}}]})
        await identify(api, "u1")
        await api.put("/v1/users/u1/preferences", {"categories": {"newsletter": False}})
        await track(api, "u1", "go")
        suppressed = [j for j in await journal_of(api, "u1", "n") if j["kind"] == "suppressed"]
        assert suppressed and "newsletter" in suppressed[0]["detail"]


async def test_webhook_steps_post_a_signed_body(tmp_path: Path) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    got = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        received.append((headers, body))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        got.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = make_config(tmp_path / "d", engine={"allow_private_webhooks": True})
    async with server, running(config, FakeClock(T0)) as api:
        await put(api, "/v1/automations/hook", {"trigger": {"event": "upgraded"}, "steps": [
            {"webhook": {"url": f"http://127.0.0.1:{port}/hooks/retenshun", "body": {"note": "upgraded"}}}]})
        await identify(api, "u1")
        await track(api, "u1", "upgraded", plan="team")
        await asyncio.wait_for(got.wait(), 5)
        headers, body = received[0]
        payload = json.loads(body)
        assert payload["user_id"] == "u1" and payload["data"] == {"note": "upgraded"}
        assert payload["event"] == {"plan": "team"}
        secret = api.services.signing_secret.encode()
        assert verify_standard_webhook(secret, headers, body, now=T0 / 1000)
        assert "webhook" in [j["kind"] for j in await journal_of(api, "u1", "hook")]


async def test_webhook_steps_refuse_private_addresses_by_default(tmp_path: Path) -> None:
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/automations/hook", {"trigger": {"event": "x"}, "steps": [
            {"webhook": {"url": "http://169.254.169.254/latest/meta-data", "body": {}}}]})
        await identify(api, "u1")
        await track(api, "u1", "x")
        failed = [j for j in await journal_of(api, "u1", "hook") if j["kind"] == "webhook_failed"]
        assert failed and "refused" in failed[0]["detail"]


def write_defs(root: Path, subject: str = "Hi {{ user.name }}") -> None:
    (root / "templates").mkdir(parents=True, exist_ok=True)
    (root / "automations").mkdir(exist_ok=True)
    (root / "segments").mkdir(exist_ok=True)
    (root / "templates" / "hello.toml").write_text(f'name = "Hello"\n[email]\nsubject = "{subject}"\ntext = "x"\n')
    (root / "segments" / "pro.json").write_text(json.dumps(
        {"name": "Pro", "condition": {"trait": "plan", "op": "eq", "value": "pro"}}))
    (root / "automations" / "greet.toml").write_text(
        '[trigger]\nevent = "signed_up"\n\n[[steps]]\nwait = "1h"\n\n[[steps]]\n'
        '[steps.send]\nchannel = "email"\ntemplate_id = "hello"\n')


def test_apply_then_diff_round_trip_against_a_running_daemon(tmp_path: Path) -> None:
    from tests.support.daemon import Daemon

    root = tmp_path / "defs"
    write_defs(root)
    d = Daemon(tmp_path / "data").start()
    try:
        client = Client(d.url, "sk_e2e_secret_key_0001")
        out = tmp_path / "out.txt"
        with out.open("w") as f:
            assert diff(root, client, f) == 3
        assert "+ template hello" in out.read_text()
        with out.open("w") as f:
            assert apply(root, client, f) == 3
        assert "[3/3]" in out.read_text()
        with out.open("w") as f:
            assert diff(root, client, f) == 0  # nothing left to do
        write_defs(root, subject="Hello {{ user.name }}")
        with out.open("w") as f:
            assert diff(root, client, f) == 1
        text = out.read_text()
        assert "~ template hello" in text and '+    "subject": "Hello {{ user.name }}"' in text
    finally:
        d.stop()


def test_apply_refuses_everything_when_one_file_is_wrong(tmp_path: Path) -> None:
    root = tmp_path / "defs"
    write_defs(root)
    (root / "automations" / "broken.toml").write_text('[trigger]\nevent = "x"\n[[steps]]\nwait = "soon"\n')
    with pytest.raises(ApplyError) as info:
        apply(root, Client("http://127.0.0.1:9", SECRET), open("/dev/null", "w"))
    assert "broken.toml" in str(info.value) and "steps[0].wait" in str(info.value)
    assert {d.id for d in load(root)} == {"hello", "pro", "greet", "broken"}


async def test_an_automation_can_be_deleted_and_created_again(tmp_path: Path) -> None:
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/templates/t", {"in_app": {"title": "x"}})
        body = {"trigger": {"event": "go"}, "steps": [{"send": {"channel": "in_app", "template_id": "t"}}]}
        assert (await put(api, "/v1/automations/a", body))["version"] == 1
        assert (await api.delete("/v1/automations/a")).status_code == 204
        again = await api.put("/v1/automations/a", body)
        assert again.status_code == 201 and again.json()["version"] == 2


async def test_a_run_done_in_its_first_step_is_written_once_and_a_replayed_trigger_adds_nothing(
        tmp_path: Path) -> None:
    # The first step is applied in the transaction that creates the run, which is
    # written as that step leaves it; the run's own insert is what makes it happen once.
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/templates/t", {"in_app": {"title": "Hi {{ user.id }}"}})
        await put(api, "/v1/automations/a", {"trigger": {"event": "go"},
                                             "steps": [{"send": {"channel": "in_app", "template_id": "t"}}]})
        await identify(api, "ann")
        await track(api, "ann", "go")
        runs = (await api.get("/v1/automations/a/runs?user_id=ann")).json()["runs"]
        assert [(r["status"], r["ended_at"] is not None) for r in runs] == [("completed", True)]
        kinds = [j["kind"] for j in await journal_of(api, "ann", "a")]
        assert kinds == ["completed", "sent", "entered"]  # newest first
        [message] = await messages_of(api, "ann")
        assert [h["status"] for h in message["history"]] == ["queued", "delivered"]

        # The engine sees the same trigger again (as after a crash before its cursor moved).
        store, engine = api.services.store, api.services.extra["engine"]
        events = [e for e in await store.events_after(0, 1000) if e.event == "go"]
        await engine.automations.on_events(events)
        await quiesce(api)
        assert len(await messages_of(api, "ann")) == 1
        assert [j["kind"] for j in await journal_of(api, "ann", "a")] == kinds
        assert len((await api.get("/v1/automations/a/runs?user_id=ann")).json()["runs"]) == 1


async def test_a_triggered_send_uses_the_profile_stored_with_its_event(tmp_path: Path) -> None:
    # The event comes with its sender's profile from the transaction that stored
    # it: entering the run reads nothing more, and the message has the traits.
    async with running(make_config(tmp_path / "d"), FakeClock(T0)) as api:
        await put(api, "/v1/templates/t", {"in_app": {"title": "Hi {{ user.first_name }}"}})
        await put(api, "/v1/automations/a", {"trigger": {"event": "go"},
                                             "steps": [{"send": {"channel": "in_app", "template_id": "t"}}]})
        store = api.services.store
        reads: list[str] = []
        real = store.profile_for_send

        async def counted(user_id: str) -> Any:
            reads.append(user_id)
            return await real(user_id)

        store.profile_for_send = counted
        r = await api.post("/v1/batch", {"batch": [
            {"type": "identify", "userId": "ann", "traits": {"first_name": "Ann"}},
            {"type": "track", "userId": "ann", "event": "go"}]})
        assert r.status_code == 200
        [message] = await messages_of(api, "ann")
        assert message["rendered"]["title"] == "Hi Ann"
        assert reads == []
