"""Shared fixtures: real SQLite files in tmp dirs, the real app in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retenshund.app import create_app
from retenshund.clock import FakeClock
from retenshund.config import Config, load_config

SECRET = "sk_test_secret_key_0001"
PUBLISHABLE = "pk_test_publishable_0001"


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    overrides: dict[str, dict[str, Any]] = {
        "store": {"data_dir": str(data_dir)},
        "auth": {"secret_keys": [SECRET], "publishable_keys": [PUBLISHABLE],
                 "signing_secret": "test-signing-secret-0123456789"},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_config(None, env={}, overrides=overrides)


class Api:
    """An in-process client for the real app, with the test keys at hand."""

    def __init__(self, client: httpx.AsyncClient, app: Any, clock: FakeClock | None) -> None:
        self.http = client
        self.app = app
        self.clock = clock

    @property
    def services(self) -> Any:
        return self.app.state.services

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def get(self, path: str, key: str | None = SECRET, **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=self._auth(key) | kw.pop("headers", {}), **kw)

    async def post(self, path: str, body: Any = None, key: str | None = SECRET, **kw: Any) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self._auth(key) | kw.pop("headers", {}), **kw)

    async def put(self, path: str, body: Any = None, key: str | None = SECRET, **kw: Any) -> httpx.Response:
        return await self.http.put(path, json=body, headers=self._auth(key) | kw.pop("headers", {}), **kw)

    async def delete(self, path: str, key: str | None = SECRET, **kw: Any) -> httpx.Response:
        return await self.http.delete(path, headers=self._auth(key) | kw.pop("headers", {}), **kw)


@contextlib.asynccontextmanager
async def running(config: Config, clock: FakeClock | None = None) -> AsyncIterator[Api]:
    app = create_app(config, clock=clock, announce=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, app, clock)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


@pytest.fixture
async def api(config: Config) -> AsyncIterator[Api]:
    async with running(config) as a:
        yield a
