"""The group committer on a real SQLite file: a batch that finds the write lock held by another
connection (as `passgate worker` holds it) waits without stopping the event loop, and units that write
only at commit (decisions) are computed on read snapshots meanwhile and written in one short transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, event, text

from passgate.db import make_engine, make_sessionmaker
from passgate.db.deferred import DeferredWrites
from passgate.db.group_commit import InlineCommitter
from passgate.db.sqlite import WriteLockBusy, begin_without_waiting


def _setup(tmp_path):
    path = tmp_path / "gc.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return path, engine, make_sessionmaker(engine)


def _insert(i: int):
    def unit(session):
        session.execute(text("INSERT INTO t VALUES (:i)"), {"i": i})
        return i

    return unit


async def test_a_batch_waits_for_the_lock_with_the_loop_free(tmp_path):
    path, engine, sessions = _setup(tmp_path)
    committer = InlineCommitter(sessions)
    committer.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (-1)")
    loop = asyncio.get_running_loop()
    released: list[float] = []

    def release() -> None:
        other.execute("COMMIT")
        released.append(time.monotonic())

    loop.call_later(0.1, release)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.002)

    task = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*(committer.run(_insert(i)) for i in range(5)))
    finally:
        task.cancel()
    done = time.monotonic()
    assert results == [0, 1, 2, 3, 4]
    assert released and done >= released[0]
    assert done - released[0] < 0.05  # tried again within milliseconds, not after a busy-handler sleep
    assert ticks >= 20  # the loop kept running while the lock was taken (0.1 s at one tick per 2 ms)
    assert committer.lock_retries > 0
    assert committer.batches == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 6
    other.close()
    engine.dispose()


async def test_without_contention_nothing_is_retried(tmp_path):
    _, engine, sessions = _setup(tmp_path)
    committer = InlineCommitter(sessions)
    committer.start()
    assert await asyncio.gather(*(committer.run(_insert(i)) for i in range(3))) == [0, 1, 2]
    assert committer.lock_retries == 0
    engine.dispose()


def test_begin_without_waiting_raises_at_once_and_restores_the_timeout(tmp_path):
    path, engine, sessions = _setup(tmp_path)
    opened = []
    event.listen(engine, "connect", lambda dbapi, record: opened.append(dbapi))
    engine.dispose()  # from here on, every connection the pool makes is seen
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    token = begin_without_waiting.set(True)
    started = time.monotonic()
    try:
        with sessions() as session:
            try:
                session.connection()
            except WriteLockBusy:
                pass
            else:
                raise AssertionError("BEGIN did not notice the lock")
    finally:
        begin_without_waiting.reset(token)
    assert time.monotonic() - started < 0.5  # no busy-handler wait (its timeout is 10 s)
    other.execute("COMMIT")
    with engine.connect() as conn:
        # The very connection whose BEGIN failed waits again the ordinary way.
        assert len(opened) == 1 and conn.connection.driver_connection is opened[0]
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    other.close()
    engine.dispose()


# -- units that write only at commit: computed on a read snapshot, written in a short transaction ----

_meta = MetaData()
_rows = Table("rows", _meta, Column("id", Integer, primary_key=True), Column("x", Integer, nullable=False))
_counts = Table(
    "counts", _meta, Column("k", String, primary_key=True), Column("count", Integer, nullable=False)
)
_seen = Table(
    "seen",
    _meta,
    Column("k", String, primary_key=True),
    Column("first", Integer, nullable=False),
    Column("last", Integer, nullable=False),
)


def _setup_deferred(tmp_path):
    path, engine, sessions = _setup(tmp_path)
    _meta.create_all(engine)
    return path, engine, sessions


def _deciding(i: int, key: str = "k"):
    """A unit like a decision: it reads, then defers its writes (a row, an increment, an upsert)."""

    def unit(session):
        before = session.execute(text("SELECT count(*) FROM rows")).scalar()
        writes = DeferredWrites.of(session)
        writes.insert(_rows, [{"id": i, "x": before}])
        writes.increment(_counts, [(key,)])
        writes.upsert(_seen, {"k": key, "first": i, "last": i}, ("k",), ("last",))
        session.info["work_queued"] = True
        return i

    return unit


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


async def test_deciding_units_run_while_another_process_holds_the_lock(tmp_path):
    path, engine, sessions = _setup_deferred(tmp_path)
    committer = InlineCommitter(sessions, max_batch=4)
    committer.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ran: list[int] = []
    loop = asyncio.get_running_loop()

    def counted(i: int):
        unit = _deciding(i)

        def run(session):
            ran.append(i)
            return unit(session)

        return run

    tasks = [asyncio.ensure_future(committer.run_deferred(counted(i))) for i in range(10)]
    await asyncio.sleep(0.05)
    # All ten were computed on snapshots (three batches of at most four) although the lock is taken...
    assert sorted(ran) == list(range(10)) and committer.snapshot_batches == 3
    assert not any(t.done() for t in tasks)  # ...and none answers before its rows are written.
    loop.call_soon(other.execute, "COMMIT")
    assert await asyncio.gather(*tasks) == list(range(10))
    assert committer.batches == 1 and committer.units == 10  # one write transaction took them all
    assert _count(engine, "rows") == 10
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count FROM counts WHERE k = 'k'")).scalar() == 10
        assert conn.execute(text("SELECT first, last FROM seen")).one() == (0, 9)
    other.close()
    engine.dispose()


async def test_a_deciding_unit_that_writes_at_once_goes_the_ordinary_way(tmp_path):
    _, engine, sessions = _setup_deferred(tmp_path)
    committer = InlineCommitter(sessions)
    committer.start()
    writes_now = _insert(7)  # an INSERT before the commit: refused on the snapshot, then run ordinarily
    results = await asyncio.gather(
        committer.run_deferred(_deciding(1)),
        committer.run_deferred(writes_now),
        committer.run_deferred(_deciding(2)),
    )
    assert results == [1, 7, 2]
    assert _count(engine, "t") == 1 and _count(engine, "rows") == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count FROM counts")).scalar() == 2
        # The connection the snapshot refused writes on accepts them again.
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 0
    engine.dispose()


async def test_a_deciding_unit_that_fails_gets_its_error_and_leaves_nothing(tmp_path):
    _, engine, sessions = _setup_deferred(tmp_path)
    committer = InlineCommitter(sessions)
    committer.start()

    def failing(session):
        _deciding(99, key="bad")(session)
        raise LookupError("unknown client")

    outcomes = await asyncio.gather(
        committer.run_deferred(_deciding(1)),
        committer.run_deferred(failing),
        committer.run_deferred(_deciding(2)),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[2] == 2 and isinstance(outcomes[1], LookupError)
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(text("SELECT id FROM rows"))) == [1, 2]
        assert conn.execute(text("SELECT count(*) FROM counts WHERE k = 'bad'")).scalar() == 0
    engine.dispose()


async def test_a_failed_write_runs_the_units_again_one_by_one(tmp_path):
    _, engine, sessions = _setup_deferred(tmp_path)
    committer = InlineCommitter(sessions)
    committer.start()
    # Two units defer the same primary key: the write fails, and each runs again in a transaction of
    # its own, where the second one's duplicate fails alone.
    outcomes = await asyncio.gather(
        committer.run_deferred(_deciding(5)),
        committer.run_deferred(_deciding(5)),
        committer.run_deferred(_deciding(6)),
        return_exceptions=True,
    )
    assert outcomes[0] == 5 and outcomes[2] == 6 and isinstance(outcomes[1], Exception)
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(text("SELECT id FROM rows"))) == [5, 6]
    engine.dispose()


async def test_a_deferred_update_of_a_row_changed_since_its_snapshot_runs_again_under_the_lock(tmp_path):
    from passgate.db.deferred import StaleRows
    from passgate.db.fastpath import CursorStatement

    path, engine, sessions = _setup(tmp_path)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER, version INTEGER)"))
        conn.execute(text("INSERT INTO acct VALUES (1, 100, 0)"))
    acct = Table(
        "acct", MetaData(), Column("id", Integer), Column("balance", Integer), Column("version", Integer)
    )
    from sqlalchemy import bindparam, update

    guarded = CursorStatement(
        update(acct)
        .where(acct.c.id == bindparam("id"), acct.c.version == bindparam("read_version"))
        .values(balance=bindparam("balance"), version=bindparam("version"))
    )
    seen: list[tuple[int, int]] = []

    def add_ten(session):  # reads, then writes at commit only what it read plus ten
        balance, version = session.execute(text("SELECT balance, version FROM acct WHERE id = 1")).one()
        seen.append((balance, version))
        DeferredWrites.of(session).update(
            guarded,
            [{"id": 1, "read_version": version, "balance": balance + 10, "version": version + 1}],
        )
        return balance + 10

    committer = InlineCommitter(sessions)
    committer.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    task = asyncio.ensure_future(committer.run_deferred(add_ten))
    await asyncio.sleep(0.05)
    assert seen == [(100, 0)] and not task.done()  # worked out on a snapshot; its write waits for the lock
    # Meanwhile another writer changes the row: the update computed from the snapshot must not land.
    other.execute("UPDATE acct SET balance = 500, version = 1 WHERE id = 1")
    other.execute("COMMIT")
    assert await task == 510  # it ran again, with the lock held, from the row as it now is
    assert seen == [(100, 0), (500, 1)]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT balance, version FROM acct")).one() == (510, 2)
    # Outside the committer the same guard fails the commit instead of overwriting.
    try:
        with sessions() as session, session.begin():
            DeferredWrites.of(session).update(
                guarded, [{"id": 1, "read_version": 0, "balance": 0, "version": 9}]
            )
        raise AssertionError("a stale deferred update was written")
    except StaleRows:
        pass
    with engine.connect() as conn:
        assert conn.execute(text("SELECT balance, version FROM acct")).one() == (510, 2)
    other.close()
    engine.dispose()


async def test_the_thread_committer_batches_units_from_the_loop_and_a_failing_one_fails_alone(tmp_path):
    from passgate.db.group_commit import ThreadCommitter

    _, engine, sessions = _setup(tmp_path)
    committer = ThreadCommitter(sessions)
    committer.start()
    try:
        assert committer.serves_this_loop()

        def boom(session):
            session.execute(text("INSERT INTO t VALUES (99)"))
            raise ValueError("this unit fails")

        outcomes = await asyncio.gather(
            committer.run(_insert(1)),
            committer.run_deferred(boom),  # on PostgreSQL's committer, an ordinary unit
            committer.run(_insert(2)),
            return_exceptions=True,
        )
        assert outcomes[0] == 1 and outcomes[2] == 2 and isinstance(outcomes[1], ValueError)
    finally:
        committer.stop()
    assert not committer.running
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(text("SELECT x FROM t"))) == [1, 2]
    engine.dispose()


async def test_a_committer_not_started_runs_each_unit_alone(tmp_path):
    from passgate.db.group_commit import make_committer

    _, engine, sessions = _setup(tmp_path)
    for inline in (True, False):
        committer = make_committer(sessions, inline=inline)
        assert not committer.serves_this_loop()
        assert await committer.run(_insert(3)) == 3
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
    engine.dispose()


async def test_the_coalescer_writes_what_arrives_meanwhile_in_one_call():
    from passgate.db.group_commit import Coalescer

    calls: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> None:
        calls.append(items)
        if len(calls) == 1:
            await release.wait()  # the first call is under way while more items arrive
        if 13 in items:
            raise RuntimeError("this call fails")

    coalescer: Coalescer[int, None] = Coalescer(write)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(coalescer.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert list(coalescer.waiting()) == [2, 3, 4]
    release.set()
    await asyncio.gather(first, *later)
    assert calls == [[1], [2, 3, 4]]
    assert await coalescer.submit(5) is None and calls[-1] == [5]  # alone, nothing under way


async def test_a_failing_coalesced_call_fails_every_item_it_took():
    from passgate.db.group_commit import Coalescer

    release = asyncio.Event()

    async def write(items: list[int]) -> None:
        if items == [1]:
            await release.wait()
            return
        raise RuntimeError("this call fails")

    coalescer: Coalescer[int, None] = Coalescer(write)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(coalescer.submit(i)) for i in (12, 13)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(first, *later, return_exceptions=True)
    assert outcomes[0] is None
    assert all(isinstance(o, RuntimeError) for o in outcomes[1:])
