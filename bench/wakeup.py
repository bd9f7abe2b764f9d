"""Wake-up precision: 10,000 runs waiting for the same second.

    python bench/wakeup.py [--runs N] [--wait S]

Starts the real daemon (pinned to CPU 0 when taskset exists), defines an
automation ``go -> wait S -> send in_app``, enters N users at once (batches),
and after the wait reads every message back: for each, lateness = the moment
its step ran (message created_at) minus the moment it was due (trigger time +
wait). Prints p50 / p99 / max lateness and how long the whole wave took to
drain. Loopback only; bounded in count and time."""

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

from tests.support.daemon import PUBLISHABLE, SECRET, Daemon, wait_until


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--wait", type=int, default=20, help="seconds every run waits")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="retenshun-wakeup-"))
    d = Daemon(work / "data", taskset="0" if shutil.which("taskset") else None).start()
    h = {"Authorization": f"Bearer {SECRET}"}
    try:
        with httpx.Client(base_url=d.url, timeout=60) as c:
            c.put("/v1/templates/t", json={"in_app": {"title": "ding"}}, headers=h).raise_for_status()
            c.put("/v1/automations/wake", json={"trigger": {"event": "go"}, "steps": [
                {"wait": f"{args.wait}s"}, {"send": {"channel": "in_app", "template_id": "t"}}]},
                  headers=h).raise_for_status()
            started = time.monotonic()
            for i in range(0, args.runs, 500):
                batch = [{"type": "track", "userId": f"u{j}", "event": "go"} for j in range(i, min(i + 500, args.runs))]
                c.post("/v1/batch", json={"batch": batch}, headers={"Authorization": f"Bearer {PUBLISHABLE}"}
                       ).raise_for_status()
            entered = time.monotonic() - started
            print(f"entered {args.runs} runs in {entered:.2f}s (their due times span that much)")
            wait_until(lambda: len(c.get("/v1/automations/wake/runs?limit=1000", headers=h).json()["runs"]) > 0,
                       60, "runs")
            deadline = args.wait + entered + 300
        # Read every message straight from the file: the API pages at 1000.
        import sqlite3

        wait_until(lambda: sqlite3.connect(work / "data" / "retenshun.db").execute(
            "SELECT count(*) FROM messages").fetchone()[0] >= args.runs, deadline, "every message")
        conn = sqlite3.connect(work / "data" / "retenshun.db")
        rows = conn.execute("SELECT trigger_at, created_at, delivered_at FROM messages").fetchall()
        late = [(created - (trigger + args.wait * 1000)) for trigger, created, _ in rows]
        delivered = [(dv - (trigger + args.wait * 1000)) for trigger, _, dv in rows if dv]
        first_due = min(t for t, _, _ in rows) + args.wait * 1000
        last_sent = max(dv or c_ for _, c_, dv in rows)
        print(f"\n{len(rows)} runs due within {entered:.2f}s of each other")
        print(f"due -> step ran     p50 {pct(late, 50):7.0f} ms   p99 {pct(late, 99):7.0f} ms   max {max(late):7.0f} ms")
        print(f"due -> delivered    p50 {pct(delivered, 50):7.0f} ms   p99 {pct(delivered, 99):7.0f} ms   "
              f"max {max(delivered):7.0f} ms")
        print(f"first due -> last delivered: {(last_sent - first_due) / 1000:.2f} s "
              f"({len(rows) / max(0.001, (last_sent - first_due) / 1000):.0f} runs/s)")
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
