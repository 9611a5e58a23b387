"""The database layer's surface for the HTTP side: `ping` and the classification of the errors that mean
the database cannot answer now (`is_unavailable`), which the API answers with 503."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy import exc as sa_exc

from passgate import db


def test_ping_returns_when_the_database_answers(engine: Engine) -> None:
    db.ping(engine)


def test_ping_raises_what_is_unavailable_when_it_does_not(tmp_path: Path) -> None:
    missing = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    with pytest.raises(Exception) as raised:
        db.ping(missing)
    assert db.is_unavailable(raised.value)


@pytest.mark.parametrize(
    "exc",
    [
        sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
        sa_exc.InterfaceError("SELECT 1", {}, Exception("connection closed")),
        sa_exc.TimeoutError("QueuePool limit reached"),
        sqlite3.OperationalError("database is locked"),
        psycopg.OperationalError("server closed the connection"),
        psycopg.InterfaceError("connection already closed"),
    ],
)
def test_unreachable_and_busy_are_unavailable(exc: Exception) -> None:
    assert db.is_unavailable(exc)
    assert isinstance(exc, db.UNAVAILABLE_ERRORS)


@pytest.mark.parametrize(
    "exc",
    [
        sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")),
        sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")),
        sqlite3.IntegrityError("UNIQUE constraint failed"),
        psycopg.errors.UniqueViolation("duplicate key"),
        ValueError("not a database error"),
    ],
)
def test_errors_of_the_work_itself_are_not(exc: Exception) -> None:
    assert not db.is_unavailable(exc)


def test_the_session_type_is_sqlalchemys() -> None:
    """`db.Session` names a unit of work for the HTTP side, which imports no SQLAlchemy itself."""
    from sqlalchemy.orm import Session

    assert db.Session is Session
