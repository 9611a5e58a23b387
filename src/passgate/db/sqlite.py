"""SQLite's side of the engine: connection pragmas, how transactions BEGIN, read snapshots, the WAL
checkpointer thread. Nothing here runs on PostgreSQL (each function checks, or is only wired for SQLite)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

log = logging.getLogger("passgate.db")

_BUSY_TIMEOUT_MS = 10_000


class WriteLockBusy(Exception):
    """SQLite's write lock is held by another connection (another process), and the caller asked not to
    wait for it (`begin_without_waiting`)."""


# Set by a caller that must not block while another process holds SQLite's write lock: its BEGIN fails
# at once with WriteLockBusy instead of sleeping in SQLite's busy handler (see db.group_commit).
begin_without_waiting: ContextVar[bool] = ContextVar("begin_without_waiting", default=False)
# Set by `read_snapshot`: the transaction begins DEFERRED (a read snapshot; no write lock) and the connection
# refuses writes (PRAGMA query_only) until it ends.
begin_read_only: ContextVar[bool] = ContextVar("begin_read_only", default=False)
# Set by `read_only`: the transaction begins DEFERRED (a reader's; it takes no write lock unless it writes).
begin_deferred: ContextVar[bool] = ContextVar("begin_deferred", default=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cur.close()


def sqlite_begin_immediate(engine: Engine) -> None:
    # pysqlite's deferred transactions upgrade read locks to write locks mid-transaction, which
    # deadlocks concurrent writers (SQLITE_BUSY without waiting). Taking the write lock at BEGIN
    # makes writers queue on busy_timeout instead.
    @event.listens_for(engine, "connect")
    def _no_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Straight on the DBAPI connection: a statement through SQLAlchemy costs more than the BEGIN.
        raw = conn.connection.driver_connection
        if begin_read_only.get():
            raw.execute("BEGIN")
            raw.execute("PRAGMA query_only=ON")
            return
        if begin_deferred.get():
            raw.execute("BEGIN")
            return
        if not begin_without_waiting.get():
            raw.execute("BEGIN IMMEDIATE")
            return
        # The lock is taken at BEGIN IMMEDIATE only, so once it succeeds no later statement of the
        # transaction waits (WAL readers never block a writer), and the timeout can go straight back.
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise WriteLockBusy(str(exc)) from exc
            raise
        finally:
            raw.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


@contextmanager
def read_snapshot(session: Session) -> Iterator[None]:
    """SQLite: run the session's transaction as a read snapshot — BEGIN DEFERRED (no write lock; WAL
    readers never wait for a writer), with writes refused (PRAGMA query_only) until the block ends. For
    units whose writes are all deferred to commit (db.deferred.DeferredWrites): their reads run here,
    their writes go to another, short transaction (see db.group_commit.InlineCommitter)."""
    token = begin_read_only.set(True)
    try:
        raw = session.connection().connection.driver_connection
    finally:
        begin_read_only.reset(token)
    assert raw is not None
    try:
        yield
    finally:
        raw.execute("PRAGMA query_only=OFF")


# Pages of WAL after which a connection checkpoints on its own at commit (SQLite's default is 1,000). Set on
# the connections of a process that runs a WalCheckpointer: that thread keeps the WAL well below it, and
# the threshold only catches a checkpointer that cannot keep up.
BACKSTOP_CHECKPOINT_PAGES = 20_000
RESTART_FRAMES = 4_000  # a log longer than this (16 MB of 4 KB pages) is started over (see WalCheckpointer)
RESTART_WAIT_MS = 200


class WalCheckpointer:
    """Checkpoints a SQLite file's WAL from a thread of its own, every `interval` seconds.

    SQLite checkpoints at commit, in whichever connection's commit finds the WAL past 1,000 pages: it
    copies those pages into the database file and syncs it, on that caller's thread, which in `passgate
    serve` is the event loop. A challenge writes many pages (ten rows in six tables), so those commits
    were a large share of a challenge's database time (bench/decide_cost.py: 306-375 µs per challenge on
    average against 269-309 µs median). Here a PASSIVE checkpoint (it never waits for readers or writers)
    runs on another thread — the sqlite3 module releases the GIL while SQLite works — and the process's
    own connections only checkpoint past BACKSTOP_CHECKPOINT_PAGES.

    `interval` 0: no thread, only the raised threshold, for a process whose file another process's
    checkpointer looks after (the delivery workers `passgate serve` runs as its child: two threads taking
    turns at the same log copied nothing more, and each synced the file)."""

    def __init__(self, engine: Engine, interval: float = 0.05) -> None:
        self.engine = engine
        self.interval = interval
        self.checkpoints = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False

    def start(self) -> None:
        if self._thread is not None or not is_sqlite(self.engine):
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            return
        if not self._listening:
            event.listen(self.engine, "connect", _raise_checkpoint_threshold)
            self._listening = True
        # Connections the pool opened before now keep SQLite's default threshold: close them.
        self.engine.dispose()
        if self.interval <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(database,), name="passgate-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)

    def _run(self, database: str) -> None:
        conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._checkpoint(conn)
                except sqlite3.Error as exc:  # another checkpoint running, the file busy: next time
                    log.debug("WAL checkpoint skipped: %s", exc)
                except Exception:  # never let the thread die: the connections' backstop would be all left
                    log.exception("WAL checkpoint failed")
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        [(_, frames, _)] = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1
        if frames > RESTART_FRAMES:
            # With writes never pausing, a passive checkpoint rarely finds the whole log copied at the
            # moment a writer starts, so the log is not started over and keeps growing. RESTART waits
            # (here, on this thread) for the writer and the readers to finish what they are doing,
            # copies the rest and makes the next writer start the log from its beginning; meanwhile
            # writers wait (the API's without stopping its loop) for a few milliseconds.
            conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
            try:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                self.restarts += 1
            finally:
                conn.execute("PRAGMA busy_timeout=0")


def _raise_checkpoint_threshold(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
