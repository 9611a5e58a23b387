"""Declarative base, column types that behave the same on SQLite and PostgreSQL, engines."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from pydantic_core import to_json
from sqlalchemy import JSON, DateTime, Engine, MetaData, bindparam, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("passgate.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, always returns aware UTC, so comparisons agree on both databases."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)

    def bind_processor(self, dialect: Any) -> Any:
        # On SQLite, the value's final text in one step instead of process_bind_param and then the
        # dialect's DATETIME formatting (a third of a challenge's insert work); the same text either way.
        if dialect.name == "sqlite":
            return sqlite_utc_text
        return super().bind_processor(dialect)


def sqlite_utc_text(value: datetime | None) -> str | None:
    """A UTC column's value as SQLAlchemy's SQLite DATETIME stores it: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`."""
    if value is None:
        return None
    return _utc_text(value)


@lru_cache(maxsize=4096)
def _utc_text(value: datetime) -> str:
    # Remembered: the rows of one request carry the same few instants over and over (a challenge binds 14
    # dates, most of them its `now`). Equal aware datetimes are one instant, whatever their zone, so the
    # text is the same; a naive one raises, and a raise is not remembered.
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


JSONType = JSON().with_variant(JSONB(), "postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cur.close()


def normalise_url(url: str) -> str:
    # Users write postgresql://; we drive it with psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json_text(value: Any) -> str:
    # pydantic-core's serialiser (Rust) writes the JSON columns; several times faster than json.dumps
    # on a decision's request document, and the text reads back the same with json.loads.
    return to_json(value).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    kwargs.setdefault("json_serializer", _json_text)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=8,
            max_overflow=8,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        _sqlite_begin_immediate(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


class WriteLockBusy(Exception):
    """SQLite's write lock is held by another connection (another process), and the caller asked not to
    wait for it (`begin_without_waiting`)."""


# Set by a caller that must not block while another process holds SQLite's write lock: its BEGIN fails
# at once with WriteLockBusy instead of sleeping in SQLite's busy handler (see GroupCommitter).
begin_without_waiting: ContextVar[bool] = ContextVar("begin_without_waiting", default=False)
# Set by `read_snapshot`: the transaction begins DEFERRED (a read snapshot; no write lock) and the connection
# refuses writes (PRAGMA query_only) until it ends.
begin_read_only: ContextVar[bool] = ContextVar("begin_read_only", default=False)
# Set by `read_only`: the transaction begins DEFERRED (a reader's; it takes no write lock unless it writes).
begin_deferred: ContextVar[bool] = ContextVar("begin_deferred", default=False)
_BUSY_TIMEOUT_MS = 10_000


def _sqlite_begin_immediate(engine: Engine) -> None:
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
    own connections only checkpoint past BACKSTOP_CHECKPOINT_PAGES."""

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


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "before_commit", flush_deferred_inserts)
    event.listen(factory, "after_soft_rollback", _forget_deferred)
    return factory


DEFERRED = "deferred_inserts"


def _forget_deferred(session: Session, _transaction: Any) -> None:
    session.info.pop(DEFERRED, None)
    session.info.pop(INCREMENTS, None)
    session.info.pop(UPSERTS, None)
    session.info.pop(UPDATES, None)


def defer_insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert these rows when the transaction commits, together with the other rows of the same table.

    For append-only rows nothing in the transaction reads back (decisions, velocity events): one
    multi-row insert at commit costs far less than a statement per request.
    """
    session.info.setdefault(DEFERRED, {}).setdefault(table, []).extend(rows)


INCREMENTS = "deferred_increments"


def defer_increments(session: Session, table: Any, keys: list[tuple[Any, ...]]) -> None:
    """Add one to the `count` column of the rows with these primary keys, when the transaction commits.

    Increments of one transaction are summed first, so a batch of decisions on the same keys costs one
    upsert per key, not one per decision.
    """
    counts = session.info.setdefault(INCREMENTS, {}).setdefault(table, {})
    for key in keys:
        counts[key] = counts.get(key, 0) + 1


UPSERTS = "deferred_upserts"


def defer_upsert(
    session: Session, table: Any, row: dict[str, Any], keys: tuple[str, ...], update: tuple[str, ...]
) -> None:
    """INSERT the row, or on a conflict on `keys` set the `update` columns to the row's values, when the
    transaction commits (in the order deferred: a later row for the same keys updates an earlier one)."""
    session.info.setdefault(UPSERTS, {}).setdefault((table, tuple(sorted(row)), keys, update), []).append(row)


UPDATES = "deferred_updates"


class StaleRows(Exception):
    """A deferred update matched fewer rows than it was given: a row it was computed from has changed
    since (see `defer_update`). Raised at commit, which then rolls back."""


def defer_update(session: Session, statement: HotStatement, rows: list[dict[str, Any]]) -> None:
    """Run `statement`, an UPDATE whose WHERE matches exactly one row per parameter set, for each of `rows`
    when the transaction commits (after the deferred inserts). If fewer rows match than were given, the
    commit raises StaleRows and nothing of the transaction is written.

    For a unit computed on a read snapshot and written later (`GroupCommitter.run(writes_at_commit=True)`):
    its WHERE names what the unit read (a row's version, its status), so a row changed in between is not
    overwritten; the committer then runs the unit again the ordinary way, with the write lock held."""
    session.info.setdefault(UPDATES, {}).setdefault(statement, []).extend(rows)


def merge_deferred(into: dict[str, Any], info: dict[str, Any]) -> None:
    """Add one session's `info` (its deferred rows, increments, upserts, updates and flags) to another's."""
    for key, value in info.items():
        if key == DEFERRED or key == UPSERTS or key == UPDATES:
            target = into.setdefault(key, {})
            for table, rows in value.items():
                target.setdefault(table, []).extend(rows)
        elif key == INCREMENTS:
            target = into.setdefault(key, {})
            for table, counts in value.items():
                mine = target.setdefault(table, {})
                for k, n in counts.items():
                    mine[k] = mine.get(k, 0) + n
        elif isinstance(value, bool):
            into[key] = into.get(key, False) or value
        else:
            into[key] = value


def flush_deferred_inserts(session: Session) -> None:
    pending = session.info.pop(DEFERRED, None)
    increments = session.info.pop(INCREMENTS, None)
    upserts = session.info.pop(UPSERTS, None)
    updates = session.info.pop(UPDATES, None)
    if not pending and not increments and not upserts and not updates:
        return
    # ORM objects first: deferred rows may reference them (timeline events reference their session).
    if session.new or session.dirty or session.deleted:
        session.flush()
    conn = session.connection()
    for table, rows in sorted((pending or {}).items(), key=lambda item: _dependency_rank(item[0])):
        if rows:
            _insert_statement(table).executemany(conn, rows)
    for (table, columns, keys, update), rows in (upserts or {}).items():
        _upsert_statement(table, columns, keys, update).executemany(conn, rows)
    for table, counts in (increments or {}).items():
        keys = [c.name for c in table.primary_key.columns]
        rows = [dict(zip(keys, key, strict=True), count=n) for key, n in sorted(counts.items())]
        _increment_statement(table).executemany(conn, rows)
    for statement, rows in (updates or {}).items():
        matched = statement.executemany(conn, rows)
        if matched != len(rows):
            raise StaleRows(f"{len(rows) - matched} of {len(rows)} rows changed since they were read")


def _dependency_rank(table: Any) -> int:
    """A table's place in foreign-key order: deferred rows of a table go in after the rows they reference
    (a challenge's session before its secret, message and events), whatever order units deferred them."""
    rank = _RANKS.get(table)
    if rank is None:
        _RANKS.update({t: i for i, t in enumerate(table.metadata.sorted_tables)})
        rank = _RANKS.get(table, len(_RANKS))
    return rank


_RANKS: dict[Any, int] = {}


class HotStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor of a session's connection.

    For the few statements every decision runs (the device read, the decision and velocity rows): there
    SQLAlchemy's per-execution work (cache key, parameter processing, result wrapping) costs several times
    what the database does. The SQL is SQLAlchemy's own compilation of the statement, values go through
    each column type's own bind processor and results through its result processor, so what reaches the
    database and what comes back are what `Connection.execute` would send and return (as plain tuples).
    It runs inside the session's transaction, on its connection.

    `statement` is a Core statement, or a function of the dialect's name giving one (an upsert is written
    differently on SQLite and PostgreSQL).
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Prepared] = {}

    def _prepare(self, dialect: Any) -> _Prepared:
        prepared = self._compiled.get(dialect.name)
        if prepared is None:
            statement = self.statement(dialect.name) if callable(self.statement) else self.statement
            compiled = statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
            spec = []
            for name in order:
                bind = compiled.binds[name]
                # A value bound in the statement itself (a literal) is its default; the caller gives the others.
                literal = not bind.required and bind.value is not None and not callable(bind.value)
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                spec.append((name, processor, literal, bind.value if literal else None))
            columns = getattr(statement, "selected_columns", None) or ()
            results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
            prepared = _Prepared(
                compiled.string,
                _binder(tuple(spec), positional=bool(compiled.positional)),
                tuple(results) if any(results) else None,
            )
            self._compiled[dialect.name] = prepared
        return prepared

    def rows(self, conn: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        sql, bind, results = self._prepare(conn.dialect)
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(sql, bind(values))
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        if results is None:
            return list(fetched)
        return [tuple(v if p is None else p(v) for p, v in zip(results, row, strict=True)) for row in fetched]

    def executemany(self, conn: Any, rows: list[dict[str, Any]]) -> int:
        """Runs the statement once per row; returns the rows it changed in all (DBAPI rowcount)."""
        sql, bind, _ = self._prepare(conn.dialect)
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.executemany(sql, [bind(r) for r in rows])
            return int(cursor.rowcount)
        finally:
            cursor.close()


class _Prepared(NamedTuple):
    sql: str
    bind: Callable[[dict[str, Any]], Any]
    results: tuple[Any, ...] | None  # a result processor (or None) per selected column; None: none at all


def _binder(
    spec: tuple[tuple[str, Any, bool, Any], ...], positional: bool
) -> Callable[[dict[str, Any]], Any]:
    """Turns a row of values into the DBAPI's parameters: in bind order (qmark) or by name (pyformat),
    each through its type's processor, a literal's own value when the row does not give one.

    Without literals (every insert), the values are picked in one `itemgetter` call and only the columns
    that have a processor (dates, JSON, booleans) are looked at again: a challenge binds about 200 values,
    and a Python loop over all of them cost more than the database's own executemany."""
    names = tuple(name for name, *_ in spec)
    processed = tuple((i, processor) for i, (_, processor, _, _) in enumerate(spec) if processor is not None)

    if any(literal for _, _, literal, _ in spec):

        def values_of(row: dict[str, Any]) -> list[Any]:
            out = []
            for name, processor, literal, default in spec:
                value = row.get(name, default) if literal else row[name]
                out.append(value if processor is None else processor(value))
            return out

    else:
        pick: Callable[[dict[str, Any]], Any] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: tuple(row[n] for n in names))
        )

        def values_of(row: dict[str, Any]) -> list[Any]:
            out = list(pick(row))
            for i, processor in processed:
                out[i] = processor(out[i])
            return out

    if positional:
        return lambda row: tuple(values_of(row))
    return lambda row: dict(zip(names, values_of(row), strict=True))


class _RowInserts:
    """Multi-row INSERTs into one table of the columns the rows carry, plus the Python-side defaults of
    the others (as SQLAlchemy's insert would apply them); one statement per set of keys."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._by_keys: dict[frozenset[str], tuple[HotStatement, list[tuple[str, Any]]]] = {}

    def executemany(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        groups: dict[frozenset[str], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(frozenset(row), []).append(row)
        for keys, group in groups.items():
            entry = self._by_keys.get(keys)
            if entry is None:
                defaults = [
                    (c.name, c.default)
                    for c in self._table.columns
                    if c.name not in keys and c.default is not None and not c.default.is_sequence
                ]
                names = sorted(keys) + [name for name, _ in defaults]
                stmt = self._table.insert().values(
                    {n: bindparam(n, type_=self._table.c[n].type) for n in names}
                )
                entry = self._by_keys[keys] = (HotStatement(stmt), defaults)
            statement, defaults = entry
            if defaults:
                group = [
                    {**row, **{n: d.arg(None) if d.is_callable else d.arg for n, d in defaults}}
                    for row in group
                ]
            statement.executemany(conn, group)


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """The dialect's own INSERT (the one with ON CONFLICT), for PostgreSQL or SQLite."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


_INSERTS: dict[Any, _RowInserts] = {}
_INCREMENTS: dict[Any, HotStatement] = {}


def _insert_statement(table: Any) -> _RowInserts:
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = _RowInserts(table)
    return stmt


def _increment_statement(table: Any) -> HotStatement:
    """INSERT … ON CONFLICT (primary key) DO UPDATE SET count = count + excluded.count."""
    stmt = _INCREMENTS.get(table)
    if stmt is None:
        keys = [c.name for c in table.primary_key.columns]
        values = {c.name: bindparam(c.name, type_=c.type) for c in table.columns}

        def build(dialect_name: str) -> Any:
            upsert = dialect_insert(dialect_name, table).values(values)
            return upsert.on_conflict_do_update(
                index_elements=keys, set_={"count": table.c.count + upsert.excluded.count}
            )

        stmt = _INCREMENTS[table] = HotStatement(build)
    return stmt


_UPSERTS: dict[tuple[Any, ...], HotStatement] = {}


def _upsert_statement(
    table: Any, columns: tuple[str, ...], keys: tuple[str, ...], update: tuple[str, ...]
) -> HotStatement:
    """INSERT (these columns) … ON CONFLICT (keys) DO UPDATE SET each `update` column to the inserted
    row's value. A column left out gets its SQL default (NULL); one with a Python-side default may not be
    left out (nothing here would apply it)."""
    stmt = _UPSERTS.get((table, columns, keys, update))
    if stmt is None:
        missing = [c.name for c in table.columns if c.name not in columns and c.default is not None]
        if missing:
            raise ValueError(f"a deferred upsert into {table.name} must give {', '.join(missing)}")
        values = {name: bindparam(name, type_=table.c[name].type) for name in columns}

        def build(dialect_name: str) -> Any:
            upsert = dialect_insert(dialect_name, table).values(values)
            return upsert.on_conflict_do_update(
                index_elements=list(keys), set_={c: getattr(upsert.excluded, c) for c in update}
            )

        stmt = _UPSERTS[(table, columns, keys, update)] = HotStatement(build)
    return stmt


@contextmanager
def read_snapshot(session: Session) -> Iterator[None]:
    """SQLite: run the session's transaction as a read snapshot — BEGIN DEFERRED (no write lock; WAL
    readers never wait for a writer), with writes refused (PRAGMA query_only) until the block ends. For
    units whose writes are all deferred to commit (`defer_insert`, `defer_increments`, `defer_upsert`):
    their reads run here, their writes go to another, short transaction (see batching.GroupCommitter)."""
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


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that only reads. On SQLite its transaction begins DEFERRED, so it takes no write
    lock (WAL readers never wait for a writer, nor make one wait); elsewhere it is an ordinary
    transaction. Like any session's, it begins only when the session is first used."""
    token = begin_deferred.set(True)
    try:
        with factory() as session, session.begin():
            yield session
    finally:
        begin_deferred.reset(token)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def upsert(
    session: Session, table: Any, values: dict[str, Any], keys: list[str], update: dict[str, Any]
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, for SQLite and PostgreSQL alike."""
    stmt: Any = dialect_insert(session.get_bind().dialect.name, table).values(**values)
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    session.execute(stmt)
