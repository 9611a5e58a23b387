"""db.sqlite on a real SQLite file. The WAL checkpointer checkpoints from its own thread while the
process's connections stop checkpointing at commit, starts an overlong log over, and does nothing
elsewhere. `db.read_only`'s reads take no write lock, so a writer elsewhere never waits for them (the
worker prepares a claimed round this way, after the claim's commit)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from sqlalchemy import text

import passgate.db.sqlite as db_sqlite
from passgate.db import make_engine, make_sessionmaker, read_only, transaction
from passgate.db.sqlite import BACKSTOP_CHECKPOINT_PAGES, WalCheckpointer


def _wait_for(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def _write(engine, rows: int, size: int = 3000) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
    for _ in range(rows // 50):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "y" * size}] * 50)


def test_the_thread_checkpoints_and_the_connections_no_longer_do(tmp_path):
    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = WalCheckpointer(engine, interval=0.02)
    checkpointer.start()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_CHECKPOINT_PAGES
        _write(engine, 2000)  # well past SQLite's own 1,000-page threshold
        observer = sqlite3.connect(path, isolation_level=None)
        # Everything written has been copied into the database file by the thread.
        assert _wait_for(lambda: _backfilled(observer))
        assert checkpointer.checkpoints > 0
    finally:
        checkpointer.stop()
    assert checkpointer._thread is None
    engine.dispose()


def _backfilled(conn: sqlite3.Connection) -> bool:
    # A zero-wait passive checkpoint from a third connection reports (busy, frames in log, frames copied).
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return busy == 0 and frames == copied


def test_an_overlong_log_is_started_over(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(db_sqlite, "RESTART_FRAMES", 200)
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = WalCheckpointer(engine, interval=0.02)
    checkpointer.start()
    observer = sqlite3.connect(path, isolation_level=None)
    try:
        _write(engine, 1000)
        # Bounded waits on conditions, not fixed sleeps: on a loaded machine the thread's first RESTART
        # may find a reader or writer still busy (it then reports busy and is tried again next round).
        assert _wait_for(lambda: checkpointer.restarts > 0, timeout=30.0)

        def short_log_after_a_write() -> bool:
            # After a completed restart, the next write begins the log again from its start: a short log.
            _write(engine, 50)
            return int(observer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]) < 200

        assert _wait_for(short_log_after_a_write, timeout=30.0)
    finally:
        observer.close()
        checkpointer.stop()
    engine.dispose()


def test_without_an_interval_no_thread_runs_and_the_connections_still_leave_checkpoints_to_it(tmp_path):
    """The delivery workers of `passgate serve` (its child) leave checkpoints to serve's thread: theirs
    starts no thread, and their connections still never checkpoint below the backstop."""
    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = WalCheckpointer(engine, interval=0)
    checkpointer.start()
    try:
        assert checkpointer._thread is None
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_CHECKPOINT_PAGES
        _write(engine, 2000)
        # Nothing copied back by anyone: the log holds all of it, past SQLite's own 1,000-page threshold.
        with engine.connect() as conn:
            page = conn.exec_driver_sql("PRAGMA page_size").scalar()
        assert (tmp_path / "c.db-wal").stat().st_size > 1300 * page  # SQLite alone stops near 1,000
        assert checkpointer.checkpoints == 0
    finally:
        checkpointer.stop()
    engine.dispose()


def test_nothing_runs_for_an_in_memory_database_or_postgresql():
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    checkpointer = WalCheckpointer(engine)
    checkpointer.start()
    assert checkpointer._thread is None
    checkpointer.stop()
    pg = make_engine("postgresql://postgres@127.0.0.1:5432/test")  # never connected to
    checkpointer = WalCheckpointer(pg)
    checkpointer.start()
    assert checkpointer._thread is None


def _writer_gets_the_lock(path) -> bool:
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_reads_in_read_only_leave_the_write_lock_free(tmp_path):
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    sessions = make_sessionmaker(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with read_only(sessions) as session:
        assert session.execute(text("SELECT x FROM t")).scalar() == 1
        assert _writer_gets_the_lock(path)
    # An ordinary unit of work holds the lock from its first statement (the contrast that makes the
    # check above mean something).
    with transaction(sessions) as session:
        session.execute(text("SELECT x FROM t")).scalar()
        assert not _writer_gets_the_lock(path)
    # The connection goes back to the pool as it was: the next ordinary unit takes the lock again.
    with transaction(sessions) as session:
        session.execute(text("SELECT x FROM t")).scalar()
        assert not _writer_gets_the_lock(path)
    engine.dispose()
