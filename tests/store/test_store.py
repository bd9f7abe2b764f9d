"""The Store contract: what any backend must do with events, profiles, keys."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from retenshund.store.base import EventIn, Store, StoredEvent

T0 = 1_780_000_000_000


def ev(mid: str, type_: str = "track", *, user: str | None = "u1", anon: str | None = None,
       event: str | None = "clicked", at: int = T0, **data: Any) -> EventIn:
    return EventIn(message_id=mid, type=type_, event=event if type_ == "track" else None, user_id=user,
                   anonymous_id=anon, data=data, timestamp=at, received_at=at)


async def test_ingest_assigns_increasing_ids_and_resolves_the_user(store: Store) -> None:
    result = await store.ingest([ev("m1"), ev("m2", user="u2"), ev("m3")])
    assert [e.message_id for e in result.stored] == ["m1", "m2", "m3"]
    ids = [e.id for e in result.stored]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [e.profile_user_id for e in result.stored] == ["u1", "u2", "u1"]
    assert result.stored[0].pid == result.stored[2].pid != result.stored[1].pid


async def test_same_message_id_is_stored_once_within_and_across_batches(store: Store) -> None:
    first = await store.ingest([ev("dup"), ev("dup"), ev("other")])
    again = await store.ingest([ev("dup"), ev("new")])
    assert (len(first.stored), first.duplicates) == (2, 1)
    assert (len(again.stored), again.duplicates) == (1, 1)
    events = await store.user_events("u1", limit=10, before=None)
    assert sorted(e.message_id for e in events) == ["dup", "new", "other"]


async def test_identify_merges_traits_and_null_removes(store: Store) -> None:
    await store.ingest([ev("i1", "identify", traits={"plan": "free", "email": "a@x.io", "age": 3})])
    await store.ingest([ev("i2", "identify", traits={"plan": "pro", "age": None})])
    profile = await store.get_profile("u1")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "email": "a@x.io"}


async def test_signup_adopts_the_anonymous_history(store: Store) -> None:
    await store.ingest([ev("a1", user=None, anon="anon-1"), ev("a2", user=None, anon="anon-1")])
    await store.ingest([ev("i1", "identify", user="u9", anon="anon-1", traits={"email": "n@x.io"})])
    events = await store.user_events("u9", limit=10, before=None)
    assert [e.message_id for e in events] == ["i1", "a2", "a1"]
    # Later anonymous-only events land on the known user too.
    later = await store.ingest([ev("a3", user=None, anon="anon-1")])
    assert later.stored[0].profile_user_id == "u9"


async def test_identify_with_both_ids_merges_an_anonymous_profile_into_an_existing_user(store: Store) -> None:
    await store.ingest([ev("k1", "identify", user="u1", traits={"plan": "pro"})])
    await store.ingest([ev("x1", user=None, anon="phone", )])
    await store.ingest([ev("x2", "identify", user=None, anon="phone", traits={"plan": "trial", "os": "ios"})])
    await store.ingest([ev("k2", "identify", user="u1", anon="phone")])
    profile = await store.get_profile("u1")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "os": "ios"}  # the known user's values win
    ids = [e.message_id for e in await store.user_events("u1", limit=10, before=None)]
    assert sorted(ids) == ["k1", "k2", "x1", "x2"]


async def test_a_batch_that_identifies_after_anonymous_events_files_them_all_under_the_user(store: Store) -> None:
    result = await store.ingest([
        ev("b1", user=None, anon="tab"),
        ev("b2", "identify", user="u5", anon="tab"),
        ev("b3", user=None, anon="tab"),
    ])
    assert {e.profile_user_id for e in result.stored} == {"u5"}
    assert len({e.pid for e in result.stored}) == 1


async def test_alias_merges_the_previous_id(store: Store) -> None:
    await store.ingest([ev("p1", user="old-id"), ev("p2", "identify", user="old-id", traits={"a": 1})])
    await store.ingest([ev("al", "alias", user="new-id", previousId="old-id")])
    profile = await store.get_profile("new-id")
    assert profile is not None and profile.traits == {"a": 1}
    ids = {e.message_id for e in await store.user_events("new-id", limit=10, before=None)}
    assert ids == {"p1", "p2", "al"}


async def test_alias_of_an_unseen_anonymous_id_claims_its_future_events(store: Store) -> None:
    await store.ingest([ev("al", "alias", user="u7", previousId="later-anon")])
    result = await store.ingest([ev("z", user=None, anon="later-anon")])
    assert result.stored[0].profile_user_id == "u7"


async def test_group_records_membership_and_merges_group_traits(store: Store) -> None:
    await store.ingest([ev("g1", "group", user="u1", groupId="team-1", traits={"name": "Acme", "size": 3})])
    await store.ingest([ev("g2", "group", user="u2", groupId="team-1", traits={"size": 4})])
    profile = await store.get_profile("u1")
    assert profile is not None
    assert [(g.group_id, g.traits) for g in profile.groups] == [("team-1", {"name": "Acme", "size": 4})]
    assert await store.group_member_ids("team-1") == ["u1", "u2"]


async def test_user_events_page_newest_first(store: Store) -> None:
    await store.ingest([ev(f"m{i}", at=T0 + i) for i in range(7)])
    page1 = await store.user_events("u1", limit=3, before=None)
    page2 = await store.user_events("u1", limit=3, before=page1[-1].id)
    page3 = await store.user_events("u1", limit=3, before=page2[-1].id)
    got = [e.message_id for e in page1 + page2 + page3]
    assert got == [f"m{i}" for i in range(6, -1, -1)]


async def test_delete_user_removes_everything_and_a_replay_stays_out(store: Store) -> None:
    await store.ingest([ev("d1", "identify", traits={"email": "x@y.z"}, anon="an"),
                        ev("d2", "group", groupId="g"), ev("d3")])
    await store.ingest([ev("keep", user="u2")])
    assert await store.delete_user("u1") is True
    assert await store.get_profile("u1") is None
    assert await store.user_events("u1", limit=10, before=None) == []
    assert await store.group_member_ids("g") == []
    assert await store.delete_user("u1") is False
    replay = await store.ingest([ev("d3")])
    assert replay.stored == [] and replay.duplicates == 1
    assert len(await store.user_events("u2", limit=10, before=None)) == 1
    # The anonymous id is forgotten too: new events under it make a new person.
    fresh = await store.ingest([ev("after", user=None, anon="an")])
    assert fresh.stored[0].profile_user_id is None


async def test_preferences_merge_and_null_clears(store: Store) -> None:
    p = await store.set_preferences("u1", {"channels": {"email": False}}, T0)
    assert p == {"channels": {"email": False}}
    p = await store.set_preferences("u1", {"categories": {"marketing": False}, "channels": {"push": False}}, T0)
    assert p == {"channels": {"email": False, "push": False}, "categories": {"marketing": False}}
    p = await store.set_preferences("u1", {"channels": {"email": None}}, T0)
    assert p["channels"] == {"push": False}


async def test_events_after_reads_in_commit_order(store: Store) -> None:
    await store.ingest([ev("e1"), ev("e2", user="u2")])
    await store.ingest([ev("e3")])
    all_events = await store.events_after(0, 10)
    assert [e.message_id for e in all_events] == ["e1", "e2", "e3"]
    assert [e.message_id for e in await store.events_after(all_events[0].id, 1)] == ["e2"]
    assert await store.last_event_id() == all_events[-1].id


async def test_concurrent_ingests_share_commits_and_all_land(store: Store) -> None:
    commits: list[int] = []
    writer = getattr(store, "writer", None)
    if writer is not None:
        writer.observe = lambda ops, _s: commits.append(ops)
    await asyncio.gather(*(store.ingest([ev(f"c{i}", user=f"u{i % 7}")]) for i in range(200)))
    assert len(await store.events_after(0, 1000)) == 200
    if writer is not None:
        assert sum(commits) == 200
        assert len(commits) < 200  # grouped: fewer commits than writes


async def test_committed_events_are_announced_in_order(store: Store) -> None:
    seen: list[StoredEvent] = []
    store.on_events = seen.extend  # type: ignore[attr-defined]
    await asyncio.gather(*(store.ingest([ev(f"n{i}")]) for i in range(20)))
    assert len(seen) == 20
    assert [e.id for e in seen] == sorted(e.id for e in seen)


async def test_prune_forgets_old_message_ids(store: Store) -> None:
    await store.ingest([ev("old", at=T0), ev("new", at=T0 + 10_000)])
    assert await store.prune_message_ids(T0 + 5_000) == 1
    again = await store.ingest([ev("old", at=T0 + 20_000), ev("new", at=T0 + 20_000)])
    assert [e.message_id for e in again.stored] == ["old"]


async def test_a_large_prune_goes_a_chunk_per_commit_so_ingestion_goes_on(tmp_path: Any) -> None:
    """An hour of a busy store's ids deleted in one job held every ingest request
    for most of a second; in chunks, a request queued meanwhile commits between them."""
    from retenshund.store import sqlite as sq

    s = sq.SqliteStore(tmp_path / "one")
    await s.open()
    try:
        await s.ingest([ev(f"old{i}", at=T0) for i in range(2 * sq.PRUNE_CHUNK + 7)] + [ev("keep", at=T0 + 10_000)])
        jobs: list[str] = []
        real_run = s.writer.run

        async def run(fn: Any) -> Any:
            jobs.append("job")
            return await real_run(fn)

        s.writer.run = run  # type: ignore[method-assign]
        assert await s.prune_message_ids(T0 + 5_000) == 2 * sq.PRUNE_CHUNK + 7
        assert len(jobs) == 3  # 500 + 500 + 7: each its own writer job
        s.writer.run = real_run  # type: ignore[method-assign]
        again = await s.ingest([ev("old3", at=T0 + 20_000), ev("keep", at=T0 + 20_000)])
        assert [e.message_id for e in again.stored] == ["old3"]
    finally:
        await s.close()


async def test_api_keys_add_find_list_revoke(store: Store) -> None:
    await store.add_api_key("key_abc", "secret", "h" * 64, "sk_abc…wxyz", "ci", T0)
    found = await store.find_api_key("h" * 64)
    assert found is not None and found.kind == "secret" and found.revoked_at is None
    assert [k.key_id for k in await store.list_api_keys()] == ["key_abc"]
    assert await store.revoke_api_key("key_abc", T0 + 1) is True
    assert await store.revoke_api_key("key_abc", T0 + 2) is False
    revoked = await store.find_api_key("h" * 64)
    assert revoked is not None and revoked.revoked_at == T0 + 1


ids = st.text(alphabet="abcdef", min_size=1, max_size=2)


@settings(max_examples=25, deadline=None)
@given(batches=st.lists(st.lists(ids, min_size=1, max_size=8), min_size=1, max_size=6))
def test_every_message_id_is_stored_exactly_once(tmp_path_factory: Any, batches: list[list[str]]) -> None:
    from retenshund.store.sqlite import SqliteStore

    async def run() -> None:
        s = SqliteStore(tmp_path_factory.mktemp("dedupe"))
        await s.open()
        try:
            stored: list[str] = []
            for batch in batches:
                result = await s.ingest([ev(m) for m in batch])
                stored += [e.message_id for e in result.stored]
            expected = list(dict.fromkeys(m for batch in batches for m in batch))
            assert stored == expected
            in_db = [e.message_id for e in await s.events_after(0, 1000)]
            assert in_db == expected
        finally:
            await s.close()

    asyncio.run(run())


def test_reads_never_leave_a_statement_open_across_an_await() -> None:
    """A cursor kept open over an await pins the read connection's snapshot, and
    another task's read then misses a write committed meanwhile (read-your-writes
    breaks). Every read goes through SqliteStore._all / _one, which run whole."""
    from pathlib import Path

    import retenshund.store as pkg

    offenders = [p.name for p in Path(pkg.__file__).parent.glob("*.py")
                 if "async with self._read.execute(" in p.read_text() or "cur.fetch" in p.read_text()]
    assert offenders == []


# One event: (kind, user id or None, anonymous id or None); ids from a small
# pool so that events meet, merge and alias each other.
_people = st.sampled_from(["u1", "u2", "u3"])
_visitors = st.sampled_from(["a1", "a2", "a3"])
_calls = st.one_of(
    st.tuples(st.just("track"), _people, st.none()),
    st.tuples(st.just("track"), st.none(), _visitors),
    st.tuples(st.just("track"), _people, _visitors),
    st.tuples(st.just("identify"), _people, st.one_of(st.none(), _visitors)),
    st.tuples(st.just("alias"), _people, _visitors),  # previousId = the visitor
)


def _call(i: int, call: tuple[str, str | None, str | None]) -> EventIn:
    kind, user, anon = call
    at = T0 + i
    if kind == "alias":
        return ev(f"m{i}", "alias", user=user, at=at, previousId=anon)
    if kind == "identify":
        return ev(f"m{i}", "identify", user=user, anon=anon, at=at, traits={f"t{i % 3}": i})
    return ev(f"m{i}", user=user, anon=anon, at=at)


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(_calls, min_size=1, max_size=12))
def test_a_batch_resolves_people_exactly_as_its_events_one_by_one(tmp_path_factory: Any,
                                                                   calls: list[tuple[str, Any, Any]]) -> None:
    """Senders of a batch are looked up and created in bulk (one query, one
    insert each); who ends up being whom must not depend on it."""
    from retenshund.store.sqlite import SqliteStore

    async def outcome(one_by_one: bool) -> Any:
        s = SqliteStore(tmp_path_factory.mktemp("resolve"))
        await s.open()
        try:
            events = [_call(i, c) for i, c in enumerate(calls)]
            if one_by_one:
                for e in events:
                    await s.ingest([e])
            else:
                await s.ingest(events)
            stored = await s.events_after(0, 1000)
            # Which events share a profile, and whose it is (pids themselves may differ).
            by_pid: dict[int, list[str]] = {}
            for e in stored:
                by_pid.setdefault(e.pid, []).append(e.message_id)
            filed = sorted((e.message_id, e.profile_user_id, tuple(by_pid[e.pid])) for e in stored)
            profiles = {}
            for user in ("u1", "u2", "u3"):
                p = await s.get_profile(user)
                profiles[user] = None if p is None else (p.traits, p.created_at, p.last_seen_at)
            return filed, profiles
        finally:
            await s.close()

    async def run() -> None:
        assert await outcome(one_by_one=False) == await outcome(one_by_one=True)

    asyncio.run(run())


async def test_last_seen_is_the_latest_event_received_of_the_person(store: Store) -> None:
    await store.ingest([ev("m1", at=T0)])
    await store.ingest([ev("m2", at=T0 + 5_000), ev("m3", user="u2", at=T0 + 9_000)])
    # What we do to a user (internal events, e.g. a message sent) is not them being seen.
    await store.ingest([EventIn(message_id="m4", type="track", event="message_sent", user_id="u1",
                                data={"internal": True}, timestamp=T0 + 20_000, received_at=T0 + 20_000)])
    p1, p2 = await store.get_profile("u1"), await store.get_profile("u2")
    assert p1 is not None and p2 is not None
    assert (p1.created_at, p1.last_seen_at) == (T0, T0 + 5_000)
    assert (p2.created_at, p2.last_seen_at) == (T0 + 9_000, T0 + 9_000)
    # Merged people keep the later of the two.
    await store.ingest([ev("m5", user=None, anon="a9", at=T0 + 30_000)])
    await store.ingest([ev("m6", "alias", user="u1", at=T0 + 1_000, previousId="a9")])
    merged = await store.get_profile("u1")
    assert merged is not None and merged.last_seen_at == T0 + 30_000


async def test_returning_senders_keep_their_profiles_when_the_id_cache_fills_mid_batch(
        tmp_path: Any, monkeypatch: Any) -> None:
    """The writer's id -> profile cache is emptied when full, possibly in the
    middle of looking up a batch's senders; who is new must come from the rows
    found, not from what the cache still holds."""
    import retenshund.store.sqlite as sqlite_store

    s = sqlite_store.SqliteStore(tmp_path / "data")
    await s.open()
    try:
        first = await s.ingest([ev(f"a{i}", user=None, anon=f"v{i}") for i in range(3)]
                               + [ev(f"u{i}", user=f"p{i}") for i in range(3)])
        pid_of = {e.anonymous_id or e.user_id: e.pid for e in first.stored}
        s._forget()
        monkeypatch.setattr(sqlite_store, "_CACHE_LIMIT", 3)
        s._remember("x:1", 99)
        s._remember("x:2", 98)  # one more entry and the cache is emptied
        again = await s.ingest([ev(f"b{i}", user=None, anon=f"v{i}") for i in range(3)]
                               + [ev(f"w{i}", user=f"p{i}") for i in range(3)])
        assert {e.anonymous_id or e.user_id: e.pid for e in again.stored} == pid_of
        assert again.duplicates == 0
    finally:
        await s.close()


async def test_events_named_for_it_carry_their_senders_profile_as_stored(store: Store) -> None:
    store.profile_events = frozenset({"upgraded"})
    result = await store.ingest([ev("i1", "identify", traits={"plan": "pro"}), ev("t1", event="upgraded"),
                                 ev("t2", event="clicked"), ev("t3", event="upgraded", user="nobody-yet")])
    identify, upgraded, clicked, newcomer = result.stored
    assert identify.profile is None and clicked.profile is None  # only the named track events
    assert upgraded.profile is not None and upgraded.profile.traits == {"plan": "pro"}
    assert upgraded.profile.user_id == "u1" and upgraded.profile.pid == upgraded.pid
    assert newcomer.profile is not None and newcomer.profile.user_id == "nobody-yet"
    read_back = await store.events_after(0, 10)
    assert all(e.profile is None for e in read_back)  # a snapshot of the moment, not stored


async def test_profiles_for_sends_asked_at_once_each_get_their_own_answer(store: Store) -> None:
    await store.ingest([ev("i1", "identify", traits={"plan": "pro"}), ev("i2", "identify", user="u2", traits={})])
    ann, bob, nobody, ann_again = await asyncio.gather(
        store.profile_for_send("u1"), store.profile_for_send("u2"), store.profile_for_send("ghost"),
        store.profile_for_send("u1"))
    assert ann is not None and bob is not None and ann_again is not None and nobody is None
    assert (ann.user_id, ann.traits, bob.user_id, bob.traits) == ("u1", {"plan": "pro"}, "u2", {})
    assert ann_again == ann and ann_again is not ann  # each caller may change its own


async def test_profiles_for_sends_asked_in_one_loop_turn_are_read_by_one_query(tmp_path: Any) -> None:
    from retenshund.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "one")
    await s.open()
    try:
        await s.ingest([ev(f"i{i}", "identify", user=f"u{i}", traits={"n": i}) for i in range(600)])
        reads = 0
        real = s._all

        async def counted(sql: str, args: Any = ()) -> list[Any]:
            nonlocal reads
            reads += 1
            return await real(sql, args)

        s._all = counted  # type: ignore[method-assign]
        profiles = await asyncio.gather(*(s.profile_for_send(f"u{i}") for i in range(600)))
        assert [p.traits["n"] if p else None for p in profiles] == list(range(600))
        assert reads == 2  # 600 users: two chunks of at most 500 ids
        assert await s.profile_for_send("u7") is not None and reads == 3

        async def failing(sql: str, args: Any = ()) -> list[Any]:
            raise RuntimeError("disk I/O error")

        s._all = failing  # type: ignore[method-assign]
        outcomes = await asyncio.gather(s.profile_for_send("u1"), s.profile_for_send("u2"), return_exceptions=True)
        assert [str(o) for o in outcomes] == ["disk I/O error", "disk I/O error"]
    finally:
        await s.close()


def test_the_unread_count_reads_only_unread_rows(tmp_path: Any) -> None:
    """It goes out with every in-app message: a user with years of read messages
    must not make each delivery walk all of them."""
    import sqlite3

    from retenshund.store.migrate import apply_sqlite
    from retenshund.store.sqlite_messaging import INBOX_UNREAD

    conn = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    apply_sqlite(conn)
    conn.executemany("INSERT INTO inbox (id, pid, title, created_at, read_at) VALUES (?, 1, 't', ?, ?)",
                     [(f"m{i}", i, i if i < 500 else None) for i in range(503)])
    plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + INBOX_UNREAD, (1,)))
    assert "USING INDEX inbox_unread" in plan
    assert conn.execute(INBOX_UNREAD, (1,)).fetchone()[0] == 3
    conn.close()


def test_a_users_journal_and_automation_fatigue_are_read_through_the_users_indexes(tmp_path: Any) -> None:
    """Migrations 0008 and 0009 dropped two indexes no query needed; the reads
    they might have served go through the per-user indexes."""
    import sqlite3

    from retenshund.store.migrate import apply_sqlite
    from retenshund.store.sqlite_automations import RECENT_AUTOMATION_MESSAGES, USER_JOURNAL

    conn = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    apply_sqlite(conn)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "journal_automation" not in names and "messages_pid_automation" not in names
    sql = USER_JOURNAL.format(automation="AND automation_id = ?")
    plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (1, "a", 10)))
    assert "USING INDEX journal_pid" in plan
    plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + RECENT_AUTOMATION_MESSAGES, (1, 0)))
    assert "USING INDEX messages_pid" in plan
    conn.close()


def test_activity_days_are_clustered_by_day_and_read_by_profile_through_an_index(tmp_path: Any) -> None:
    """Every event updates its sender's row for the day: keyed by day first, today's
    rows sit together however long the history (migration 0010), and the rows a
    store held before the migration are all still there."""
    import sqlite3

    from retenshund.store.migrate import apply_sqlite, migrations
    from retenshund.store.sqlite import ADD_ACTIVITY, DELETE_ACTIVITY, PROFILE_ROW
    from retenshund.store.sqlite_segments import ACTIVITY, ACTIVITY_OF

    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    for version, name, sql in migrations():
        if version < 10:
            conn.executescript(f"BEGIN;\n{sql}\nINSERT INTO schema_version VALUES ({version}, '{name}');\nCOMMIT;")
    old_rows = [(pid, day, pid * day % 7 + 1, day * 1000 + pid) for pid in range(1, 40) for day in (20000, 20001, 20005)]
    conn.executemany("INSERT INTO activity_days (pid, day, count, last_at) VALUES (?, ?, ?, ?)", old_rows)
    assert apply_sqlite(conn)[0] == "0010_activity_by_day.sql"

    assert sorted(conn.execute("SELECT pid, day, count, last_at FROM activity_days")) == sorted(old_rows)
    key = sorted((row[5], row[1]) for row in conn.execute("PRAGMA table_info(activity_days)") if row[5])
    assert key == [(1, "day"), (2, "pid")]
    conn.execute(ADD_ACTIVITY, (3, 20005, 2, 1))  # an existing row: counted, last_at kept
    assert conn.execute("SELECT count, last_at FROM activity_days WHERE pid = 3 AND day = 20005").fetchone() == (
        3 * 20005 % 7 + 1 + 2, 20005 * 1000 + 3)
    for sql, args in [(ACTIVITY, (3, 20000, 20005)), (ACTIVITY_OF.format(marks="?,?"), (3, 4, 20000, 20005)),
                      (PROFILE_ROW, (3,)), (DELETE_ACTIVITY, (3,))]:
        plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "activity_days_pid" in plan, (sql, plan)
    conn.close()


def test_runs_left_between_two_steps_are_found_at_start_without_reading_every_run(tmp_path: Any) -> None:
    import sqlite3

    from retenshund.store.migrate import apply_sqlite
    from retenshund.store.sqlite_automations import ACTIVE_RUNS

    conn = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    apply_sqlite(conn)
    plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + ACTIVE_RUNS, (10,)))
    assert "USING INDEX runs_active" in plan and "TEMP B-TREE" not in plan
    conn.close()


async def test_computed_variables_count_and_add_up_every_event_not_only_the_newest(store: Any) -> None:
    """``count`` and ``sum`` cover all of a user's events of the name since the
    bound (they were read out, capped at the newest 10,000); ``sum`` skips what is
    not a number, booleans included, as Python's numbers do."""
    values: list[Any] = [1] * 10_004 + [2.5, True, "7", None, {"x": 1}]
    events = [ev(f"o{i}", event="order", properties={"total": v}, at=T0 + i) for i, v in enumerate(values)]
    events += [ev("o-no-total", event="order", properties={}, at=T0), ev("other", event="refund", properties={"total": 5})]
    events += [ev(f"d{i}", event="order", properties={"a.b c": 3}, at=T0 + i) for i in range(2)]
    events += [ev("q", event="order", properties={'say "hi"': 4, "total": 0}, at=T0 + 20_000)]
    await store.ingest(events)
    pid = (await store.get_profile("u1")).pid
    assert await store.count_events(pid, "order", 0) == len(values) + 1 + 2 + 1
    assert await store.count_events(pid, "order", T0 + 10_004) == 5 + 1
    assert await store.count_events(pid, "nothing", 0) == 0
    total = await store.sum_property(pid, "order", 0, "total")
    assert total == 10_004 + 2.5 and isinstance(total, float)
    assert await store.sum_property(pid, "order", T0 + 10_005, "total") == 0  # only non-numbers after
    assert await store.sum_property(pid, "order", 0, "a.b c") == 6  # a key that is no plain JSON path label
    assert await store.sum_property(pid, "order", 0, 'say "hi"') == 4
    assert await store.sum_property(pid, "nothing", 0, "total") == 0
    huge = [ev(f"h{i}", event="big", properties={"n": 2**62}) for i in range(3)]
    await store.ingest(huge)
    assert await store.sum_property(pid, "big", 0, "n") == float(3 * 2**62)  # past 64 bits: a float


