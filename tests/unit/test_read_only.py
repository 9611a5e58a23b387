"""`db.read_only` on a real SQLite file: its reads take no write lock, so a writer elsewhere never waits
for them (the worker prepares a claimed round this way, after the claim's commit)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import text

from passgate.db import make_engine, make_sessionmaker, read_only, transaction


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
