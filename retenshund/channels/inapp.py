"""The in-app channel: a message becomes an inbox row (in the same transaction
that records it delivered), then a frame to every open tab of the user."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from ..clock import iso
from ..dispatch import Delivery, backoff
from ..store.base import InboxItem, Job, Message, Profile

_encode = msgspec.json.Encoder().encode


class Hub(Protocol):
    def send(self, user_id: str, frames: list[bytes]) -> int: ...


def inbox_json(item: InboxItem) -> dict[str, Any]:
    return {"id": item.id, "title": item.title, "body": item.body, "url": item.url, "data": item.data,
            "created_at": iso(item.created_at), "read_at": iso(item.read_at), "archived_at": iso(item.archived_at)}


def message_frame(item: InboxItem) -> bytes:
    return _encode({"type": "message", "message": inbox_json(item)})


def unread_frame(count: int) -> bytes:
    return _encode({"type": "unread_count", "count": count})


class InAppSender:
    channel = "in_app"
    external = False  # the inbox row is ours: written once, in the recording transaction

    def __init__(self, hub: Hub, clock: Any) -> None:
        self.hub = hub
        self.clock = clock

    @staticmethod
    def inbox_item(message_id: str, content: dict[str, Any], now_ms: int) -> InboxItem:
        return InboxItem(id=message_id, title=content.get("title"), body=content.get("body"),
                         url=content.get("url"), data=content.get("data") or {},
                         created_at=now_ms, read_at=None, archived_at=None)

    async def deliver(self, message: Message, content: dict[str, Any], profile: Profile | None,
                      job: Job) -> Delivery:
        return Delivery(status="delivered", inbox=self.inbox_item(message.message_id, content, self.clock.now_ms()))

    def committed(self, message: Message, delivery: Delivery, unread: int | None) -> None:
        if delivery.inbox is None:
            return
        frames = [message_frame(delivery.inbox)]
        if unread is not None:
            frames.append(unread_frame(unread))
        self.hub.send(message.user_id, frames)

    def retry_delay(self, failures: int, elapsed_s: float, delivery: Delivery) -> float | None:
        return backoff(failures, base_s=1.0, max_failures=8)
