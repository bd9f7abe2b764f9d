"""Static files from web/: the SDK and service worker at /sdk/, the dashboard at /."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# API paths never fall through to the dashboard's files, so a wrong method on
# an API route stays a 405 and an unknown API path a JSON 404.
API_PREFIXES = ("/v1/", "/t/", "/u/", "/dashboard/", "/sdk/")


class DashboardMount(Mount):
    def matches(self, scope: Scope) -> tuple[Match, dict[str, Any]]:
        if scope.get("path", "").startswith(API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


def web_root() -> Path:
    return Path(str(resources.files("retenshund_web")))


def routes() -> list[Mount]:
    root = web_root()
    found = [Mount("/sdk", app=StaticFiles(directory=root / "sdk"), name="sdk")]
    if (root / "dashboard").is_dir():
        found.append(DashboardMount("/", app=StaticFiles(directory=root / "dashboard", html=True), name="dashboard"))
    return found
