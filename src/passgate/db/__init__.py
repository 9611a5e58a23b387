"""The database layer's public surface: the declarative base, engines, sessionmakers, units of work.

The mechanisms behind it each have a module of their own:
  db.types         column types that behave the same on SQLite and PostgreSQL (UTCDateTime, JSONType)
  db.sqlite        SQLite's BEGIN modes, WriteLockBusy, read snapshots, the WAL checkpointer thread
  db.fastpath      CursorStatement: Core statements run on the DBAPI cursor (only `*/queries.py` use it)
  db.deferred      DeferredWrites: rows written at commit, in foreign-key order
  db.group_commit  the Committer protocol: units of work many to a transaction

It is the one owner of SQLAlchemy for the HTTP side (`passgate.api`, `passgate.console.routes`), which
imports none itself: it names a unit of work's type as `db.Session`, checks readiness with `ping`, and
classifies the database's errors with `is_unavailable`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import InterfaceError as PgInterfaceError
from psycopg import OperationalError as PgOperationalError
from pydantic_core import to_json
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from passgate.db import deferred
from passgate.db.deferred import DeferredWrites
from passgate.db.fastpath import dialect_insert
from passgate.db.sqlite import begin_deferred, is_sqlite, sqlite_begin_immediate, sqlite_pragmas

__all__ = [
    "NAMING_CONVENTION",
    "UNAVAILABLE_ERRORS",
    "Base",
    "Session",
    "is_sqlite",
    "is_unavailable",
    "make_engine",
    "make_sessionmaker",
    "normalise_url",
    "ping",
    "read_only",
    "transaction",
    "upsert",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


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
        event.listen(engine, "connect", sqlite_pragmas)
        sqlite_begin_immediate(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that write their DeferredWrites before each commit and forget them on rollback."""
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "before_commit", deferred.flush)
    event.listen(factory, "after_soft_rollback", DeferredWrites.discard)
    return factory


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


def ping(engine: Engine) -> None:
    """SELECT 1 on a connection of the pool: returns when the database answers, raises when it cannot."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


# The database cannot be reached or cannot answer now (connection refused or lost, the file unreadable,
# the pool exhausted, SQLite's lock held past its timeout): the unit of work did nothing (its transaction
# rolled back), and the same work can be tried again. The pool replaces broken connections (pre-ping on
# PostgreSQL), so the service recovers by itself once the database is back. Some statements run on the
# driver's own cursor (db.fastpath.CursorStatement), whose errors arrive unwrapped: the drivers' classes
# are listed too. The classes themselves are given for frameworks that dispatch on the class.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    sqlite3.OperationalError,
    PgOperationalError,
    PgInterfaceError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable or busy now (`UNAVAILABLE_ERRORS`), rather than
    that the work itself was wrong: the caller answers "try again shortly" instead of reporting a bug."""
    return isinstance(exc, UNAVAILABLE_ERRORS)
