"""The WAL checkpointer on a real SQLite file: it checkpoints from its own thread while the process's
connections stop checkpointing at commit, starts an overlong log over, and does nothing elsewhere."""

from __future__ import annotations

import sqlite3
import time

import pytest
from sqlalchemy import text

import passgate.db as db
from passgate.db import BACKSTOP_CHECKPOINT_PAGES, WalCheckpointer, make_engine


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
    monkeypatch.setattr(db, "RESTART_FRAMES", 200)
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer = WalCheckpointer(engine, interval=0.02)
    checkpointer.start()
    try:
        _write(engine, 1000)
        assert _wait_for(lambda: checkpointer.restarts > 0)
        # After a restart, the next write begins the log again from its start: a short log.
        _write(engine, 50)
        observer = sqlite3.connect(path, isolation_level=None)
        frames = observer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        assert frames < 200
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
