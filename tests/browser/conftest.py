"""Real-browser tests: Debian Chromium driven by Playwright, against a real
daemon seeded with data, and a shop page served from another origin."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.support.daemon import PUBLISHABLE, SECRET, Daemon, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]
SIGNING_SECRET = "e2e-signing-secret-0123456789"  # what tests/support/daemon.py configures
ADMIN_PASSWORD = "e2e-dashboard-admin-password"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@dataclass
class Site:
    """A tiny static web server on 127.0.0.1, reached as http://localhost:<port>
    (another origin than the daemon's http://127.0.0.1:<port>, and a secure
    context, so service workers may register)."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> Site:
        handler = functools.partial(_Quiet, directory=str(self.root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-site", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def api(daemon: Daemon, method: str, path: str, body: Any = None, key: str = SECRET, **kw: Any) -> httpx.Response:
    return httpx.request(method, daemon.url + path, json=body, headers={"Authorization": f"Bearer {key}"},
                         timeout=10, **kw)


def ok(r: httpx.Response) -> Any:
    assert r.status_code < 300, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


# Module scope: Playwright's sync API keeps an event loop running while it is
# started, which async tests elsewhere in the session must not inherit.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("the browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("shop")
    s = Site(root).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Iterator[Daemon]:
    env = {"RETENSHUN_SERVER_ALLOWED_ORIGINS": site.origin, "RETENSHUN_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with Daemon(tmp_path_factory.mktemp("browser") / "data", env=env) as d:
        write_shop(site.root, d.url)
        yield d


def write_shop(root: Path, daemon_url: str) -> None:
    """The app under test: a page that loads the SDK from the daemon (another
    origin), an inbox widget, and the service worker served from its own origin."""
    shutil.copy(REPO / "web" / "sdk" / "sw.js", root / "sw.js")
    (root / "index.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test shop</title>
<script src="{daemon_url}/sdk/retenshun.js"></script>
<style>body {{ font-family: sans-serif; }} header {{ display: flex; justify-content: space-between; }}</style>
</head><body>
<header><h1>Test shop</h1><retenshun-inbox></retenshun-inbox></header>
<script>
  const params = new URLSearchParams(location.search);
  const options = {{ host: {daemon_url!r}, writeKey: {PUBLISHABLE!r}, flushInterval: 50 }};
  if (params.get("user")) options.userId = params.get("user");
  if (params.get("token")) options.userToken = params.get("token");
  retenshun.init(options);
</script>
</body></html>
""")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def poll(fn: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns something truthy (a wait with a deadline)."""
    return wait_until(fn, timeout, what, interval)


@contextlib.contextmanager
def console_errors(page: Any) -> Iterator[list[str]]:
    """Errors the page logs or throws, and HTTP failures of its requests (a
    missing endpoint's "no such endpoint" 404 is an expected, shown state)."""
    errors: list[str] = []

    def on_console(msg: Any) -> None:
        # Chromium also logs every failed request; those are judged below by status.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console: {msg.text}")

    def on_response(response: Any) -> None:
        if response.status < 400:
            return
        try:
            message = response.json().get("error", {}).get("message", "")
        except (ValueError, AttributeError, PlaywrightError):
            message = ""
        if response.status == 404 and message.startswith("no such endpoint"):
            return
        errors.append(f"HTTP {response.status} {response.request.method} {response.url}: {message}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("response", on_response)
    yield errors
