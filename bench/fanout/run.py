"""Fan-out and idle-memory bench: our daemon's hub vs bare ``websockets`` vs socket.io.

    python bench/fanout/run.py [--users 5000] [--rounds 9] [--servers app,bare,sio] [--deflate]

For each server (one process pinned to core 0 with ``taskset``): open one
WebSocket per user from this process (pinned to core 1; cheap raw-asyncio
clients from swarm.py), then

* memory: (server RSS with N idle connections - RSS before) / N;
* fan-out: write "fire" to the server's stdin and time, on the client side,
  from just before that write until the last of the N clients has the frame
  (CLOCK_MONOTONIC in both processes). Repeated ``--rounds`` times.

Servers: ``app`` = the retenshun app under uvicorn exactly as ``retenshund
serve`` runs it, fan-out by ``hub.broadcast_users``; ``app-websockets-sansio``
(``app-wsproto``, ...) = the same app on one of uvicorn's own WebSocket
protocols (the hub then writes through ASGI ``send``); ``bare`` = a bare
``websockets`` server, ``websockets.broadcast()``; ``sio`` = socket.io 4 on
Node, ``io.emit`` (install with ``npm install`` in bench/fanout first).
``--deflate`` makes the clients offer permessage-deflate as browsers do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from swarm import Swarm, rss_kb  # noqa: E402

from retenshund import tokens  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-0123456789"
# A realistic inbox frame (what the dispatcher pushes for one in-app message).
MESSAGE = json.dumps({"type": "message", "message": {
    "id": "msg_01J9ZK3Q9W8E7R6T5Y4U3I2O1P", "title": "You reached 10,000 messages",
    "body": "Your workspace just sent its 10,000th message. Here is what your best campaigns have in common.",
    "url": "https://app.example.com/reports/milestones?utm_source=inapp", "data": {"milestone": 10000},
    "created_at": "2026-11-26T08:00:00.000Z", "read_at": None, "archived_at": None}},
    separators=(",", ":"))


class Server:
    def __init__(self, name: str, port: int, cpu: str | None) -> None:
        self.name = name
        self.port = port
        self.cpu = cpu
        self.tmp = tempfile.mkdtemp(prefix=f"fanout-{name}-")
        self.proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        py = sys.executable
        if self.name == "app":
            cmd = [py, str(HERE / "server_app.py"), str(self.port), self.tmp + "/data"]
        elif self.name.startswith("app-"):  # the same app on one of uvicorn's own protocols
            cmd = [py, str(HERE / "server_app.py"), str(self.port), self.tmp + "/data", self.name[4:]]
        elif self.name == "bare":
            cmd = [py, str(HERE / "server_bare.py"), str(self.port)]
        elif self.name == "bare-deflate":
            cmd = [py, str(HERE / "server_bare.py"), str(self.port), "--compression", "deflate"]
        elif self.name == "sio":
            cmd = ["node", "--expose-gc", str(HERE / "server_sio.js"), str(self.port)]
        else:
            raise SystemExit(f"unknown server {self.name}")
        return (["taskset", "-c", self.cpu] if self.cpu else []) + cmd

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "FANOUT_MESSAGE": MESSAGE}, cwd=str(HERE))
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)  # type: ignore[union-attr]
        if line.strip() != b"ready":
            raise RuntimeError(f"{self.name} did not start: {line!r}")

    async def ask(self, cmd: str) -> str:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(cmd.encode() + b"\n")
        await self.proc.stdin.drain()
        return (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode().strip()

    def rss(self) -> int:
        assert self.proc
        return rss_kb(self.proc.pid)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def paths(name: str, users: int, start: int = 0) -> list[str]:
    if name.startswith("app"):
        return [f"/v1/inbox/ws?token={tokens.mint(SIGNING_SECRET, f'u{i}', 24 * 3600)}"
                for i in range(start, start + users)]
    if name == "sio":
        return ["/socket.io/?EIO=4&transport=websocket"] * users
    return ["/"] * users


async def wait_connections(server: Server, want: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        count = int((await server.ask("gc")).split()[1])
        if count == want:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: {count} connections, expected {want}")
        await asyncio.sleep(0.1)


async def connect(server: Server, users: int, deflate: bool) -> tuple[Swarm, float, float]:
    """Open ``users`` idle connections; returns (swarm, seconds, RSS bytes per connection)."""
    mode = "socketio" if server.name == "sio" else "ws"
    # Warm up (imports, allocator pools), then let those sockets go.
    warm = Swarm("127.0.0.1", server.port, mode=mode, deflate=deflate)
    await warm.open(paths(server.name, 200, start=users))
    warm.close()
    await wait_connections(server, 0)
    base = server.rss()
    swarm = Swarm("127.0.0.1", server.port, mode=mode, deflate=deflate)
    opened_in = await swarm.open(paths(server.name, users))
    await wait_connections(server, users)
    return swarm, opened_in, (server.rss() - base) * 1024 / users


async def fire(server: Server, swarm: Swarm, users: int) -> tuple[float, float]:
    """One fan-out; returns (ms until the last client had it, ms the server spent sending)."""
    done = swarm.expect(users)
    t0 = time.monotonic()
    answer = asyncio.ensure_future(server.ask(f"fire {users}" if server.name.startswith("app") else "fire"))
    last = await asyncio.wait_for(done, 60)
    return (last - t0) * 1000, float((await answer).split()[1])


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--servers", default="app,bare,sio")
    p.add_argument("--deflate", action="store_true", help="clients offer permessage-deflate (browsers do)")
    p.add_argument("--port", type=int, default=18470)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    cpus = os.sched_getaffinity(0)
    server_cpu = None
    if len(cpus) >= 2:
        first, second = sorted(cpus)[:2]
        server_cpu = str(first)
        os.sched_setaffinity(0, {second})
    print(f"fan-out of one {len(MESSAGE)}-byte message to {args.users} users (one connection each), "
          f"{args.rounds} rounds; server on cpu {server_cpu}, clients on cpu "
          f"{sorted(os.sched_getaffinity(0))}; clients offer deflate: {args.deflate}", flush=True)
    names = args.servers.split(",")
    servers = [Server(name, args.port + i, server_cpu) for i, name in enumerate(names)]
    swarms: dict[str, Swarm] = {}
    results: dict[str, dict] = {}
    try:
        # All servers stay up, each with its own idle clients; the rounds are
        # interleaved (app, bare, sio, app, ...) so that noise from anything else
        # on the machine falls on every server alike.
        for server in servers:
            await server.start()
            swarm, opened_in, per_conn = await connect(server, args.users, args.deflate)
            swarms[server.name] = swarm
            results[server.name] = {"server": server.name, "users": args.users, "open_s": opened_in,
                                    "bytes_per_conn": per_conn, "fanout_ms": [], "in_server_ms": []}
        for _ in range(args.rounds):
            for server in servers:
                total, inside = await fire(server, swarms[server.name], args.users)
                results[server.name]["fanout_ms"].append(total)
                results[server.name]["in_server_ms"].append(inside)
                await asyncio.sleep(0.2)  # let ACKs and timers settle between rounds
    finally:
        for swarm in swarms.values():
            swarm.close()
        for server in servers:
            await server.stop()
    for name in names:
        r = results[name]
        t = r["fanout_ms"]
        print(f"  {name:22s} fan-out p50 {statistics.median(t):7.1f} ms  (min {min(t):6.1f}, max {max(t):6.1f}; "
              f"in-server send {statistics.median(r['in_server_ms']):6.1f} ms)   "
              f"idle memory {r['bytes_per_conn'] / 1000:5.1f} KB/connection   "
              f"(opened in {r['open_s']:.1f} s)", flush=True)
    if "app" in results:
        app = results["app"]["fanout_ms"]
        for other in ("bare", "bare-deflate", "sio"):
            if other in results:
                theirs = results[other]["fanout_ms"]
                paired = statistics.median(a / b for a, b in zip(app, theirs))
                print(f"  app / {other}: {statistics.median(app) / statistics.median(theirs):.2f}x "
                      f"(ratio of medians; median of per-round ratios {paired:.2f}x)")
        print(f"  app / bare idle memory: {results['app']['bytes_per_conn'] / results['bare']['bytes_per_conn']:.2f}x"
              if "bare" in results else "")
    if args.json:
        Path(args.json).write_text(json.dumps(list(results.values()), indent=2))


if __name__ == "__main__":
    uvloop.run(main())
