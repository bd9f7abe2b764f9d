"""In-app time-to-trigger: POST /v1/messages/send -> the frame on the user's WebSocket.

    python bench/inapp.py [--clients 1000,10000] [--rate 500] [--keep]
    python bench/inapp.py --via track --clients 5000 --rate 1000 --repeat 5

``--via track``: the request is ``POST /v1/track`` of an event that an automation
with no wait answers with an in-app message (event -> automation -> frame).

Before the timed sends every user is identified (one ``/v1/batch`` of identify
calls per 500 users, then until the daemon is idle): someone with an open inbox
is someone the app has signed in. ``--first-seen`` skips that, so each timed
event is also the user's first (a new profile, a first engagement baseline).

For each client count N: start the real daemon (``python -m retenshund``,
pinned to CPU 0), open one WebSocket per user (``u0`` .. ``u{N-1}``, each with
its own user token) from this process (pinned to CPU 1), create an in-app
template, then send one in-app message to every user, open loop at ``--rate``
requests per second over a few keep-alive HTTP connections. For each message:
from just before its request is written to the moment its ``{"type":
"message"}`` frame is read on that user's socket (CLOCK_MONOTONIC, one clock
for both). Prints p50/p90/p99/max of that and of the 202 answer.

The clients are the cheap raw-asyncio ones of bench/fanout/swarm.py, and the
HTTP requests are written by hand on persistent connections: the load
generator must cost less than what it measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and a module named like a standard one could shadow
# the standard library's email (websockets needs it). Import from the root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import uvloop  # noqa: E402

ROOT = _HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(_HERE / "fanout"))

from swarm import Swarm, percentile  # noqa: E402

from bench.ingest import OTHER_OK, machine_busy  # noqa: E402
from retenshund import tokens  # noqa: E402
from tests.support.daemon import SECRET, Daemon  # noqa: E402

SIGNING_SECRET = "e2e-signing-secret-0123456789"  # what tests/support/daemon.py configures
TEMPLATE = {"name": "Milestone", "category": "product_updates",
            "in_app": {"title": "You reached {{ milestone }}", "body": "Nice work, {{ user.id }}.",
                       "url": "https://app.example.com/milestones", "data": {"kind": "milestone"}}}


class Http:
    """HTTP/1.1 keep-alive on one connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def open(cls, host: str, port: int) -> Http:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {SECRET}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests while this one wanted it (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def identify_all(clients: int, daemon: Daemon) -> float:
    """Every user identified before the timed sends, as an app does when someone
    signs in (a user with an open inbox is someone the app knows); then until
    the daemon has finished with that (its CPU at rest). Returns the seconds taken."""
    started = time.monotonic()
    # A connection of its own: one opened before the sockets may have idled out.
    http = await Http.open("127.0.0.1", daemon.port)
    for first in range(0, clients, 500):
        batch = [{"type": "identify", "userId": f"u{i}", "traits": {"plan": "pro"}}
                 for i in range(first, min(clients, first + 500))]
        status, body = await http.request("POST", "/v1/batch", json.dumps({"batch": batch}).encode())
        assert status == 200, body
    http.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until a quarter second with the daemon (nearly) idle
        before = _cpu_seconds(daemon.pid)
        await asyncio.sleep(0.25)
        if _cpu_seconds(daemon.pid) - before < 0.025:
            break
    return time.monotonic() - started


async def run(clients: int, rate: float, connections: int, daemon: Daemon, via: str = "send",
              first_seen: bool = False) -> dict:
    host, port = "127.0.0.1", daemon.port
    http = await Http.open(host, port)
    status, body = await http.request("PUT", "/v1/templates/milestone", json.dumps(TEMPLATE).encode())
    assert status in (200, 201), body
    if via == "track":
        automation = {"trigger": {"event": "milestone_reached"},
                      "steps": [{"send": {"channel": "in_app", "template_id": "milestone"}}]}
        status, body = await http.request("PUT", "/v1/automations/milestone", json.dumps(automation).encode())
        assert status in (200, 201), body

    swarm = Swarm(host, port)
    paths = [f"/v1/inbox/ws?token={tokens.mint(SIGNING_SECRET, f'u{i}', 24 * 3600)}" for i in range(clients)]
    opened_in = await swarm.open(paths)
    hellos = sum(1 for c in swarm.clients if c.first_text and c.first_text.startswith(b'{"type":"hello"'))
    assert hellos == clients, f"{hellos} hellos for {clients} clients"
    if not first_seen:
        await identify_all(clients, daemon)

    sent_at: dict[int, float] = {}
    arrived: dict[int, float] = {}
    accepted: list[float] = []
    statuses: dict[int, int] = {}
    done = asyncio.get_running_loop().create_future()

    def on_arrival(client, now: float, payload: bytes) -> None:  # type: ignore[no-untyped-def]
        if payload.startswith(b'{"type":"message"') and client.index not in arrived:
            arrived[client.index] = now
            if len(arrived) == clients and not done.done():
                done.set_result(now)

    swarm.on_arrival = on_arrival
    pool = [await Http.open(host, port) for _ in range(connections)]
    idle: asyncio.Queue[Http] = asyncio.Queue()
    for h in pool:
        idle.put_nowait(h)

    async def send(i: int) -> None:
        h = await idle.get()
        if via == "track":
            path = "/v1/track"
            body = json.dumps({"userId": f"u{i}", "event": "milestone_reached",
                               "properties": {"milestone": "10,000 messages"}}).encode()
        else:
            path = "/v1/messages/send"
            body = json.dumps({"user_id": f"u{i}", "channel": "in_app", "template_id": "milestone",
                               "variables": {"milestone": "10,000 messages"}}).encode()
        t0 = time.monotonic()
        sent_at[i] = t0
        status, _ = await h.request("POST", path, body)
        accepted.append(time.monotonic() - t0)
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait(h)

    loop = asyncio.get_running_loop()
    cpu_before = _cpu_seconds(daemon.pid)
    busy_before, steal_before, own_before = machine_busy(), _steal_seconds(), _own_cpu_seconds()
    start = loop.time() + 0.1
    tasks: list[asyncio.Task[None]] = []
    for i in range(clients):  # open loop: request i is due at start + i / rate
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)
    send_span = loop.time() - start
    try:
        await asyncio.wait_for(done, 60)
    except TimeoutError:
        pass
    span = loop.time() - start
    daemon_cpu = (_cpu_seconds(daemon.pid) - cpu_before) / span
    # What else the machine did meanwhile (other processes, kernel threads, the
    # hypervisor's steal): a run that shared its CPUs measures that, not the daemon.
    steal = (_steal_seconds() - steal_before) / span
    other = max(0.0, (machine_busy() - busy_before) / span - daemon_cpu - (_own_cpu_seconds() - own_before) / span)
    latencies = [(arrived[i] - sent_at[i]) * 1000 for i in arrived]
    for h in pool + [http]:
        h.close()
    swarm.close()
    return {"clients": clients, "opened_in_s": opened_in, "sent": len(sent_at), "statuses": statuses,
            "delivered": len(arrived), "lost_sockets": swarm.lost, "daemon_cpu": daemon_cpu, "other_cpu": other, "steal": steal, "send_rate": len(sent_at) / send_span,
            "ttt_ms": {p: percentile(latencies, p) for p in (50, 90, 99, 100)},
            "ttt_mean_ms": statistics.mean(latencies) if latencies else None,
            "accepted_ms": {p: percentile([a * 1000 for a in accepted], p) for p in (50, 99)}}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1000,10000")
    p.add_argument("--rate", type=float, default=500.0, help="sends per second (one message per user)")
    p.add_argument("--connections", type=int, default=16, help="keep-alive HTTP connections for the sends")
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    p.add_argument("--first-seen", action="store_true",
                   help="do not identify the users first: each one's first event is the timed one")
    p.add_argument("--via", choices=["send", "track"], default="send",
                   help="send: POST /v1/messages/send; track: POST /v1/track answered by an automation")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per client count, each on a fresh daemon; with more than one, a summary of"
                        " their p50 and p99 follows (this machine's speed drifts from run to run)")
    args = p.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    daemon_cpu = str(cpus[0]) if len(cpus) >= 2 else None
    if daemon_cpu is not None:
        os.sched_setaffinity(0, {cpus[1]})
    path = "POST /v1/track -> automation" if args.via == "track" else "send API"
    print(f"in-app time-to-trigger: {path} -> frame on the user's socket; one message per user at "
          f"{args.rate:.0f}/s; daemon on cpu {daemon_cpu}, clients on cpu {sorted(os.sched_getaffinity(0))}",
          flush=True)
    for n in [int(x) for x in args.clients.split(",")]:
        p50s: list[float] = []
        p99s: list[float] = []
        for _ in range(max(1, args.repeat)):
            work = Path(tempfile.mkdtemp(prefix=f"inapp-{n}-"))
            daemon = Daemon(work / "data", taskset=daemon_cpu)
            daemon.start()
            try:
                r = await run(n, args.rate, args.connections, daemon, args.via, args.first_seen)
            finally:
                daemon.stop()
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
            t = r["ttt_ms"]
            p50s.append(t[50])
            p99s.append(t[99])
            print(f"  {n:6d} connected: p50 {t[50]:6.1f} ms  p90 {t[90]:6.1f} ms  p99 {t[99]:6.1f} ms  "
                  f"max {t[100]:6.1f} ms   (202 in p50 {r['accepted_ms'][50]:.1f} / p99 {r['accepted_ms'][99]:.1f} ms; "
                  f"{r['delivered']}/{r['sent']} delivered, sent at {r['send_rate']:.0f}/s, statuses {r['statuses']}, "
                  f"{r['lost_sockets']} sockets lost; opened in {r['opened_in_s']:.1f} s;"
                  f" daemon CPU {r['daemon_cpu']:.0%}; other work {r['other_cpu']:.2f} CPUs, steal {r['steal']:.0%})",
                  flush=True)
            if r["other_cpu"] > OTHER_OK or r["steal"] > 0.05:
                print(f"  (this run shared the machine: other work above {OTHER_OK} CPUs or steal above 5%)",
                      flush=True)
        if len(p99s) > 1:
            print(f"  {n:6d} connected, {len(p99s)} runs: p50 median {statistics.median(p50s):.1f} ms;"
                  f" p99 min {min(p99s):.1f} / median {statistics.median(p99s):.1f} / max {max(p99s):.1f} ms",
                  flush=True)


if __name__ == "__main__":
    uvloop.run(main())
