"""SIGKILL under load: every acknowledged event survives, exactly once.

Several clients post ``/v1/batch`` requests of 50 events to a real ``retenshund``
process, each event with its own ``messageId``; some batches deliberately re-send
ids that were already acknowledged. The process is killed with SIGKILL at a
random point of the load, several times. A request that fails because of the
kill is sent again, unchanged, once the daemon is back (what a Segment SDK
does), so ids that were committed but never acknowledged arrive a second time.

After each restart every id acknowledged before the kill is in the SQLite file
exactly once; at the end the same is checked through ``GET /v1/users/{id}/events``
and, after a graceful stop, in the file again."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.support.daemon import PUBLISHABLE, SECRET, Daemon

pytestmark = pytest.mark.e2e

CLIENTS = 6
BATCH = 50
USERS = 40
KILLS = 4
RESEND_EVERY = 4        # every 4th batch carries ...
RESEND_COUNT = 10       # ... this many already-acknowledged events again
MAX_ATTEMPTS = 50       # per request, over all restarts
DEADLINE_S = 45.0       # the whole load phase; the test stays well under a minute

DUPLICATES_SQL = "SELECT message_id, count(*) FROM events GROUP BY message_id HAVING count(*) > 1"


@dataclass
class Load:
    url: str
    up: asyncio.Event = field(default_factory=asyncio.Event)          # cleared while the daemon is down
    progress: asyncio.Event = field(default_factory=asyncio.Event)    # set on every acknowledgement
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acked: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    duplicates_reported: int = 0      # the daemon's own count of ids it did not store again
    deliberate_resends: int = 0
    failed_attempts: int = 0          # attempts that died with the process
    retried_requests: int = 0         # requests that needed more than one attempt
    retry_duplicates: int = 0         # ids a retried request found already committed (the lost-200 case)
    unexpected: list[str] = field(default_factory=list)


def _event(client: int, seq: int) -> dict[str, Any]:
    n = client * 1_000_000 + seq
    user = f"crash-user-{n % USERS}"
    if seq % 10 == 0:
        return {"type": "identify", "userId": user, "messageId": f"c{client}-{seq}",
                "traits": {"plan": "pro", "last_batch": seq}}
    return {"type": "track", "userId": user, "event": "crash_load", "messageId": f"c{client}-{seq}",
            "properties": {"client": client, "seq": seq, "price": seq / 100}}


async def _client(index: int, load: Load, rng: random.Random) -> None:
    seq = 0
    batches = 0
    own_acked: list[dict[str, Any]] = []
    auth = httpx.BasicAuth(PUBLISHABLE, "")
    async with httpx.AsyncClient(base_url=load.url, auth=auth, timeout=10.0) as http:
        while not load.stop.is_set():
            batches += 1
            events = []
            for _ in range(BATCH):
                events.append(_event(index, seq))
                seq += 1
            resent = 0
            if batches % RESEND_EVERY == 0 and len(own_acked) >= RESEND_COUNT:
                # Deliberate re-sends: the very same events, already acknowledged.
                events[:RESEND_COUNT] = rng.sample(own_acked, RESEND_COUNT)
                resent = RESEND_COUNT
                load.deliberate_resends += resent
            body = msgspec.json.encode({"batch": events})
            ids = [e["messageId"] for e in events]
            load.sent.update(ids)
            for attempt in range(1, MAX_ATTEMPTS + 1):
                await asyncio.wait_for(load.up.wait(), DEADLINE_S)
                try:
                    r = await http.post("/v1/batch", content=body, headers={"Content-Type": "application/json"})
                except httpx.TransportError:
                    load.failed_attempts += 1
                    continue  # sent again, unchanged, once the daemon answers again
                if r.status_code != 200:
                    load.unexpected.append(f"{r.status_code} {r.text[:200]}")
                    return
                reply = r.json()
                assert reply["success"] is True
                load.duplicates_reported += reply.get("duplicates", 0)
                if attempt > 1:
                    load.retried_requests += 1
                    load.retry_duplicates += reply.get("duplicates", 0) - resent
                load.acked.update(ids)
                own_acked += events[resent:]  # re-sent ones are in it already
                load.progress.set()
                break
            else:
                load.unexpected.append(f"a batch was not acknowledged after {MAX_ATTEMPTS} attempts")
                return


async def _wait_for_acks(load: Load, target: int, deadline: float) -> None:
    while len(load.acked) < target:
        if load.unexpected:
            raise AssertionError(f"a client stopped: {load.unexpected}")
        load.progress.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"only {len(load.acked)} of {target} events acknowledged before the deadline")
        try:
            await asyncio.wait_for(load.progress.wait(), remaining)
        except TimeoutError:
            pass


def _stored(db: Path) -> collections.Counter[str]:
    """message_id -> rows in events, read from the file without writing to it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        dupes = conn.execute(DUPLICATES_SQL).fetchall()
        counts = collections.Counter(row[0] for row in conn.execute("SELECT message_id FROM events"))
        assert sorted(dupes) == sorted((m, c) for m, c in counts.items() if c > 1)  # the two views agree
        return counts
    finally:
        conn.close()


