"""The store suite runs against every backend listed in ``backend``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retenshund.store.base import Store
from retenshund.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = SqliteStore(tmp_path / "data")
    await s.open()
    try:
        yield s
    finally:
        await s.close()
