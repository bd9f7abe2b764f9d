"""The segment engine over a real store, with a clock that only moves when told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retenshund.clock import FakeClock
from retenshund.engine.baseline import BaselineSettings
from retenshund.engine.segments import SegmentEngine
from retenshund.engine.timers import Timers
from retenshund.store.sqlite import SqliteStore
from tests.engine.test_segments import START, World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "data")
    await store.open()
    clock = FakeClock(START)
    timers = Timers(clock)
    engine = SegmentEngine(store, clock, timers, BaselineSettings())
    await engine.open()
    w = World(store, clock, timers, engine)
    store.on_events = w.published.extend
    try:
        yield w
    finally:
        await store.close()
