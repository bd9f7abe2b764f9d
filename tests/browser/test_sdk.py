"""The browser SDK in real Chromium, on a page of another origin than the daemon:
tracking, the offline queue across a reload, the inbox widget, the service worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from retenshund import tokens
from tests.browser.conftest import SIGNING_SECRET, Site, api, ok, poll
from tests.support.daemon import Daemon

pytestmark = pytest.mark.e2e

INBOX_TEMPLATE = {"name": "Card", "in_app": {"title": "Your card ending {{ last4 }} expires soon",
                                             "body": "Update it before {{ month }}.", "url": "/billing"}}


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def events_of(daemon: Daemon, user_id: str) -> list[dict[str, Any]]:
    r = api(daemon, "GET", f"/v1/users/{user_id}/events?limit=100")
    return r.json()["events"] if r.status_code == 200 else []


def tracked(daemon: Daemon, user_id: str, name: str) -> list[dict[str, Any]]:
    return [e for e in events_of(daemon, user_id) if e["event"] == name]


def test_the_sdk_on_another_origin_tracks_events(daemon: Daemon, site: Site, context: Any) -> None:
    page = context.new_page()
    page.goto(f"{site.origin}/?user=web_ada")
    page.evaluate("""() => {
        retenshun.identify("web_ada", {plan: "pro", email: "ada@shop.test"});
        retenshun.track("report_generated", {report_type: "weekly_summary"});
        return retenshun.flush();
    }""")
    found = poll(lambda: tracked(daemon, "web_ada", "report_generated"), 5, "the tracked event to arrive")
    event = found[0]
    assert event["properties"] == {"report_type": "weekly_summary"}
    assert event["context"]["library"]["name"] == "retenshun.js"
    assert event["context"]["page"]["url"].startswith(site.origin)
    assert ok(api(daemon, "GET", "/v1/users/web_ada"))["traits"]["plan"] == "pro"


def test_events_queued_offline_survive_a_reload_and_arrive_once(daemon: Daemon, site: Site, context: Any) -> None:
    page = context.new_page()
    page.goto(f"{site.origin}/?user=web_offline")
    context.set_offline(True)
    page.evaluate("""async () => {
        retenshun.track("offline_one", {n: 1});
        retenshun.track("offline_two", {n: 2});
        await retenshun.flush();   // fails: the browser is offline
    }""")
    queued = page.evaluate("() => JSON.parse(localStorage.getItem('retenshun:queue') || '[]').map(e => e.event)")
    assert "offline_one" in queued and "offline_two" in queued
    assert tracked(daemon, "web_offline", "offline_one") == []
    page.goto("about:blank")  # leave the page while still offline
    context.set_offline(False)
    page.goto(f"{site.origin}/?user=web_offline")
    poll(lambda: tracked(daemon, "web_offline", "offline_one") and tracked(daemon, "web_offline", "offline_two"),
         5, "the queued events to arrive after the reload")
    page.wait_for_function("() => JSON.parse(localStorage.getItem('retenshun:queue') || '[]').length === 0",
                           timeout=5000)
    assert len(tracked(daemon, "web_offline", "offline_one")) == 1
    assert len(tracked(daemon, "web_offline", "offline_two")) == 1


def _inbox_ws_served(daemon: Daemon) -> bool:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(daemon.url.replace("http", "ws") + "/v1/inbox/ws?token=x", open_timeout=3) as ws:
            ws.recv(timeout=3)
    except InvalidStatus:
        return False  # no WebSocket route: the handshake got an HTTP error
    except (ConnectionClosed, TimeoutError):
        return True  # it answered the handshake (and closed the bad token with 4401)
    return True


@pytest.fixture
def inbox_user(daemon: Daemon) -> tuple[str, str]:
    assert _inbox_ws_served(daemon), "WS /v1/inbox/ws must be served"
    user_id = f"web_inbox_{time.monotonic_ns()}"
    ok(api(daemon, "POST", "/v1/identify", {"userId": user_id, "traits": {"name": "Ink"}}))
    ok(api(daemon, "PUT", "/v1/templates/card_notice", INBOX_TEMPLATE))
    return user_id, tokens.mint(SIGNING_SECRET, user_id, 3600)


def send_in_app(daemon: Daemon, user_id: str, last4: str) -> str:
    body = ok(api(daemon, "POST", "/v1/messages/send", {
        "user_id": user_id, "channel": "in_app", "template_id": "card_notice",
        "variables": {"last4": last4, "month": "December"}}))
    return str(body["message_id"])


def test_the_widget_shows_the_badge_and_the_message_from_the_backend_within_a_second(
        daemon: Daemon, site: Site, context: Any, inbox_user: tuple[str, str], screenshots: Path) -> None:
    user_id, token = inbox_user
    page = context.new_page()
    page.goto(f"{site.origin}/?user={user_id}&token={token}")
    widget = page.locator("retenshun-inbox")
    expect(widget).to_have_attribute("unread", "0", timeout=5000)  # connected, nothing yet
    send_in_app(daemon, user_id, "4242")
    expect(widget).to_have_attribute("unread", "1", timeout=1000)
    expect(widget.locator(".badge")).to_have_text("1")
    widget.locator("button.bell").click()
    item = widget.locator(".item").first
    expect(item).to_contain_text("Your card ending 4242 expires soon")
    expect(item).to_contain_text("Update it before December.")
    page.screenshot(path=screenshots / "20-shop-inbox-widget.png")
    # Clicking the message reads it (the app keeps the navigation, as an SPA would).
    page.evaluate("() => document.addEventListener('retenshun-message-click', e => e.preventDefault())")
    item.locator(".main").click()
    expect(widget).to_have_attribute("unread", "0", timeout=2000)


def test_reading_in_one_tab_clears_the_badge_in_another(
        daemon: Daemon, site: Site, context: Any, inbox_user: tuple[str, str]) -> None:
    user_id, token = inbox_user
    first, second = context.new_page(), context.new_page()
    for page in (first, second):
        page.goto(f"{site.origin}/?user={user_id}&token={token}")
        expect(page.locator("retenshun-inbox")).to_have_attribute("unread", "0", timeout=5000)
    send_in_app(daemon, user_id, "1111")
    send_in_app(daemon, user_id, "2222")
    for page in (first, second):
        expect(page.locator("retenshun-inbox")).to_have_attribute("unread", "2", timeout=2000)
    first.evaluate("() => retenshun.inbox.markAllRead()")
    expect(second.locator("retenshun-inbox")).to_have_attribute("unread", "0", timeout=2000)
    expect(second.locator("retenshun-inbox .badge")).to_be_hidden()
    inbox = httpx.get(f"{daemon.url}/v1/inbox", headers={"Authorization": f"Bearer {token}"}).json()
    assert inbox["unread_count"] == 0 and all(m["read_at"] for m in inbox["messages"])


def test_the_service_worker_registers_from_the_app_origin(daemon: Daemon, site: Site, context: Any) -> None:
    page = context.new_page()
    page.goto(f"{site.origin}/?user=web_push")
    script = page.evaluate("""async (host) => {
        const reg = await navigator.serviceWorker.register("/sw.js?host=" + encodeURIComponent(host));
        const ready = await navigator.serviceWorker.ready;
        return {scope: ready.scope, script: (ready.active || reg.installing || reg.waiting).scriptURL,
                push: "pushManager" in ready};
    }""", daemon.url)
    assert script["scope"] == f"{site.origin}/"
    assert script["script"].startswith(f"{site.origin}/sw.js?host=")
    assert script["push"] is True
    worker = poll(lambda: next((w for w in context.service_workers if "/sw.js" in w.url), None), 5,
                  "the service worker to start")
    assert worker.evaluate("() => self.__retenshunServiceWorker.version") == "0.1.0"
    vapid = page.evaluate("() => retenshun.push._vapidKey().then(k => k.length)")
    assert vapid == 65  # an uncompressed P-256 public key, fetched cross-origin with the publishable key