def _api_events(url: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SECRET}"}, timeout=30) as http:
        for u in range(USERS):
            before = None
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if before:
                    params["before"] = before
                r = http.get(f"/v1/users/crash-user-{u}/events", params=params)
                assert r.status_code == 200, r.text
                page = r.json()
                for e in page["events"]:
                    counts[e["message_id"]] += 1
                    assert e["user_id"] == f"crash-user-{u}"
                before = page["next_before"]
                if not before:
                    break
    return counts


async def test_sigkill_under_batch_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    daemon = Daemon(tmp_path / "data")
    await asyncio.to_thread(daemon.start)
    load = Load(daemon.url)
    load.up.set()
    started = time.monotonic()
    deadline = started + DEADLINE_S
    clients = [asyncio.create_task(_client(i, load, random.Random(seed + i))) for i in range(CLIENTS)]
    in_flight_committed = 0
    try:
        for _ in range(KILLS):
            # A random moment once load is flowing: after 1,000 to 8,000 more acknowledged events.
            await _wait_for_acks(load, len(load.acked) + rng.randrange(1_000, 8_000), deadline)
            load.up.clear()           # no new attempt starts until the daemon is back
            acked_before = set(load.acked)
            daemon.kill()
            await asyncio.to_thread(daemon.start)
            stored = _stored(daemon.db_path)
            assert [m for m, c in stored.items() if c > 1] == []
            # Acknowledged before the kill, or by a 200 that was already on its
            # way (read from the socket after the kill): nothing sent since.
            acked = set(load.acked)
            assert acked_before <= acked
            missing = acked - stored.keys()
            assert not missing, f"{len(missing)} acknowledged events lost in the crash, e.g. {sorted(missing)[:5]}"
            assert stored.keys() <= load.sent
            in_flight_committed += len(stored.keys() - acked_before)  # committed, not yet acknowledged at the kill
            load.up.set()
        # Some load after the last restart, then let every client finish its request.
        await _wait_for_acks(load, len(load.acked) + 2_000, deadline)
        load.stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), max(1.0, deadline - time.monotonic()))
        assert load.unexpected == []

        via_api = await asyncio.to_thread(_api_events, daemon.url)
        assert [m for m, c in via_api.items() if c > 1] == []
        assert via_api.keys() == load.acked
    finally:
        load.stop.set()
        load.up.set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        if daemon.proc is not None:
            # uvicorn shuts down gracefully, then re-raises SIGTERM on itself.
            assert daemon.stop() in (0, -signal.SIGTERM)

    stored = _stored(daemon.db_path)
    duplicates = [m for m, c in stored.items() if c > 1]
    assert duplicates == []
    assert stored.keys() == load.acked == load.sent  # every request was acknowledged in the end
    assert load.retried_requests > 0, "no request was in flight at any kill: the crash path was not exercised"
    assert load.duplicates_reported >= load.deliberate_resends > 0
    elapsed = time.monotonic() - started
    print(
        f"\ncrash test (seed {seed}): kills={KILLS} acked={len(load.acked)} stored={sum(stored.values())} "
        f"duplicates_prevented={load.duplicates_reported} (deliberate re-sends {load.deliberate_resends}, "
        f"ids of retried requests already committed {load.retry_duplicates}) "
        f"committed_not_yet_acked_at_kill={in_flight_committed} attempts_killed={load.failed_attempts} "
        f"retried_requests={load.retried_requests} elapsed={elapsed:.1f}s"
    )
