"""The group-commit writer: one transaction for many callers, each answered after COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from retenshund.store.writer import Writer


def _connect(path: Path):  # type: ignore[no-untyped-def]
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
        return conn
    return connect


async def test_a_failing_write_does_not_undo_the_others_in_its_transaction(tmp_path: Path) -> None:
    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    try:
        def insert(k: str):  # type: ignore[no-untyped-def]
            return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (k,)).rowcount

        results = await asyncio.gather(
            w.run(insert("a")), w.run(insert("a")), w.run(insert("b")), return_exceptions=True)
        assert results[0] == 1 and results[2] == 1
        assert isinstance(results[1], sqlite3.IntegrityError)
    finally:
        await w.close()
    rows = sqlite3.connect(tmp_path / "w.db").execute("SELECT k FROM t ORDER BY k").fetchall()
    assert rows == [("a",), ("b",)]


async def test_a_lone_failing_write_leaves_nothing_behind_and_the_next_commits(tmp_path: Path) -> None:
    # Alone in its transaction a job runs without a savepoint: its failure must
    # still undo what it wrote before failing.
    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    try:
        def half(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES ('half')")
            raise ValueError("second statement failed")

        with pytest.raises(ValueError):
            await w.run(half)
        assert await w.run(lambda conn: conn.execute("INSERT INTO t VALUES ('next')").rowcount) == 1
    finally:
        await w.close()
    rows = sqlite3.connect(tmp_path / "w.db").execute("SELECT k FROM t ORDER BY k").fetchall()
    assert rows == [("next",)]


async def test_the_answer_comes_after_the_data_is_readable_by_another_connection(tmp_path: Path) -> None:
    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    try:
        await w.run(lambda conn: conn.execute("INSERT INTO t VALUES ('x')"))
        other = sqlite3.connect(tmp_path / "w.db")
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        await w.close()


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    pending = [asyncio.ensure_future(w.run(lambda conn, i=i: conn.execute("INSERT INTO t VALUES (?)", (str(i),))))
               for i in range(50)]
    await asyncio.sleep(0)  # let them enqueue
    await w.close()
    await asyncio.gather(*pending)
    assert sqlite3.connect(tmp_path / "w.db").execute("SELECT count(*) FROM t").fetchone() == (50,)


async def test_a_write_before_start_is_refused(tmp_path: Path) -> None:
    w = Writer(_connect(tmp_path / "w.db"))
    with pytest.raises(RuntimeError):
        await w.run(lambda conn: None)


async def test_rollback_hook_runs_when_a_write_fails(tmp_path: Path) -> None:
    rolled: list[bool] = []
    w = Writer(_connect(tmp_path / "w.db"), on_rollback=lambda: rolled.append(True))
    w.start()
    try:
        with pytest.raises(ZeroDivisionError):
            await w.run(lambda conn: 1 / 0)
        assert rolled == [True]
    finally:
        await w.close()


async def test_merged_jobs_run_as_one_call_and_a_bad_payload_fails_alone(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def insert_many(conn: sqlite3.Connection, payloads: list[str]) -> list[int]:
        calls.append(list(payloads))
        for k in payloads:
            if k == "bad":
                raise ValueError("bad payload")
            conn.execute("INSERT INTO t VALUES (?)", (k,))
        return [len(k) for k in payloads]

    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    try:
        # The writer is kept busy until all four are queued, so they meet in the next group commit.
        import threading

        busy, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            busy.set()
            release.wait(5)

        blocker = asyncio.ensure_future(w.run(hold))
        await asyncio.to_thread(busy.wait, 5)
        tasks = [asyncio.ensure_future(w.run_merged("ins", insert_many, k)) for k in ("a", "bb", "bad", "ccc")]
        await asyncio.sleep(0)  # let the four tasks put their jobs in the queue
        assert w.pending == 5
        release.set()
        await blocker
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await w.close()
    assert results[0] == 1 and results[1] == 2 and results[3] == 3
    assert isinstance(results[2], ValueError)
    assert calls[0] == ["a", "bb", "bad", "ccc"]  # one call for all four first
    rows = sqlite3.connect(tmp_path / "w.db").execute("SELECT k FROM t ORDER BY k").fetchall()
    assert rows == [("a",), ("bb",), ("ccc",)]


async def test_maintenance_runs_between_commits_outside_a_transaction(tmp_path: Path) -> None:
    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    seen: list[tuple[bool, int]] = []
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    try:
        def upkeep(conn: sqlite3.Connection) -> None:
            seen.append((conn.in_transaction, conn.execute("SELECT count(*) FROM t").fetchone()[0]))
            loop.call_soon_threadsafe(done.set_result, None)

        def insert_and_ask(conn: sqlite3.Connection) -> int:
            w.maintain(upkeep)  # asked for while this transaction is still open
            return conn.execute("INSERT INTO t VALUES ('before')").rowcount

        assert await w.run(insert_and_ask) == 1
        await asyncio.wait_for(done, 5)
        assert seen == [(False, 1)]  # after that commit, in no transaction of its own
        assert await w.run(lambda conn: conn.execute("INSERT INTO t VALUES ('after')").rowcount) == 1
    finally:
        await w.close()


async def test_failing_maintenance_is_logged_and_the_writer_goes_on(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    try:
        def broken(conn: sqlite3.Connection) -> None:
            raise RuntimeError("boom")

        w.maintain(broken)
        assert await w.run(lambda conn: conn.execute("INSERT INTO t VALUES ('x')").rowcount) == 1
    finally:
        await w.close()
    assert "writer maintenance failed" in caplog.text


async def _until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("when_idle, rows_seen", [(True, 2), (False, 1)])
async def test_idle_maintenance_waits_until_nothing_is_queued(tmp_path: Path, when_idle: bool,
                                                              rows_seen: int) -> None:
    import threading

    w = Writer(_connect(tmp_path / "w.db"))
    w.start()
    release = threading.Event()
    seen: list[int] = []
    try:
        def held(conn: sqlite3.Connection) -> int:
            release.wait(5)  # the writer is busy while the rest queues up
            return conn.execute("INSERT INTO t VALUES ('1')").rowcount

        first = asyncio.ensure_future(w.run(held))
        await _until(lambda: w.pending == 1)
        w.maintain(lambda conn: seen.append(conn.execute("SELECT count(*) FROM t").fetchone()[0]),
                   when_idle=when_idle)
        second = asyncio.ensure_future(w.run(lambda conn: conn.execute("INSERT INTO t VALUES ('2')").rowcount))
        await _until(lambda: w.pending == 2)
        release.set()
        assert await first == 1 and await second == 1
        await _until(lambda: bool(seen))
        # Idle: after the job queued behind it too. Not idle: right after the job before it.
        assert seen == [rows_seen]
    finally:
        release.set()
        await w.close()
