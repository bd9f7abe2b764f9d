"""Crashes do not lose or repeat messages and automation steps (a real process,
SIGKILL, restart)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import PUBLISHABLE, SECRET, Daemon, wait_until
from tests.support.smtp_server import SmtpTestServer

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {SECRET}"}


def call(d: Daemon, method: str, path: str, body: object = None, key: str = SECRET) -> httpx.Response:
    return httpx.request(method, d.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


async def test_killed_between_claim_and_delivery_the_email_goes_out_once_after_restart(tmp_path: Path) -> None:
    async with SmtpTestServer() as smtp:
        email = f'[email]\nhost = "{smtp.host}"\nport = {smtp.port}\nstarttls = false\nfrom = "a@acme.example"\n'
        d = Daemon(tmp_path / "data", extra_toml=email).start()
        try:
            assert call(d, "PUT", "/v1/templates/t", {"email": {"subject": "Hi {{ user.name }}", "text": "x"}}).is_success
            assert call(d, "POST", "/v1/identify", {"userId": "u1", "traits": {"email": "u1@x.io", "name": "Ada"}},
                        PUBLISHABLE).status_code == 200
            smtp.hold()
            sent = call(d, "POST", "/v1/messages/send", {"user_id": "u1", "channel": "email", "template_id": "t"})
            assert sent.status_code == 202
            message_id = sent.json()["message_id"]
            # The job is claimed and the email is on the wire, waiting for the server's answer.
            await smtp.wait_held(1)
            d.kill()
        finally:
            smtp.release()
        assert smtp.messages == []
        d.start()
        try:
            [got] = await smtp.wait_for(1, timeout=15)
            assert got.rcpt_tos == ["u1@x.io"] and got.message["Subject"] == "Hi Ada"
            status = wait_until(lambda: (m := call(d, "GET", f"/v1/messages/{message_id}").json())["status"] == "sent"
                                and m, 10, "the message to be recorded as sent")
            assert [h["status"] for h in status["history"]].count("sent") == 1
        finally:
            d.stop()
        # Nothing else arrives later: the job is gone from the outbox.
        conn = sqlite3.connect(tmp_path / "data" / "retenshun.db")
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        assert len(smtp.messages) == 1
        print(f"\ndelivered {len(smtp.messages)} email after a kill between claim and delivery")


def test_killed_while_runs_wait_each_due_step_runs_exactly_once(tmp_path: Path) -> None:
    users = [f"u{i}" for i in range(60)]
    d = Daemon(tmp_path / "data").start()
    try:
        assert call(d, "PUT", "/v1/templates/t", {"in_app": {"title": "after the wait"}}).is_success
        assert call(d, "PUT", "/v1/automations/a", {
            "trigger": {"event": "go"},
            "steps": [{"wait": "2s"}, {"send": {"channel": "in_app", "template_id": "t"}},
                      {"wait": "1s"}, {"send": {"channel": "in_app", "template_id": "t"}}]}).status_code == 201
        r = call(d, "POST", "/v1/batch", {"batch": [{"type": "track", "userId": u, "event": "go"} for u in users]},
                 PUBLISHABLE)
        assert r.status_code == 200
        wait_until(lambda: len(call(d, "GET", "/v1/automations/a/runs?limit=1000").json()["runs"]) == len(users), 10,
                   "every user to enter")
        d.kill()  # every run is waiting
        d.start()
        # Kill again while the first sends of the due runs are going out.
        wait_until(lambda: call(d, "GET", "/v1/messages?limit=1000").json()["messages"], 15, "the first sends")
        d.kill()
        d.start()
        wait_until(lambda: len(call(d, "GET", "/v1/messages?limit=1000").json()["messages"]) >= 2 * len(users), 20,
                   "both sends of every run")
        runs = wait_until(lambda: (rs := call(d, "GET", "/v1/automations/a/runs?limit=1000").json()["runs"])
                          and all(x["status"] == "completed" for x in rs) and rs, 20, "every run to complete")
        assert len(runs) == len(users)
    finally:
        d.stop()
    conn = sqlite3.connect(tmp_path / "data" / "retenshun.db")
    per_user = dict(conn.execute("SELECT user_id, count(*) FROM messages GROUP BY user_id").fetchall())
    assert per_user == {u: 2 for u in users}
    assert conn.execute("SELECT count(*) FROM inbox").fetchone() == (2 * len(users),)
    print(f"\n{len(users)} waiting runs, 2 kills: {sum(per_user.values())} messages, exactly 2 per user")


def test_gdpr_delete_on_a_running_daemon_removes_pending_runs(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "data").start()
    try:
        assert call(d, "PUT", "/v1/templates/t", {"in_app": {"title": "later"}}).is_success
        assert call(d, "PUT", "/v1/automations/a", {"trigger": {"event": "go"},
                                                     "steps": [{"wait": "1h"}, {"send": {"channel": "in_app",
                                                                                         "template_id": "t"}}]}).is_success
        assert call(d, "POST", "/v1/track", {"userId": "gone", "event": "go"}, PUBLISHABLE).status_code == 200
        wait_until(lambda: call(d, "GET", "/v1/automations/a/runs").json()["runs"], 10, "the run")
        assert call(d, "DELETE", "/v1/users/gone").status_code == 204
        assert call(d, "GET", "/v1/automations/a/runs").json()["runs"] == []
    finally:
        d.stop()
