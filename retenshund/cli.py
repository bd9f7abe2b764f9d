"""The command line: ``retenshund [serve]``, ``retenshund keys ...``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config


def _common(p: argparse.ArgumentParser, *, sub: bool = False) -> None:
    # On subcommands the default is SUPPRESS, so `retenshund --data-dir X keys list`
    # keeps the X given before the subcommand (argparse would reset it to None).
    default = argparse.SUPPRESS if sub else None
    p.add_argument("--config", default=default, help="TOML config file (default ./retenshund.toml when present)")
    p.add_argument("--data-dir", default=default, help="data folder (default ./retenshun-data)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retenshund", description="retenshun: customer engagement daemon")
    p.add_argument("--version", action="version", version=f"retenshund {__version__}")
    _common(p)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8470)")
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the daemon (the default)")
    _common(serve, sub=True)
    serve.add_argument("--host", default=argparse.SUPPRESS, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=argparse.SUPPRESS, help="port (default 8470)")
    keys = sub.add_parser("keys", help="list, create or revoke API keys")
    _common(keys, sub=True)
    ks = keys.add_subparsers(dest="keys_command", required=True)
    _common(ks.add_parser("list", help="show every key (hints only)"), sub=True)
    create = ks.add_parser("create", help="make a new key and print it once")
    _common(create, sub=True)
    create.add_argument("--kind", choices=["secret", "publishable"], default="secret")
    create.add_argument("--label", default="")
    revoke = ks.add_parser("revoke", help="revoke a key by its id (key_...)")
    _common(revoke, sub=True)
    revoke.add_argument("key_id")
    for name, text in (("apply", "send the definitions in DIR to a running daemon"),
                       ("diff", "show what 'apply DIR' would change")):
        cmd = sub.add_parser(name, help=text)
        _common(cmd, sub=True)
        cmd.add_argument("dir", help="folder with templates/, segments/ and automations/ files (TOML or JSON)")
        cmd.add_argument("--url", default=os.environ.get("RETENSHUN_URL"),
                         help="daemon URL (default RETENSHUN_URL, else http://127.0.0.1:<port>)")
        cmd.add_argument("--key", default=os.environ.get("RETENSHUN_SECRET_KEY"),
                         help="secret key (default RETENSHUN_SECRET_KEY, else the data dir's first key)")
    return p


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {
        "store": {"data_dir": args.data_dir},
        "server": {"host": getattr(args, "host", None), "port": getattr(args, "port", None)},
    }
    return load_config(args.config, overrides=overrides)


def _listen(host: str, port: int) -> socket.socket | None:
    """The listening socket, bound before anything else starts (no keys made, no
    store opened for a daemon that cannot serve); None after saying why not."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = (" (is another retenshund running? choose another port with --port or"
                " RETENSHUN_SERVER_PORT)" if exc.errno == errno.EADDRINUSE else "")
        print(f"retenshund: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return None
    sock.set_inheritable(True)
    return sock


def serve(config: Config) -> int:
    import uvicorn

    from .app import create_app
    from .logs import setup

    sock = _listen(config.server.host, config.server.port)
    if sock is None:
        return 1
    setup(config.log.level, config.log.format)
    print(f"retenshund {__version__}: data in {config.data_dir.resolve()}, "
          f"listening on http://{config.server.host}:{config.server.port}", flush=True)
    app = create_app(config)
    # Everything imported and built so far lives as long as the process: keep it
    # out of the collector's way, and collect the young generation less often.
    # With thousands of open sockets a full collection walks every one of them
    # and stalls every message behind it.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    server = uvicorn.Server(uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.port,
        loop="uvloop",
        # uvicorn's httptools protocol, minus a reference cycle per WebSocket
        # upgrade (retenshund/channels/httpserver.py).
        http="retenshund.channels.httpserver:HttpProtocol",
        # Our own WebSocket protocol class for uvicorn (same port, plain ASGI to
        # the app). Measured with 5,000 idle sockets and browser-like clients
        # (bench/fanout): uvicorn's "websockets-sansio" costs 62 KB per socket
        # (it always accepts permessage-deflate; 24 KB without), "wsproto" 114 KB,
        # the deprecated "websockets" 31 KB; ours 14 KB, as much as a bare
        # `websockets` server. It also lets the inbox hub write a pre-framed
        # message straight to each transport (fan-out to 5,000 users: ~50 ms vs
        # ~63 ms for websockets.broadcast() and ~70 ms for socket.io on Node).
        # See retenshund/channels/wsserver.py.
        ws="retenshund.channels.wsserver:WebSocketProtocol",
        # Clients only send tiny frames (ping, read): refuse anything big.
        ws_max_size=64 * 1024,
        lifespan="on",
        access_log=config.log.access_log,
        # uvicorn logs requests at info: raise its level only when they are wanted.
        log_level="info" if config.log.access_log else "warning",
        timeout_graceful_shutdown=int(config.server.shutdown_timeout),
        server_header=False,
        date_header=False,
    ))
    server.run(sockets=[sock])  # handles SIGINT/SIGTERM: stop accepting, finish requests, run shutdown
    return 0


