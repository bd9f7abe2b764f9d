"""The card-expiring story, end to end, with one command:

    python examples/card-expiring/run.py

It starts a retenshun daemon (config written to .demo-data/), applies the
template and automation in ./retenshun/ with `retenshund apply`, and serves a
tiny shop (the SDK, <retenshun-inbox>, and a backend that sends a
Stripe-signed `customer.source.expiring` webhook). Open the shop, press the
button, and watch the bell. `--check` plays the story without a browser and
exits 0 when the in-app message arrived (useful in CI)."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing, too

from retenshund.client import Retenshun

USER_ID = "user_42"
CUSTOMER = {"name": "Ada", "email": "ada@example.com", "stripe_customer_id": "cus_Q2demo42"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_secrets(data: Path) -> dict[str, str]:
    """Random keys made once per data folder (never commit real ones)."""
    path = data / "demo-secrets.json"
    if path.exists():
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    found = {"secret_key": "sk_demo_" + secrets.token_urlsafe(24), "publishable_key": "pk_demo_" + secrets.token_urlsafe(18),
             "signing_secret": secrets.token_urlsafe(32), "stripe_secret": "whsec_" + secrets.token_urlsafe(24),
             "admin_password": secrets.token_urlsafe(9)}
    data.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found, indent=2))
    path.chmod(0o600)
    return found


def write_config(data: Path, s: dict[str, str], daemon_port: int, shop_port: int) -> Path:
    config = data / "retenshund.toml"
    config.write_text(f"""# Written by examples/card-expiring/run.py
[server]
port = {daemon_port}
public_url = "http://127.0.0.1:{daemon_port}"
# The shop is another origin: let its pages call the API and open the inbox socket.
allowed_origins = ["http://localhost:{shop_port}", "http://127.0.0.1:{shop_port}"]

[store]
data_dir = "{data / 'store'}"

[auth]
secret_keys = ["{s['secret_key']}"]
publishable_keys = ["{s['publishable_key']}"]
signing_secret = "{s['signing_secret']}"
admin_password = "{s['admin_password']}"

[log]
level = "warning"

[push]
subject = "mailto:demo@example.com"

# Stripe posts to /v1/webhooks/stripe; the signature is checked before anything else.
[webhooks.stripe]
kind = "stripe"
secret = "{s['stripe_secret']}"

