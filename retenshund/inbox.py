"""Inbox actions shared by the REST routes and the WebSocket: change the store,
then tell every open tab of the user the new unread count."""

from __future__ import annotations

from typing import Any

from .channels.inapp import unread_frame
from .clock import Clock


class Inbox:
    def __init__(self, store: Any, hub: Any, clock: Clock) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock

    async def _apply(self, user_id: str, action: str, item_id: str | None) -> bool:
        before = await self.store.inbox_unread(user_id)
        found, unread = await self.store.inbox_update(user_id, action, item_id, self.clock.now_ms())
        if unread != before:
            self.hub.send(user_id, [unread_frame(unread)])
        return bool(found)

    async def read(self, user_id: str, item_id: str) -> bool:
        return await self._apply(user_id, "read", item_id)

    async def archive(self, user_id: str, item_id: str) -> bool:
        return await self._apply(user_id, "archive", item_id)

    async def read_all(self, user_id: str) -> None:
        await self._apply(user_id, "read_all", None)