def _print_config_keys(config: Config) -> None:
    from . import credentials as c

    for key in config.auth.secret_keys + config.auth.publishable_keys:
        print(f"{c.key_id(key)}  {c.key_kind(key) or 'secret':<11}  {c.key_hint(key)}  (from config)")


async def _keys(config: Config, args: argparse.Namespace) -> int:
    from . import credentials as c
    from .clock import SystemClock, iso
    from .store import open_store

    if args.keys_command != "create" and not (config.data_dir / "retenshun.db").exists():
        # Reading (or revoking) must not make a data folder where there was none,
        # e.g. when run from the wrong directory.
        if args.keys_command == "list":
            _print_config_keys(config)
        print(f"no store in {config.data_dir}: start the daemon there once, or pass --data-dir",
              file=sys.stderr)
        return 1 if args.keys_command == "revoke" else 0
    store = open_store(config)
    await store.open()
    try:
        if args.keys_command == "list":
            rows = await store.list_api_keys()
            _print_config_keys(config)
            for k in rows:
                state = f"revoked {iso(k.revoked_at)}" if k.revoked_at else "active"
                print(f"{k.key_id}  {k.kind:<11}  {k.hint}  {state}  created {iso(k.created_at)}"
                      + (f"  {k.label}" if k.label else ""))
            if not rows and not config.auth.secret_keys + config.auth.publishable_keys:
                print("no keys yet: start the daemon once, or run 'retenshund keys create'")
        elif args.keys_command == "create":
            key = c.new_key(args.kind)
            await store.add_api_key(c.key_id(key), args.kind, c.key_hash(key), c.key_hint(key), args.label,
                                    SystemClock().now_ms())
            print(f"created {args.kind} key {c.key_id(key)} (shown once, store it now):\n\n  {key}\n")
        elif args.keys_command == "revoke":
            if await store.revoke_api_key(args.key_id, SystemClock().now_ms()):
                print(f"revoked {args.key_id}; running daemons refuse it within 5 seconds")
            else:
                print(f"no active key {args.key_id} (see 'retenshund keys list')", file=sys.stderr)
                return 1
    finally:
        await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"retenshund: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "keys":
            return asyncio.run(_keys(config, args))
        if args.command in ("apply", "diff"):
            return _definitions(config, args)
    except BrokenPipeError:
        # `retenshund keys list | head -1`: the reader left. No traceback; and
        # success only for a listing, not for a command whose output (a new key,
        # what apply did) nobody saw in full: 141, as a shell reports SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        listing = args.command == "diff" or (args.command == "keys" and getattr(args, "keys_command", None) == "list")
        return 0 if listing else 141
    try:
        return serve(config)
    except ConfigError as exc:
        print(f"retenshund: {exc}", file=sys.stderr)
        return 2


def _definitions(config: Config, args: argparse.Namespace) -> int:
    from . import apply as apply_mod

    url = args.url or f"http://{config.server.host}:{config.server.port}"
    key = args.key or (config.auth.secret_keys[0] if config.auth.secret_keys else None)
    if key is None:
        creds = config.data_dir / "credentials.json"
        if creds.exists():
            key = json.loads(creds.read_text()).get("initial_secret_key") or None
    if not key:
        print("retenshund: no secret key: pass --key or set RETENSHUN_SECRET_KEY", file=sys.stderr)
        return 2
    try:
        client = apply_mod.Client(url, key)
        if args.command == "diff":
            apply_mod.diff(Path(args.dir), client)
        else:
            apply_mod.apply(Path(args.dir), client)
    except apply_mod.ApplyError as exc:
        print(f"retenshund {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
