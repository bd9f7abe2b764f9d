"""Scenario helpers: a daemon in-process with a controllable clock."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import PUBLISHABLE, Api

HOUR = 3_600_000
DAY = 24 * HOUR


async def quiesce(api: Api, rounds: int = 20) -> None:
    """Until the engine has seen every committed event and no delivery is in flight
    (each can cause more of the other: a delivery writes status events, an
    automation step creates deliveries)."""
    svc = api.services
    for _ in range(rounds):
        before = await svc.store.last_event_id()
        await svc.extra["engine"].settle()
        await svc.extra["dispatcher"].drain()
        if await svc.store.last_event_id() == before and svc.extra["engine"].cursor >= before:
            return
    raise AssertionError("the engine did not settle")


async def advance(api: Api, ms: int) -> None:
    """Move the fake clock and run whatever became due (waits, timeouts, retries, timers)."""
    assert api.clock is not None
    api.clock.advance(ms)
    await api.services.extra["timers"].run_due()
    await api.services.extra["dispatcher"].run_due()
    await quiesce(api)


async def track(api: Api, user_id: str, event: str, **properties: Any) -> None:
    r = await api.post("/v1/track", {"userId": user_id, "event": event, "properties": properties}, key=PUBLISHABLE)
    assert r.status_code == 200, r.text
    await quiesce(api)


async def identify(api: Api, user_id: str, **traits: Any) -> None:
    r = await api.post("/v1/identify", {"userId": user_id, "traits": traits}, key=PUBLISHABLE)
    assert r.status_code == 200, r.text
    await quiesce(api)


async def messages_of(api: Api, user_id: str) -> list[dict[str, Any]]:
    await quiesce(api)
    return (await api.get(f"/v1/users/{user_id}/messages")).json()["messages"]  # type: ignore[no-any-return]


async def journal_of(api: Api, user_id: str, automation_id: str | None = None) -> list[dict[str, Any]]:
    q = f"?automation_id={automation_id}" if automation_id else ""
    return (await api.get(f"/v1/users/{user_id}/journal{q}")).json()["journal"]  # type: ignore[no-any-return]


async def put(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.put(path, body)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


async def gather(*aws: Any) -> list[Any]:
    return list(await asyncio.gather(*aws))