async def test_the_profiles_a_commit_brings_are_read_by_one_statement_per_500_senders(tmp_path: Any) -> None:
    from retenshund.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "one")
    await s.open()
    try:
        await s.ingest([ev(f"i{i}", "identify", user=f"u{i}", traits={"n": i}) for i in range(600)])
        s.profile_events = frozenset({"upgraded"})
        statements: list[str] = []
        await s.writer.run(lambda conn: conn.set_trace_callback(statements.append))
        result = await s.ingest([ev(f"t{i}", event="upgraded", user=f"u{i % 600}") for i in range(1200)])
        await s.writer.run(lambda conn: conn.set_trace_callback(None))
        assert [e.profile.traits["n"] if e.profile else None for e in result.stored] == [i % 600 for i in range(1200)]
        assert result.stored[0].profile is result.stored[600].profile  # one per sender
        reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT") and "FROM profiles" in sql]
        assert len(reads) == 2  # 600 senders: two chunks of at most 500
    finally:
        await s.close()


async def test_ingests_that_meet_in_a_group_commit_are_stored_by_one_call(tmp_path: Any) -> None:
    """Single-event requests queued together are written as one batch (one
    statement per table, one savepoint), not one after another: the writer's
    merge once compared bound methods with ``is`` and never matched."""
    import threading

    from retenshund.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "one")
    await s.open()
    try:
        calls: list[int] = []
        real = s._ingest

        def counted(conn: Any, events: list[EventIn], *args: Any, **kw: Any) -> Any:
            calls.append(len(events))
            return real(conn, events, *args, **kw)

        s._ingest = counted  # type: ignore[method-assign]
        busy, release = threading.Event(), threading.Event()

        def hold(conn: Any) -> None:
            busy.set()
            release.wait(5)

        blocker = asyncio.ensure_future(s.writer.run(hold))
        await asyncio.to_thread(busy.wait, 5)
        tasks = [asyncio.ensure_future(s.ingest([ev(f"m{i}", user=f"u{i % 7}")])) for i in range(50)]
        tasks.append(asyncio.ensure_future(s.ingest([ev("m3", user="u3")])))  # a retry: a duplicate
        await asyncio.sleep(0)  # every request's job is queued behind the blocker
        assert s.writer.pending == 52
        release.set()
        await blocker
        results = await asyncio.gather(*tasks)
        assert calls == [51]
        assert [len(r.stored) for r in results] == [1] * 50 + [0] and results[-1].duplicates == 1
        assert [e.message_id for r in results for e in r.stored] == [f"m{i}" for i in range(50)]
        assert len(await s.events_after(0, 1000)) == 50
    finally:
        await s.close()


