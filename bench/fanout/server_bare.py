"""Bare ``websockets`` comparison server for bench/fanout/run.py (not the product).

    python server_bare.py PORT [--compression deflate]

stdin commands: ``fire`` -> ``websockets.broadcast()`` of MESSAGE to every open
connection, answers ``fired <ms spent in broadcast>``; ``gc`` -> ``ok <connections>``.
Each connection gets a hello frame on connect and has its messages read (pings
answered), like the inbox endpoint does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time

import uvloop
from websockets.asyncio.server import broadcast, serve

HELLO = '{"type":"hello","unread_count":0}'


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--compression", default=None)
    args = p.parse_args()
    message = os.environ["FANOUT_MESSAGE"]
    conns: set = set()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        conns.add(ws)
        try:
            await ws.send(HELLO)
            async for frame in ws:
                if frame == '{"type":"ping"}':
                    await ws.send('{"type":"pong"}')
        except Exception:
            pass
        finally:
            conns.discard(ws)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with serve(handler, "127.0.0.1", args.port, compression=args.compression, backlog=4096):
        print("ready", flush=True)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "quit":
                return
            if line == "fire":
                t0 = time.perf_counter()
                broadcast(conns, message)
                print(f"fired {(time.perf_counter() - t0) * 1000:.3f}", flush=True)
            elif line == "gc":
                gc.collect()
                print(f"ok {len(conns)}", flush=True)


if __name__ == "__main__":
    uvloop.run(main())
