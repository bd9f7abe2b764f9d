"""How many pushes per second send_webpush achieves with 50 concurrent sends.

The loopback push service (tests/support/push_service.py: VAPID check + RFC 8291 decryption)
runs in a separate process so its CPU does not share our GIL. Also prints the per-push
cost of the pieces (encryption, VAPID signing) measured on one thread.

    python bench/webpush.py [--pushes 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pywebpush import WebPusher  # noqa: E402

from retenshund.channels.webpush import new_push_session, push_payload, send_webpush  # noqa: E402
from retenshund.vapid import generate_vapid_keys, vapid_authorization  # noqa: E402

SUBJECT = "mailto:bench@example.com"


def serve(conn, subscriptions: int) -> None:
    from tests.support.push_service import make_subscription, running_push_service

    async def main() -> None:
        async with running_push_service() as service:
            conn.send([make_subscription(service)[0] for _ in range(subscriptions)])
            await asyncio.to_thread(conn.recv)  # parent says stop
            conn.send((len(service.received), len(service.rejections)))

    asyncio.run(main())


async def run(pushes: int, concurrency: int, subscriptions: list[dict],
              executor: ThreadPoolExecutor | None) -> tuple[float, float]:
    keys = generate_vapid_keys()
    payload = push_payload("Your cart misses you", "You left 3 items behind. They are still there.",
                           "https://shop.example/cart?utm_source=push", "https://shop.example/icon.png",
                           "msg_01HZXK3Q9W8E7R6T5Y4U3I2O1P")
    session = new_push_session(max_connections=concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(pushes):
        queue.put_nowait(i)
    outcomes: dict[str, int] = {}

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            result = await send_webpush(subscriptions[i % len(subscriptions)], payload, keys, SUBJECT,
                                        session=session, executor=executor)
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up connections
    for i in range(pushes):
        queue.put_nowait(i)
    outcomes.clear()
    max_lag = 0.0

    async def heartbeat() -> None:  # how late the loop wakes a 5 ms timer while we send
        nonlocal max_lag
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            max_lag = max(max_lag, time.perf_counter() - before - 0.005)

    beat = asyncio.create_task(heartbeat())
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    beat.cancel()
    session.close()
    assert outcomes == {"delivered": pushes}, outcomes
    return pushes / elapsed, max_lag * 1000


def piece_costs(subscription: dict) -> tuple[float, float]:
    keys = generate_vapid_keys()
    n = 500
    started = time.perf_counter()
    for _ in range(n):
        WebPusher(subscription).encode(b"x" * 200, "aes128gcm")
    encrypt_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        vapid_authorization(subscription["endpoint"], keys, SUBJECT)
    sign_us = (time.perf_counter() - started) / n * 1e6
    return encrypt_us, sign_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, 100), daemon=True)
    proc.start()
    subscriptions = parent.recv()
    try:
        encrypt_us, sign_us = piece_costs(subscriptions[0])
        default_rate, default_lag = asyncio.run(run(args.pushes, args.concurrency, subscriptions, None))
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            wide_rate, wide_lag = asyncio.run(run(args.pushes, args.concurrency, subscriptions, pool))
    finally:
        parent.send("stop")
        received, rejected = parent.recv()
        proc.join(10)
    print(f"cpus: {os.cpu_count()}  pushes: {args.pushes} x2 (+warm-up)  concurrency: {args.concurrency}")
    print(f"per push, one thread: encrypt {encrypt_us:.0f} us, VAPID sign {sign_us:.0f} us")
    print(f"send_webpush, default executor (asyncio.to_thread): {default_rate:.0f} pushes/s, "
          f"max loop lag {default_lag:.1f} ms")
    print(f"send_webpush, {args.concurrency}-thread executor: {wide_rate:.0f} pushes/s, max loop lag {wide_lag:.1f} ms")
    print(f"push service accepted {received}, rejected {rejected}")


if __name__ == "__main__":
    main()
