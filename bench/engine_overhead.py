"""Ingestion with 200 automations and 50 segments active versus none, in one run.

    python bench/engine_overhead.py [--duration S]

Measured twice: with the load's users already known (the steady state the
target is about) and with mostly first-seen users.

The same wrk load as bench/ingest.py (batches of 100 events, users spread over
100,000 ids, daemon on CPU 0, wrk on CPU 1) against two fresh daemons: one
with no definitions, one with 200 automations (event triggers with `where`
filters on names the load does and does not send, waits, sends) and 50
segments (trait and windowed event-count conditions, some over the event the
load sends). Prints events/s of each, the overhead, and how far the engine
lagged behind ingestion at the end (it works from the bus, after commit)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import shutil
import tempfile
import time

import httpx

from bench.ingest import EVENT_NAME, USERS, run_wrk, start_daemon
from tests.support.daemon import PUBLISHABLE, SECRET, wait_until


def seed_users(url: str) -> None:
    """One earlier event for every user the load will use, so the measurement
    sees known users (the steady state). A user's first event makes the segment
    engine evaluate every segment once; that cost is printed separately."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {PUBLISHABLE}"}, timeout=60) as c:
        for start in range(1, USERS + 1, 500):
            batch = [{"type": "track", "userId": f"user-{u}", "event": "seeded"}
                     for u in range(start, min(start + 500, USERS + 1))]
            c.post("/v1/batch", json={"batch": batch}).raise_for_status()


def define(url: str) -> None:
    h = {"Authorization": f"Bearer {SECRET}"}
    with httpx.Client(base_url=url, headers=h, timeout=30) as c:
        c.put("/v1/templates/t", json={"in_app": {"title": "hi {{ user.id }}"}}).raise_for_status()
        for i in range(50):
            if i % 2:
                cond = {"trait": f"plan_{i}", "op": "eq", "value": "pro"}
            else:
                # Every fifth of these counts the event the load sends.
                name = EVENT_NAME if i % 10 == 0 else f"feature_{i}"
                cond = {"event": name, "count": {"gte": 3}, "within": "7d"}
            c.put(f"/v1/segments/s{i}", json={"name": f"S{i}", "condition": cond}).raise_for_status()
        for i in range(200):
            if i % 4 == 0:
                trigger = {"segment_entered": f"s{i % 50}"}
            else:
                # A few listen to the load's event with a filter it rarely passes.
                name = EVENT_NAME if i % 20 == 1 else f"event_{i}"
                trigger = {"event": name, "where": {"properties.rows": {"gt": 999_999}}}
            c.put(f"/v1/automations/a{i}", json={
                "trigger": trigger, "goal": {"event": f"goal_{i}", "within": "7d"}, "exit_on": [f"exit_{i}"],
                "steps": [{"wait": "1h"}, {"send": {"channel": "in_app", "template_id": "t"}}]}).raise_for_status()


def engine_lag(url: str) -> tuple[int, int]:
    text = httpx.get(url + "/metrics", timeout=10).text
    lag = next((float(line.split()[-1]) for line in text.splitlines()
                if line.startswith('retenshun_bus_lag{subscriber="engine"}')), 0.0)
    ingested = sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("retenshun_events_ingested_total"))
    return int(lag), int(ingested)


def measure(work: Path, name: str, with_definitions: bool, args: argparse.Namespace, seeded: bool) -> dict:
    d = start_daemon(work / name)
    try:
        if with_definitions:
            define(d.url)
        if seeded:
            seed_users(d.url)
            wait_until(lambda: engine_lag(d.url)[0] == 0, 300, "the engine to take in the seeded users")
        run_wrk(d.url, args.batch, 16, 2, 7, work)  # warm-up
        r = run_wrk(d.url, args.batch, 16, args.duration, 11, work, server_pid=d.pid)
        lag, ingested = engine_lag(d.url)
        started = time.monotonic()
        wait_until(lambda: engine_lag(d.url)[0] == 0, 120, "the engine to catch up")
        r["catch_up_s"] = time.monotonic() - started
        r["lag_at_end"] = lag
        return r
    finally:
        d.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="retenshun-engine-"))
    results = {}
    try:
        for seeded in (True, False):
            results[seeded] = (measure(work, f"bare{seeded}", False, args, seeded),
                               measure(work, f"loaded{seeded}", True, args, seeded))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nbatch of {args.batch}, {args.duration:.0f} s each, daemon on CPU 0, wrk on CPU 1, "
          f"{USERS:,} users")
    for seeded, (bare, loaded) in results.items():
        print("known users (each sent an event before):" if seeded else
              "mostly first-seen users (checked once against the segments a blank profile matches):")
        for label, r in (("no definitions", bare), ("200 automations + 50 segments", loaded)):
            print(f"  {label:32s} {r['events_s']:9.0f} events/s   p99 {r['p99_ms']:6.1f} ms   "
                  f"engine lag at end {r['lag_at_end']:6d} events, caught up in {r['catch_up_s']:.1f} s")
        overhead = 1 - loaded["events_s"] / bare["events_s"]
        print(f"  overhead: {overhead * 100:.1f}%" + (" (target < 25%)" if seeded else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
