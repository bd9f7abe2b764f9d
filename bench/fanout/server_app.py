"""The retenshun daemon's app for bench/fanout/run.py, started here with
uvicorn exactly as ``retenshund serve`` starts it (same protocol classes), so
the bench can call ``hub.broadcast_users`` directly: no debug route in the
product.

    python server_app.py PORT DATA_DIR

stdin commands: ``fire N`` -> ``hub.broadcast_users(["u0".."u{N-1}"], [MESSAGE])``,
answers ``fired <ms spent in broadcast_users>``; ``gc`` -> ``ok <connections>``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path

import uvicorn
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from retenshund.app import create_app  # noqa: E402
from retenshund.config import load_config  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-0123456789"


def uvicorn_config(app: object, port: int, ws: str) -> uvicorn.Config:
    """The settings of retenshund.cli.serve (keep in step)."""
    return uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws=ws,
                          lifespan="on", log_level="warning", server_header=False, date_header=False,
                          backlog=4096)


async def main() -> None:
    port, data_dir = int(sys.argv[1]), sys.argv[2]
    ws = sys.argv[3] if len(sys.argv) > 3 else "retenshund.channels.wsserver:WebSocketProtocol"
    message = os.environ["FANOUT_MESSAGE"].encode()
    config = load_config(None, env={}, overrides={
        "store": {"data_dir": data_dir},
        "auth": {"secret_keys": ["sk_bench_0001"], "signing_secret": SIGNING_SECRET},
        "log": {"level": "warning"},
    })
    app = create_app(config, announce=False)
    server = uvicorn.Server(uvicorn_config(app, port, ws))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    hub = app.state.services.extra["hub"]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    users: list[str] = []
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        cmd, _, arg = line.partition(" ")
        if cmd == "fire":
            n = int(arg)
            if len(users) != n:
                users = [f"u{i}" for i in range(n)]
            t0 = time.perf_counter()
            reached = hub.broadcast_users(users, [message])
            print(f"fired {(time.perf_counter() - t0) * 1000:.3f} {reached}", flush=True)
        elif cmd == "gc":
            gc.collect()
            print(f"ok {hub.total}", flush=True)
    server.should_exit = True
    await serving


if __name__ == "__main__":
    uvloop.run(main())
