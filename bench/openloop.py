"""Open-loop, fixed-rate HTTP/1.1 load for ``POST /v1/track`` (coordinated-omission corrected).

    python bench/openloop.py URL --rate R [--connections 64] [--duration S] [--warmup S] [--seed N]
                             [--timeout S] [--server-pid PID]

Request i of a run is due at t0 + i/R. The pacer writes every due request on an
idle keep-alive connection, in order; when all connections are busy, the due
requests wait and are written as connections free up. Each request's latency is
measured from its *due* time to the end of its response (as wrk2 does), so a
server that falls behind is charged for the time requests spent waiting to be
sent, not only for the time on the wire. One request per connection at a time,
no pipelining.

The requests are the track calls of bench/ingest.py's wrk script (a random user
of 100,000, a random UUIDv4 ``messageId`` from a generator seeded with --seed,
the same properties and ``context.library``, HTTP Basic auth with the
publishable key), all built before the clock starts.

The pacer sleeps on a Linux timerfd armed for the next due time (microsecond
precision; the event loop's own timers round to milliseconds) and also runs
whenever a response completes. ``pacer_late_*`` says how late the timer woke
the pacer, i.e. the generator's own imprecision; ``send_lag_*`` is due -> written,
which also includes waiting for a free connection (the server's doing).

Prints one JSON line: achieved rate (2xx responses per second from t0 to the
last response), requests, errors (non-2xx, connection, timeouts: requests with
no answer --timeout seconds after the schedule ended), latency p50/p90/p99/p99.9/max
in ms, the generator's own CPU use during the run and, with --server-pid, the
server's and everything else's on the machine.

As a library: ``run(...)`` in this process (asyncio, uvloop when importable),
``run_subprocess(...)`` in a child process pinned with ``taskset`` (what
bench/ingest.py does: the generator on CPU 1, the daemon on CPU 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; a module here named like a standard one could
# shadow it. Import from the repository root instead (bench.ingest holds the event's shape).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import ctypes
import gc
import json
import math
import os
import random
import subprocess
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from bench import ingest

monotonic = time.monotonic  # CLOCK_MONOTONIC on Linux: the timerfd's clock
MAX_REQUESTS = 2_000_000  # all built before the clock starts: about 1 GB


# -- the requests ---------------------------------------------------------------------------


def basic_auth() -> str:
    return ingest.basic_auth()


def track_body(rnd: random.Random) -> bytes:
    """One Segment track call, the same as the wrk script's ``event(false)``."""
    user = rnd.randint(1, ingest.USERS)
    mid = ingest.uuid4(rnd)
    data = ingest.DATA_TEMPLATE.format(rows=rnd.randint(1, 5000), ms=rnd.randint(1, 2000))
    return (f'{{"userId":"user-{user}","event":{json.dumps(ingest.EVENT_NAME)},"messageId":"{mid}",'
            f'{data[1:]}').encode()


def build_requests(host: str, path: str, count: int, rnd: random.Random) -> list[bytes]:
    """``count`` complete ``POST path`` requests (head + body), ready to write."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: {basic_auth()}\r\nContent-Length: ").encode()
    out = []
    for _ in range(count):
        body = track_body(rnd)
        out.append(b"%s%d\r\n\r\n%s" % (head, len(body), body))
    return out


# -- the pacer's timer ------------------------------------------------------------------------


class _TimerFd:
    """A one-shot CLOCK_MONOTONIC timerfd (absolute deadline), read by the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Any) -> None:
        libc = ctypes.CDLL(None, use_errno=True)

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        class Itimerspec(ctypes.Structure):
            _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

        create = libc.timerfd_create
        create.argtypes = [ctypes.c_int, ctypes.c_int]
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self.fd = create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self._spec = Itimerspec()
        self._value = self._spec.it_value
        self._ref = ctypes.addressof(self._spec)
        self._loop = loop
        self._callback = callback
        loop.add_reader(self.fd, self._fired)

    def arm(self, at: float) -> None:
        sec = int(at)
        self._value.tv_sec = sec
        self._value.tv_nsec = max(1, int((at - sec) * 1e9))  # 0/0 would disarm
        self._settime(self.fd, 1, self._ref, None)  # 1 = TFD_TIMER_ABSTIME

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:  # re-armed after it became readable: not due yet
            return
        self._callback()

    def close(self) -> None:
        self._loop.remove_reader(self.fd)
        os.close(self.fd)


