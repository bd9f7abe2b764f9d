"""One writer thread per SQLite database, with group commit.

Every write in the process goes through here. Callers hand in a function that
runs against the connection; the thread gathers whatever is queued while the
previous transaction was committing, runs it all in one transaction (each
function inside its own savepoint, so one failing call cannot undo the others)
and resolves every caller's future only after COMMIT returned. A 200 answered
after ``await writer.run(...)`` is therefore durable, and under load one fsync
is shared by many requests instead of paid by each.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("retenshund.store")

WriteFn = Callable[[sqlite3.Connection], Any]
# Called on the event loop after each commit with the values the functions
# returned, in order (used to publish committed events to the bus).
CommitHook = Callable[[list[Any]], None]


class _Job:
    __slots__ = ("fn", "future", "loop", "merge_key", "payload")

    def __init__(self, fn: Any, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop,
                 merge_key: str | None = None, payload: Any = None) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop
        # Jobs with the same merge_key next to each other in a group commit run as
        # one call fn(conn, [payload, ...]) -> [result, ...] (e.g. many small
        # ingest requests become one set of executemany statements).
        self.merge_key = merge_key
        self.payload = payload


_STOP = object()


def _call(conn: sqlite3.Connection, job: _Job) -> Any:
    """Run one job's function; a merge-capable job alone gets a list of one."""
    return job.fn(conn, [job.payload])[0] if job.merge_key is not None else job.fn(conn)


class _Maintenance:
    """Work for the writer thread outside any transaction (see ``Writer.maintain``)."""

    __slots__ = ("fn", "when_idle")

    def __init__(self, fn: Callable[[sqlite3.Connection], None], when_idle: bool) -> None:
        self.fn = fn
        self.when_idle = when_idle


class Writer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        max_batch_ops: int = 2000,
        on_commit: CommitHook | None = None,
        observe: Callable[[int, float], None] | None = None,
        on_rollback: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_batch = max_batch_ops
        self.on_commit = on_commit
        # observe(ops_in_transaction, commit_seconds) feeds the metrics.
        self.observe = observe
        # Called in the writer thread after any rollback, so a store can drop
        # caches that may now describe rows that were never committed.
        self.on_rollback = on_rollback
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.pending = 0  # jobs queued or running: the "queue depth" metric

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="retenshund-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside the next group transaction; return after commit."""
        if self._thread is None:
            raise RuntimeError("writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.pending += 1
        self._queue.put(_Job(fn, future, loop))
        return await future

    async def run_merged(self, key: str, fn: Callable[[sqlite3.Connection, list[Any]], list[T]], payload: Any) -> T:
        """Like ``run``, but consecutive jobs of the same ``key`` in a group commit
        are handed to one ``fn(conn, payloads)`` call, which returns one result
        per payload. If that call fails, the jobs are retried one by one, so one
        bad payload fails alone."""
        if self._thread is None:
            raise RuntimeError("writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.pending += 1
        self._queue.put(_Job(fn, future, loop, key, payload))
        return await future

    def maintain(self, fn: Callable[[sqlite3.Connection], None], *, when_idle: bool = False) -> None:
        """Run ``fn(conn)`` in the writer thread between two group commits,
        outside any transaction. Callable from any thread; nobody waits for it
        (errors are logged). ``when_idle``: not before the writer has nothing
        queued (it may wait long under steady load; ask again without it to
        insist). At most one such request waits; a newer one replaces it."""
        self._queue.put(_Maintenance(fn, when_idle))

    async def close(self) -> None:
        """Finish everything queued, then close the connection."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- the thread ---------------------------------------------------------

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        waiting: _Maintenance | None = None  # for an idle moment
        try:
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                jobs: list[_Job] = []
                upkeep: _Maintenance | None = None
                nxt = first
                while True:
                    if isinstance(nxt, _Maintenance) and nxt.when_idle:
                        waiting = nxt  # run below, once nothing is queued
                    elif isinstance(nxt, _Maintenance):
                        waiting = None
                        upkeep = nxt  # after the jobs queued before it have committed
                        break
                    else:
                        jobs.append(nxt)
                        if len(jobs) >= self._max_batch:
                            break
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stopping = True
                        break
                if jobs:
                    self._run_batch(conn, jobs)
                if upkeep is None and waiting is not None and self._queue.empty():
                    upkeep, waiting = waiting, None
                if upkeep is not None:
                    try:
                        upkeep.fn(conn)
                    except Exception:
                        log.exception("writer maintenance failed")
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if len(jobs) == 1:
                # Alone in its transaction, a job needs no savepoint: if it fails,
                # the rollback of the whole undoes exactly its work.
                try:
                    results.append((True, _call(conn, jobs[0])))
                except Exception as exc:
                    conn.execute("ROLLBACK")
                    self._rolled_back()
                    self._deliver(jobs, [(False, exc)], [], time.perf_counter() - started)
                    return
            else:
                i = 0
                while i < len(jobs):
                    job = jobs[i]
                    if job.merge_key is None:
                        results.append(self._one(conn, job))
                        i += 1
                        continue
                    j = i
                    # == and not `is`: a bound method is a new object at each access.
                    while j < len(jobs) and jobs[j].merge_key == job.merge_key and jobs[j].fn == job.fn:
                        j += 1
                    results.extend(self._merged(conn, jobs[i:j]))
                    i = j
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction as a whole failed (disk full, I/O error): nobody's
            # write is durable, everybody hears it.
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._rolled_back()
            log.error("group commit failed", extra={"ops": len(jobs), "error": repr(exc)})
            results = [(False, exc)] * len(jobs)
        elapsed = time.perf_counter() - started
        committed = [value for ok, value in results if ok]
        self._deliver(jobs, results, committed, elapsed)

    def _one(self, conn: sqlite3.Connection, job: _Job) -> tuple[bool, Any]:
        """One job in its own savepoint: its failure undoes only its own work."""
        conn.execute("SAVEPOINT job")
        try:
            value = _call(conn, job)
        except Exception as exc:  # the caller gets it; the others go on
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            self._rolled_back()
            return (False, exc)
        conn.execute("RELEASE job")
        return (True, value)

    def _merged(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        if len(jobs) == 1:
            return [self._one(conn, jobs[0])]
        conn.execute("SAVEPOINT merged")
        try:
            values = jobs[0].fn(conn, [job.payload for job in jobs])
        except Exception:
            conn.execute("ROLLBACK TO merged")
            conn.execute("RELEASE merged")
            self._rolled_back()
            return [self._one(conn, job) for job in jobs]
        conn.execute("RELEASE merged")
        return [(True, value) for value in values]

    def _rolled_back(self) -> None:
        if self.on_rollback is not None:
            self.on_rollback()

    def _deliver(self, jobs: list[_Job], results: list[tuple[bool, Any]], committed: list[Any], elapsed: float) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, tuple[bool, Any]]]] = {}
        for job, result in zip(jobs, results):
            by_loop.setdefault(job.loop, []).append((job, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._resolve, items, committed, elapsed)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

    def _resolve(self, items: list[tuple[_Job, tuple[bool, Any]]], committed: list[Any], elapsed: float) -> None:
        # Runs on the event loop: hooks first, so subscribers see an event
        # before the client that sent it hears "committed".
        self.pending -= len(items)
        if self.observe is not None:
            self.observe(len(items), elapsed)
        if committed and self.on_commit is not None:
            try:
                self.on_commit(committed)
            except Exception:
                log.exception("commit hook failed")
        for job, (ok, value) in items:
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
