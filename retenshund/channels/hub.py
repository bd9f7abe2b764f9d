"""The in-app WebSocket hub: user id -> open connections (tabs, devices).

``send`` never blocks: frames are queued on each of the user's connections and
written by that connection's own writer."""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol


class Connection(Protocol):
    def push(self, frames: list[bytes]) -> bool: ...


class Hub:
    def __init__(self) -> None:
        self._users: dict[str, set[Connection]] = defaultdict(set)

    def add(self, user_id: str, conn: Connection) -> None:
        self._users[user_id].add(conn)

    def remove(self, user_id: str, conn: Connection) -> None:
        conns = self._users.get(user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._users[user_id]

    def send(self, user_id: str, frames: list[bytes]) -> int:
        reached = 0
        for conn in tuple(self._users.get(user_id, ())):
            if conn.push(frames):
                reached += 1
        return reached

    def broadcast_users(self, user_ids: list[str], frames: list[bytes]) -> int:
        return sum(self.send(u, frames) for u in user_ids)

    def connections(self, user_id: str) -> int:
        return len(self._users.get(user_id, ()))

    @property
    def total(self) -> int:
        return sum(len(c) for c in self._users.values())