[[webhooks.stripe.map]]
type = "customer.source.expiring"
event = "card_expiring"
user_trait = "stripe_customer_id"
user_path = "data.object.customer"
properties = {{ last4 = "data.object.last4", exp_month = "data.object.exp_month", exp_year = "data.object.exp_year", brand = "data.object.brand" }}
""")
    return config


def stripe_webhook(secret: str, customer: str) -> tuple[bytes, str]:
    """A `customer.source.expiring` event and its Stripe-Signature header
    (t=<unix time>,v1=HMAC-SHA256 of "<t>.<body>" under the endpoint secret)."""
    payload = {
        "id": "evt_" + secrets.token_hex(12), "object": "event", "type": "customer.source.expiring",
        "created": int(time.time()),
        "data": {"object": {"id": "card_" + secrets.token_hex(8), "object": "card", "customer": customer,
                            "brand": "Visa", "last4": "4242", "exp_month": 12, "exp_year": 2026}},
    }
    body = json.dumps(payload).encode()
    t = str(int(time.time()))
    v1 = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={v1}"


class Shop(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, daemon_url: str, s: dict[str, str], client: Retenshun) -> None:
        super().__init__(("127.0.0.1", port), ShopHandler)
        self.daemon_url = daemon_url
        self.secrets = s
        self.client = client
        self.client_lock = threading.Lock()


class ShopHandler(http.server.BaseHTTPRequestHandler):
    server: Shop

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, value: Any) -> None:
        self.send_body(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/", "/billing"):
            page = (HERE / "shop" / "index.html").read_text()
            page = page.replace("__DAEMON__", self.server.daemon_url).replace(
                "__WRITE_KEY__", self.server.secrets["publishable_key"])
            self.send_body(200, page.encode(), "text/html; charset=utf-8")
        elif path == "/sw.js":
            # The push service worker must come from the shop's own origin.
            sw = httpx.get(self.server.daemon_url + "/sdk/sw.js").content
            self.send_body(200, sw, "text/javascript")
        elif path == "/api/session":
            with self.server.client_lock:
                token = self.server.client.user_token(USER_ID, expires_in="12h")
            self.send_json(200, {"user_id": USER_ID, "name": CUSTOMER["name"], "token": token})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/api/stripe/simulate-expiring":
            self.send_json(404, {"error": "not found"})
            return
        body, signature = stripe_webhook(self.server.secrets["stripe_secret"], CUSTOMER["stripe_customer_id"])
        r = httpx.post(self.server.daemon_url + "/v1/webhooks/stripe", content=body,
                       headers={"Stripe-Signature": signature, "Content-Type": "application/json"})
        self.send_json(200, {"status": r.status_code, "retenshun": r.json() if r.content else None})


def start_daemon(config: Path, url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "retenshund", "--config", str(config)],
                            env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"retenshund exited with {proc.returncode}; see its output above")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("retenshund did not answer /healthz within 20 s")


def check(shop_url: str, daemon_url: str, secret_key: str) -> int:
    """Play the story without a browser: webhook in, in-app message out."""
    started = time.perf_counter()
    r = httpx.post(shop_url + "/api/stripe/simulate-expiring").json()
    print(f"webhook -> {r}")
    if r["status"] != 200:
        return 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = httpx.get(f"{daemon_url}/v1/users/{USER_ID}/messages",
                             headers={"Authorization": f"Bearer {secret_key}"}).json()["messages"]
        for m in messages:
            title = (m.get("rendered") or {}).get("title", "")
            if m["channel"] == "in_app" and m["status"] == "delivered" and "4242" in title:
                print(f"in-app message delivered {(time.perf_counter() - started) * 1000:.0f} ms after the webhook"
                      f" was sent: {title!r}")
                return 0
        time.sleep(0.05)
    print("no in-app message arrived within 10 s", file=sys.stderr)
    return 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--daemon-port", type=int, default=8470, help="retenshun's port (0: any free port)")
    p.add_argument("--shop-port", type=int, default=8471, help="the shop's port (0: any free port)")
    p.add_argument("--data-dir", default=str(HERE / ".demo-data"), help="where the daemon keeps its data")
    p.add_argument("--check", action="store_true", help="play the story headlessly and exit 0 when it worked")
    args = p.parse_args()
    daemon_port = args.daemon_port or free_port()
    shop_port = args.shop_port or free_port()
    data = Path(args.data_dir).resolve()
    s = demo_secrets(data)
    daemon_url = f"http://127.0.0.1:{daemon_port}"
    shop_url = f"http://localhost:{shop_port}"

    proc = start_daemon(write_config(data, s, daemon_port, shop_port), daemon_url)
    shop: Shop | None = None
    try:
        # Definitions as code: the same files `retenshund apply` reads in your repo.
        subprocess.run([sys.executable, "-m", "retenshund", "apply", str(HERE / "retenshun"), "--url", daemon_url,
                        "--key", s["secret_key"]], check=True)
        client = Retenshun(daemon_url, s["secret_key"], signing_secret=s["signing_secret"])
        client.identify(USER_ID, CUSTOMER)  # the shop's backend knows its customer's Stripe id
        shop = Shop(shop_port, daemon_url, s, client)
        threading.Thread(target=shop.serve_forever, name="shop", daemon=True).start()
        if args.check:
            return check(shop_url, daemon_url, s["secret_key"])
        print(f"""
  The shop:       {shop_url}        (press “Simulate card about to expire”)
  The dashboard:  {daemon_url}/  (admin password: {s['admin_password']})

  Ctrl+C stops both.
""", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        if shop is not None:
            shop.shutdown()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