async def test_engagement_rows_set_in_a_segment_write_are_one_statement_and_read_back_in_it(tmp_path: Any) -> None:
    """A batch of first-seen users sets one engagement row each: written with one
    executemany at the end of the transaction, and every read in between (one
    by one or prefetched) already sees what was set."""
    from retenshund.engine.baseline import Engagement
    from retenshund.engine.engagement import EngagementRow
    from retenshund.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "one")
    await s.open()
    try:
        stored = (await s.ingest([ev(f"e{i}", user=f"u{i}") for i in range(50)])).stored
        pids = [e.pid for e in stored]

        def row(day: int) -> EngagementRow:
            return EngagementRow(last_active_day=day, day=day,
                                 engagement=Engagement(baseline=1.0, recent=2.0, ratio=2.0, state="rising", active_days=1))

        def write(tx: Any) -> tuple[Any, Any, Any]:
            for pid in pids:
                tx.set_engagement_row(pid, row(10))
            one = tx.engagement_row(pids[0])
            tx.prefetch_engagement(pids[:10], 0, 10)
            prefetched = tx.engagement_row(pids[5])
            outside = tx.engagement_row(pids[20])  # set, but not among the prefetched
            tx.set_engagement_row(pids[5], row(11))  # set twice: the last one is kept
            assert outside == row(10)
            return one, prefetched, tx.engagement_row(pids[5])

        statements: list[str] = []
        await s.writer.run(lambda conn: conn.set_trace_callback(statements.append))
        one, prefetched, again = await s.segment_write(T0, write)
        await s.writer.run(lambda conn: conn.set_trace_callback(None))
        assert one == row(10) and prefetched == row(10) and again == row(11)
        writes = [i for i, sql in enumerate(statements) if "INTO engagement_state" in sql]
        prefetch = max(i for i, sql in enumerate(statements) if "FROM engagement_state" in sql)
        assert len(writes) == 50 and min(writes) > prefetch  # one row per user, all at the end
        days = await s.writer.run(lambda conn: dict(conn.execute("SELECT pid, day FROM engagement_state")))
        assert len(days) == 50 and days[pids[5]] == 11 and days[pids[0]] == 10
    finally:
        await s.close()
