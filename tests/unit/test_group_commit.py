"""The group committer on a real SQLite file: a batch that finds the write lock held by another
connection (as `passgate worker` holds it) waits without stopping the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from sqlalchemy import event, text

from passgate.batching import GroupCommitter
from passgate.db import WriteLockBusy, begin_without_waiting, make_engine, make_sessionmaker


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
    committer = GroupCommitter(sessions, inline=True)
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
    committer = GroupCommitter(sessions, inline=True)
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
