"""The WAL is copied back by a thread of its own, and started over before it grows without end."""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from pathlib import Path

import pytest

from retenshund.store.base import EventIn
from retenshund.store.sqlite import Checkpointer, SqliteStore, _restart_wal

T0 = 1_780_000_000_000


def _events(start: int, n: int) -> list[EventIn]:
    return [EventIn(message_id=f"m{i}", type="track", event="clicked", user_id=f"u{i % 97}",
                    data={"properties": {"i": i}}, timestamp=T0 + i, received_at=T0 + i)
            for i in range(start, start + n)]


def _restarts_so_far(path: Path) -> int:
    """The WAL header's checkpoint sequence number: SQLite adds one each time the
    log is started over (https://sqlite.org/fileformat2.html#walformat)."""
    with open(path.with_name(path.name + "-wal"), "rb") as f:
        return int(struct.unpack(">I", f.read(16)[12:16])[0])


async def test_under_steady_writes_the_log_is_started_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        await store._checkpointer.close()
        asked = 0

        def restart(urgent: bool) -> None:
            nonlocal asked
            asked += 1
            store.writer.maintain(_restart_wal, when_idle=not urgent)

        store._checkpointer = Checkpointer(store.path, restart, interval_s=0.005, restart_frames=40)
        store._checkpointer.start()
        first = _restarts_so_far(store.path)
        stop = False
        written = 0

        async def write(k: int) -> None:
            # Back to back from several callers: the writer never waits for work,
            # so the log is never idle long enough to start over by itself.
            nonlocal written
            i = 0
            while not stop:
                await store.ingest(_events(k * 1_000_000 + i, 10))
                i += 10
                written += 10

        writers = [asyncio.create_task(write(k)) for k in range(4)]
        deadline = time.monotonic() + 30
        try:
            while not (asked >= 2 and _restarts_so_far(store.path) >= first + 2):
                assert time.monotonic() < deadline, "the log was never started over"
                await asyncio.sleep(0.01)  # polling a condition, with a deadline
        finally:
            stop = True
            await asyncio.gather(*writers)
        assert len(await store.events_after(0, 1_000_000)) == written  # nothing lost on the way
    finally:
        await store.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread niceness is per thread on Linux only")
def _nice(stat_path: str) -> int:
    stat = Path(stat_path).read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])  # field 19 of proc_pid_stat(5)


async def test_the_checkpoint_thread_yields_the_cpu_to_the_loop_and_the_writer(tmp_path: Path) -> None:
    before = _nice("/proc/thread-self/stat")
    store = SqliteStore(tmp_path / "data")
    await store.open()
    try:
        thread = store._checkpointer._thread
        assert thread is not None and thread.native_id is not None
        deadline = time.monotonic() + 10
        nice = None
        while time.monotonic() < deadline:
            nice = _nice(f"/proc/self/task/{thread.native_id}/stat")
            if nice == min(19, before + Checkpointer.NICE):
                break
            await asyncio.sleep(0.01)
        assert nice == min(19, before + Checkpointer.NICE)
        assert _nice("/proc/thread-self/stat") == before  # the loop's thread is untouched
    finally:
        await store.close()


async def test_a_log_twice_past_the_limit_is_restarted_at_once_without_catching_up_first(tmp_path: Path) -> None:
    """Catching up before asking costs a round per try; when the writer outruns the
    thread (a large store: each round took ~1 s) the log kept growing meanwhile,
    past 1 GB. Past twice the limit the restart is asked for after one round."""
    (tmp_path / "x.db").touch()
    seen: list[tuple[str, object]] = []
    script = iter([100, 250, 260, 270])

    class Scripted(Checkpointer):
        def _copy(self, conn: object) -> int:  # type: ignore[override]
            frames = next(script, 0)
            seen.append(("round", frames))
            return frames

    ck = Scripted(tmp_path / "x.db", lambda urgent: seen.append(("restart", urgent)),
                  interval_s=0.001, restart_frames=100)
    ck.start()
    deadline = time.monotonic() + 10
    while sum(1 for what, _ in seen if what == "restart") < 2:
        assert time.monotonic() < deadline, "no restart was asked for"
        await asyncio.sleep(0.005)
    await ck.close()
    assert seen[:5] == [
        ("round", 100),                     # past the limit: catch up first
        ("round", 250),                     # ... and the catching up found it twice past
        ("restart", True),
        ("round", 260),                     # twice past: asked at once, no catching up
        ("restart", True),
    ]