class _LoopTimer:
    """Fallback without timerfd: the event loop's own timer (millisecond granularity)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Any) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(max(0.0, at - monotonic()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._callback()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


# -- connections ---------------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection, at most one request in flight; minimal response parsing
    (status line, Content-Length, or a chunked body's last chunk)."""

    def __init__(self, gen: OpenLoop) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen._ready(self)

    def send(self, request: bytes, due: float) -> None:
        self.busy = True
        self.due = due
        self.transport.write(request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf = data
            return
        head = data[:end].lower()
        k = head.find(b"\r\ncontent-length:")
        if k >= 0:
            e = head.find(b"\r\n", k + 17)
            total = end + 4 + int(head[k + 17:e if e >= 0 else end])
        elif b"\r\ntransfer-encoding:" in head and b"chunked" in head:
            if not data.endswith(b"\r\n0\r\n\r\n"):
                self.buf = data
                return
            total = len(data)
        else:
            total = end + 4  # no body
        if len(data) < total:
            self.buf = data
            return
        self.buf = b""
        status = int(data[9:12]) if data[:5] == b"HTTP/" and data[9:12].isdigit() else 0
        if len(data) > total or not self.busy or not status:
            self._protocol_error()
            return
        self.busy = False
        self.gen._response(self, status)

    def _protocol_error(self) -> None:
        """Not one response to our one request: count it (once), drop the connection."""
        self.gen.protocol_errors += 1
        if self.busy:
            self.busy = False
            self.gen._finish(monotonic())
        self.transport.abort()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen._lost(self)


# -- the generator ------------------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list (q in 0..100)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class OpenLoop:
    """Fixed-rate load over ``connections`` keep-alive connections to ``host:port``."""

    def __init__(self, url: str, connections: int = 64) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http:// URL, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.path = parts.path if parts.path not in ("", "/") else "/v1/track"
        self.connections = connections
        self.conns: set[_Conn] = set()
        self.idle: deque[_Conn] = deque()
        self.closing = False
        self.connect_errors = 0
        self.protocol_errors = 0
        self._reset([], 1.0)

    def _reset(self, requests: list[bytes], rate: float) -> None:
        self.requests = requests
        self.n = len(requests)
        self.rate = rate
        self.interval = 1.0 / rate
        self.t0 = 0.0
        self.next_i = self.n  # nothing to send until a run starts
        self.finished = 0
        self.ok = 0
        self.status_errors = 0
        self.read_errors = 0
        self.latencies: list[float] = []
        self.send_lag: list[float] = []
        self.pacer_late: list[float] = []
        self.armed_i = -1  # the request the timer is armed for
        self.max_waiting = 0
        self.last_done = 0.0
        self.done: asyncio.Future[None] | None = None

    # connections

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while not self.closing:
            try:
                await loop.create_connection(lambda: _Conn(self), self.host, self.port)
                return
            except OSError:
                self.connect_errors += 1
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def open(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.timer: _TimerFd | _LoopTimer = _TimerFd(loop, self._timer_fired)
        except (OSError, AttributeError, NotImplementedError):
            self.timer = _LoopTimer(loop, self._timer_fired)
        try:
            await asyncio.wait_for(asyncio.gather(*(self._connect() for _ in range(self.connections))), timeout)
        except TimeoutError:
            self.close()
            raise RuntimeError(f"could not open {self.connections} connections to {self.host}:{self.port}"
                               f" in {timeout:g} s ({self.connect_errors} connect errors)") from None

    def _ready(self, conn: _Conn) -> None:
        self.conns.add(conn)
        self.idle.append(conn)
        self._pump(monotonic())

    def _lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        if conn.busy:
            conn.busy = False
            self.read_errors += 1
            self._finish(monotonic())
        if not self.closing:  # a server closing an idle keep-alive connection is not an error
            asyncio.get_running_loop().create_task(self._connect())

    def close(self) -> None:
        self.closing = True
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()

    # the schedule

    def _pump(self, now: float) -> None:
        """Write every request due by ``now`` on an idle connection; arm the timer for the next."""
        i = self.next_i
        n = self.n
        if i >= n:
            return
        idle = self.idle
        t0, interval, requests = self.t0, self.interval, self.requests
        while idle:
            due = t0 + i * interval
            if due > now:
                if i != self.armed_i:
                    self.armed_i = i
                    self.timer.arm(due)
                break
            idle.popleft().send(requests[i], due)
            self.send_lag.append(now - due)
            i += 1
            if i >= n:
                break
        else:
            waiting = int((now - t0) * self.rate) + 1 - i
            if waiting > self.max_waiting:
                self.max_waiting = waiting
        self.next_i = i

    def _timer_fired(self) -> None:
        now = monotonic()
        if self.armed_i == self.next_i < self.n:  # not written in the meantime by a response's pump
            self.pacer_late.append(now - (self.t0 + self.armed_i * self.interval))
        self.armed_i = -1
        self._pump(now)

    def _response(self, conn: _Conn, status: int) -> None:
        now = monotonic()
        self.latencies.append(now - conn.due)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.status_errors += 1
        self.idle.append(conn)
        self._finish(now)
        self._pump(now)

    def _finish(self, now: float) -> None:
        self.finished += 1
        self.last_done = now
        if self.finished >= self.n and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def run_phase(self, requests: list[bytes], rate: float, timeout: float = 10.0,
                        server_pid: int | None = None) -> dict[str, Any]:
        """Send ``requests`` at ``rate`` per second; wait for the answers (at most ``timeout``
        seconds after the last one was due); the statistics of this phase."""
        loop = asyncio.get_running_loop()
        self._reset(requests, rate)
        self.done = loop.create_future()
        if self.n == 0:
            self.done.set_result(None)
        errors_before = (self.connect_errors, self.protocol_errors)
        cpu0, server0, machine0 = time.process_time(), _cpu(server_pid), ingest.machine_busy()
        self.t0 = monotonic() + 0.01
        self.next_i = 0
        self.armed_i = 0
        self.timer.arm(self.t0)
        scheduled = self.n / rate
        await asyncio.wait({self.done}, timeout=max(0.0, self.t0 + scheduled + timeout - monotonic()))
        end = max(self.last_done, monotonic() if self.finished < self.n else 0.0)
        cpu = time.process_time() - cpu0
        server = _cpu(server_pid) - server0 if server_pid else 0.0
        machine = ingest.machine_busy() - machine0
        unsent = self.n - self.next_i
        timeouts = self.n - self.finished - unsent
        if timeouts or unsent:  # give up on them: drop the busy connections (they reconnect)
            self.next_i = self.n
            for conn in list(self.conns):
                if conn.busy and conn.transport is not None:
                    conn.busy = False
                    conn.transport.abort()
        seconds = max(end - self.t0, 1e-9)
        lat = sorted(self.latencies)
        lag = sorted(self.send_lag)
        late = sorted(self.pacer_late)
        connect_errors = self.connect_errors - errors_before[0]
        protocol_errors = self.protocol_errors - errors_before[1]
        ms = 1000.0
        return {
            "rate": rate, "connections": self.connections, "requests": self.n, "scheduled_s": scheduled,
            "seconds": seconds, "ok": self.ok, "achieved_rate": self.ok / seconds,
            "errors": self.status_errors + self.read_errors + connect_errors + protocol_errors + timeouts + unsent,
            "status_errors": self.status_errors, "read_errors": self.read_errors, "connect_errors": connect_errors,
            "protocol_errors": protocol_errors, "timeouts": timeouts, "unsent": unsent,
            "p50_ms": _percentile(lat, 50) * ms, "p90_ms": _percentile(lat, 90) * ms,
            "p99_ms": _percentile(lat, 99) * ms, "p999_ms": _percentile(lat, 99.9) * ms,
            "max_ms": (lat[-1] if lat else float("nan")) * ms,
            "send_lag_p50_ms": _percentile(lag, 50) * ms, "send_lag_p99_ms": _percentile(lag, 99) * ms,
            "send_lag_max_ms": (lag[-1] if lag else float("nan")) * ms,
            "pacer_late_p50_ms": _percentile(late, 50) * ms, "pacer_late_p99_ms": _percentile(late, 99) * ms,
            "pacer_late_max_ms": (late[-1] if late else float("nan")) * ms,
            "pacer": "timerfd" if isinstance(self.timer, _TimerFd) else "loop timer",
            "max_waiting": self.max_waiting, "gen_cpu": cpu / seconds,
            "server_cpu": server / seconds,
            "other_cpu": max(0.0, machine - cpu - server) / seconds,
        }

    async def run(self, rate: float, duration: float, seed: int, warmup: float = 0.0, timeout: float = 10.0,
                  server_pid: int | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        rnd = random.Random(seed)
        build_started = time.perf_counter()
        warm = build_requests(self.host_header, self.path, round(rate * warmup), rnd)
        measured = build_requests(self.host_header, self.path, round(rate * duration), rnd)
        build_s = time.perf_counter() - build_started
        gc.collect()
        gc.disable()  # no collector pauses in the generator (it makes no reference cycles)
        try:
            await self.open(timeout)
            if warm:
                await self.run_phase(warm, rate, timeout)
            r = await self.run_phase(measured, rate, timeout, server_pid)
        finally:
            gc.enable()
            self.close()
            self.timer.close()
        r.update({"url": f"http://{self.host_header}{self.path}", "duration_s": duration, "warmup_s": warmup,
                  "seed": seed, "build_s": build_s, "loop": type(loop).__module__.split(".")[0]})
        return r


def _cpu(pid: int | None) -> float:
    return ingest.cpu_seconds(pid) if pid else 0.0


def _event_loop_runner() -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def run(url: str, rate: float, duration: float, connections: int = 64, seed: int | None = None,
        warmup: float = 0.0, timeout: float = 10.0, server_pid: int | None = None) -> dict[str, Any]:
    """Fixed-rate load in this process; returns the statistics of the measured part."""
    if seed is None:
        seed = random.randrange(1 << 30)
    gen = OpenLoop(url, connections)
    return _event_loop_runner()(gen.run(rate, duration, seed, warmup, timeout, server_pid))  # type: ignore[no-any-return]


def run_subprocess(url: str, rate: float, duration: float, connections: int = 64, seed: int | None = None,
                   warmup: float = 0.0, timeout: float = 10.0, server_pid: int | None = None,
                   cpu: str | None = None) -> dict[str, Any]:
    """``run`` in a child process, pinned to ``cpu`` with taskset when given."""
    cmd = [sys.executable, str(Path(__file__).resolve()), url, "--rate", repr(float(rate)), "--duration",
           repr(float(duration)), "--connections", str(connections), "--warmup", repr(float(warmup)),
           "--timeout", repr(float(timeout))]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if server_pid:
        cmd += ["--server-pid", str(server_pid)]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=warmup + duration + 2 * timeout + 120)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"openloop failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: float("nan") if v is None else v for k, v in r.items()}


def _plain(v: Any) -> Any:
    """Floats rounded; NaN (no answers, so no percentiles) as null: strict JSON."""
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    return v


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="http://host:port[/path]; the path defaults to /v1/track")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--connections", type=int, default=ingest.TRACK_CONNECTIONS, help="keep-alive connections (64)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of the measured schedule (10)")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds at the same rate before it, not counted (0)")
    p.add_argument("--seed", type=int, default=None, help="seeds users and messageIds (default: random)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds after the schedule ends to wait for answers; the rest count as timeouts (10)")
    p.add_argument("--server-pid", type=int, default=None, help="also report this process's CPU use")
    a = p.parse_args()
    if a.rate <= 0 or a.duration <= 0 or a.connections <= 0:
        p.error("--rate, --duration and --connections must be positive")
    if a.rate * (a.duration + a.warmup) > MAX_REQUESTS:
        p.error(f"rate x (duration + warmup) must stay under {MAX_REQUESTS:,}: the requests are built in memory first")
    r = run(a.url, a.rate, a.duration, a.connections, a.seed, a.warmup, a.timeout, a.server_pid)
    print(json.dumps({k: _plain(v) for k, v in r.items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
