"""Migration 0007 moves the velocity counts from a row per metric to a column per metric, and back, on a
real SQLite file and, when configured, PostgreSQL: every count survives both ways."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, text

from passgate.db import make_engine
from passgate.migrate import alembic_config, upgrade

ROWS = [
    ("c1", "ip", "h1", "logins", 100, 3),
    ("c1", "ip", "h1", "challenges", 100, 1),
    ("c1", "ip", "h1", "logins", 101, 2),
    ("c1", "email", "h2", "failedAttempts", 100, 5),
    ("c1", "email", "h2", "accountOpenings", 100, 1),
    ("c2", "ip", "h1", "logins", 100, 7),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield eng
        eng.dispose()
        return
    base = os.environ.get("PASSGATE_TEST_DATABASE_URL")
    if not base:
        pytest.skip("PASSGATE_TEST_DATABASE_URL is not set")
    schema = "mig_" + secrets.token_hex(5)
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng = make_engine(f"{base}?options=-csearch_path%3D{schema}")
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _alembic(engine: Engine, verb: str, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, revision)


def test_counts_survive_the_move_and_the_way_back(engine: Engine) -> None:
    upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO velocity_counters (client_id, dimension, key_hash, metric, minute, count)"
                " VALUES (:c, :d, :k, :m, :minute, :n)"
            ),
            [dict(zip(("c", "d", "k", "m", "minute", "n"), r, strict=True)) for r in ROWS],
        )
    upgrade(engine)
    with engine.connect() as conn:
        moved = conn.execute(
            text(
                "SELECT client_id, dimension, key_hash, minute, logins, failed_attempts, account_openings,"
                " challenges FROM velocity_counts ORDER BY client_id, dimension, key_hash, minute"
            )
        ).all()
    assert [tuple(r) for r in moved] == [
        ("c1", "email", "h2", 100, 0, 5, 1, 0),
        ("c1", "ip", "h1", 100, 3, 0, 0, 1),
        ("c1", "ip", "h1", 101, 2, 0, 0, 0),
        ("c2", "ip", "h1", 100, 7, 0, 0, 0),
    ]
    _alembic(engine, "downgrade", "0005")
    with engine.connect() as conn:
        back = conn.execute(
            text("SELECT client_id, dimension, key_hash, metric, minute, count FROM velocity_counters")
        ).all()
    assert sorted(tuple(r) for r in back) == sorted(ROWS)
