"""Helpers for messaging tests: templates, waiting on message states."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import PUBLISHABLE, Api

TEMPLATE = {
    "name": "Milestone",
    "category": "product_updates",
    "email": {"subject": "You reached {{ milestone }}", "html": "<p>Hi {{ user.name }}, <a href=\"https://app.example.com/stats\">see stats</a></p>"},
    "push": {"title": "{{ milestone }}!", "body": "Well done {{ user.name }}", "url": "https://app.example.com/m"},
    "in_app": {"title": "You reached {{ milestone }}", "body": "Keep going, {{ user.name }}",
               "url": "/stats", "data": {"kind": "milestone", "value": "{{ milestone }}"}},
}


async def setup_user(api: Api, user_id: str = "u1", **traits: Any) -> None:
    traits = {"email": f"{user_id}@example.com", "name": user_id.upper(), **traits}
    r = await api.post("/v1/identify", {"userId": user_id, "traits": traits}, key=PUBLISHABLE)
    assert r.status_code == 200, r.text


async def put_template(api: Api, template_id: str = "milestone", spec: dict[str, Any] | None = None) -> None:
    r = await api.put(f"/v1/templates/{template_id}", spec or TEMPLATE)
    assert r.status_code in (200, 201), r.text


async def send(api: Api, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = await api.post("/v1/messages/send", {"template_id": "milestone", "variables": {"milestone": "10,000 messages"},
                                             **body}, **kw)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


async def settle(api: Api) -> None:
    """Every delivery the dispatcher has in flight has been recorded."""
    await api.services.extra["dispatcher"].drain()


async def wait_status(api: Api, message_id: str, *statuses: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        await settle(api)
        m = (await api.get(f"/v1/messages/{message_id}")).json()
        if m["status"] in statuses:
            return m  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"message {message_id} is {m['status']}, expected {statuses}: {m['history']}")
        await asyncio.sleep(0.01)
