"""SQLite SQL for analytics queries (messages, time-to-trigger). Mixed into SqliteStore.

Every query is bounded by a time range on an indexed column (messages.created_at,
or messages.delivered_at through a covering partial index), and the aggregation
happens in SQLite: only one row per (group, status) or per (channel, bucket)
crosses into Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GROUPABLE = ("channel", "template_id", "automation_id")

CURRENT = "SELECT {col}, status, count(*) FROM messages WHERE created_at >= ? AND created_at < ? {filters} GROUP BY 1, 2"
REACHED = (
    "SELECT m.{col}, h.status, count(DISTINCT m.message_id) FROM messages m"
    " JOIN message_history h ON h.message_id = m.message_id"
    " WHERE m.created_at >= ? AND m.created_at < ? {filters} GROUP BY 1, 2"
)
# Served by the partial index message_history_unsubscribed: no scan.
UNSUBSCRIBES_RECORDED = "SELECT EXISTS (SELECT 1 FROM message_history WHERE status = 'unsubscribed')"

DELIVERED_IN = "FROM messages WHERE delivered_at >= ? AND delivered_at < ?"
LATENCY_BUCKETS = (
    "SELECT channel, {case} AS bucket, count(*), max(delivered_at - trigger_at)"
    f" {DELIVERED_IN} GROUP BY channel, bucket"
)
LATENCY_AT_RANKS = (
    "WITH want(channel, rn) AS (VALUES {values}),"
    " ranked AS (SELECT channel, delivered_at - trigger_at AS d,"
    "   row_number() OVER (PARTITION BY channel ORDER BY delivered_at - trigger_at) AS rn"
    f"  {DELIVERED_IN})"
    " SELECT r.channel, r.rn, r.d FROM ranked r JOIN want w ON w.channel = r.channel AND w.rn = r.rn"
)


def _filters(filters: Mapping[str, str], prefix: str) -> tuple[str, list[str]]:
    sql, args = [], []
    for column, value in sorted(filters.items()):
        if column not in GROUPABLE:
            raise ValueError(f"cannot filter messages by {column!r}")
        sql.append(f"AND {prefix}{column} = ?")
        args.append(value)
    return " ".join(sql), args


class AnalyticsSqlite:
    # provided by SqliteStore
    _read: Any

    async def message_status_counts(
        self, column: str, since_ms: int, until_ms: int, filters: Mapping[str, str] | None = None,
    ) -> tuple[list[tuple[str | None, str, int]], list[tuple[str | None, str, int]]]:
        """(current, reached): rows of (group key, status, messages) for messages
        created in [since, until), grouped by ``column``."""
        if column not in GROUPABLE:
            raise ValueError(f"cannot group messages by {column!r}")
        where, args = _filters(filters or {}, "")
        current = [(r[0], r[1], int(r[2])) for r in await self._all(CURRENT.format(col=column, filters=where),
                                                                      (since_ms, until_ms, *args))]
        where, args = _filters(filters or {}, "m.")
        reached = [(r[0], r[1], int(r[2])) for r in await self._all(REACHED.format(col=column, filters=where),
                                                                      (since_ms, until_ms, *args))]
        return current, reached

    async def unsubscribes_recorded(self) -> bool:
        row = await self._one(UNSUBSCRIBES_RECORDED)
        return bool(row and row[0])

    async def latency_histogram(self, since_ms: int, until_ms: int,
                                edges: Sequence[float]) -> list[tuple[str, int, int, int]]:
        """Rows of (channel, bucket index, messages, max ms) for messages delivered in
        [since, until); bucket i holds latencies below edges[i] (and not below
        edges[i-1]), the last one everything from edges[-1] up."""
        case = ("CASE " + " ".join(f"WHEN delivered_at - trigger_at < ? THEN {i}" for i in range(len(edges)))
                + f" ELSE {len(edges)} END")
        return [(r[0], int(r[1]), int(r[2]), int(r[3]))
                for r in await self._all(LATENCY_BUCKETS.format(case=case), (*edges, since_ms, until_ms))]

    async def latency_at_ranks(self, since_ms: int, until_ms: int,
                               ranks: Mapping[str, Sequence[int]]) -> dict[tuple[str, int], int]:
        """The latency at each 1-based rank (ascending) of each channel's messages
        delivered in [since, until): {(channel, rank): ms}."""
        wanted = [(channel, rank) for channel, rs in ranks.items() for rank in sorted(set(rs))]
        if not wanted:
            return {}
        sql = LATENCY_AT_RANKS.format(values=", ".join("(?, ?)" for _ in wanted))
        args = [x for pair in wanted for x in pair]
        return {(r[0], int(r[1])): int(r[2]) for r in await self._all(sql, (*args, since_ms, until_ms))}
