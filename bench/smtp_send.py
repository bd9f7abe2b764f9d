"""Email throughput: N messages through SmtpPool to a local aiosmtpd sink.

    python bench/smtp_send.py [-n 2000] [--pools 1,4] [--dkim-sample 100]
    python -m bench.smtp_send ...

The sink runs in a child process (so it does not share the GIL with the
client) and reports how many messages it accepted when it exits. Messages are
built before the clock starts; the figure is SmtpPool.send throughput with all
sends issued concurrently, once with EmailMessage objects (serialised inside
send) and once with bytes serialised beforehand (as a worker thread would). Target: 500 messages/s with connection reuse.
"""

# This file is named like the standard library's ``email`` package: when run as
# a script its directory is sys.path[0] and would shadow it. Drop it first.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from retenshund.channels.email import EmailSettings, SmtpPool, build_email  # noqa: E402

SINK = r"""
import asyncio, sys, threading
from aiosmtpd.smtp import SMTP

class Counter:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Counter.count += 1
        return "250 2.0.0 OK"

async def main():
    loop = asyncio.get_running_loop()
    handler = Counter()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    done = asyncio.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)), daemon=True).start()
    await done.wait()
    server.close()
    print(Counter.count, flush=True)

asyncio.run(main())
"""


def messages(settings: EmailSettings, n: int, tag: str) -> list:
    return [
        build_email(
            settings=settings,
            to=f"user{i}@example.org",
            subject=f"Bench {tag} #{i}",
            html=f"<html><body><p>Hello {i}, here is your weekly summary.</p>"
            f'<p><a href="https://engage.example.com/t/c/x{i}">Open</a></p></body></html>',
            text=f"Hello {i}, here is your weekly summary.\nhttps://engage.example.com/t/c/x{i}\n",
            message_id=f"msg_bench_{tag}_{i:06d}",
            unsubscribe_url=f"https://engage.example.com/u/token{i}",
        )
        for i in range(n)
    ]


async def run(port: int, pool_size: int, n: int, as_bytes: bool) -> tuple[float, int, dict[str, int]]:
    settings = EmailSettings(
        host="127.0.0.1",
        port=port,
        starttls=False,
        from_address="news@example.com",
        from_name="Bench",
        timeout=30,
        pool_size=pool_size,
        local_hostname="bench.test",
        max_messages_per_connection=0,
    )
    batch = messages(settings, n, f"p{pool_size}")
    if as_bytes:
        payloads = [(m.as_bytes(), [m["To"].addresses[0].addr_spec]) for m in batch]
    async with SmtpPool(settings) as pool:
        start = time.perf_counter()
        if as_bytes:
            results = await asyncio.gather(*(pool.send(data, recipients=to) for data, to in payloads))
        else:
            results = await asyncio.gather(*(pool.send(m) for m in batch))
        elapsed = time.perf_counter() - start
        opened = pool.connections_opened
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return n / elapsed, opened, outcomes


def dkim_rate(sample: int) -> float:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = EmailSettings(from_address="news@example.com", dkim_selector="s1", dkim_private_key=pem)
    start = time.perf_counter()
    messages(settings, sample, "dkim")
    return sample / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--pools", default="1,4")
    parser.add_argument("--dkim-sample", type=int, default=100, help="messages to build with DKIM (0: skip)")
    args = parser.parse_args()

    sink = subprocess.Popen(
        [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdin is not None
        port = int(sink.stdout.readline())
        total = 0
        for as_bytes in (False, True):
            for size in (int(x) for x in args.pools.split(",")):
                rate, opened, outcomes = asyncio.run(run(port, size, args.n, as_bytes))
                total += outcomes.get("sent", 0)
                kind = "bytes (serialised beforehand)" if as_bytes else "EmailMessage"
                print(f"pool_size={size}, send({kind}): {args.n} messages, {rate:,.0f} messages/s, "
                      f"{opened} connection(s) opened, outcomes {outcomes}")
        sink.stdin.close()
        accepted = int(sink.stdout.readline())
        print(f"sink accepted {accepted} messages (client counted {total} sent)")
    finally:
        if sink.poll() is None:
            sink.kill()
        sink.wait()

    if args.dkim_sample:
        print(f"build_email with DKIM (RSA-2048, dkimpy): {dkim_rate(args.dkim_sample):,.0f} messages/s on one core")


if __name__ == "__main__":
    main()
