"""A periodic job's lease: one holder per period, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from passgate import leases
from passgate.db import make_sessionmaker, transaction

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
PERIOD = timedelta(seconds=60)


def _take(engine: Engine, holder: str, now: datetime, name: str = "job-a") -> bool:
    with transaction(make_sessionmaker(engine)) as session:
        return leases.take(session, name, holder, PERIOD, now)


def _runs(engine: Engine, name: str = "job-a") -> int:
    with Session(engine) as session:
        return leases.runs(session, name)


def test_one_holder_per_period_and_the_next_period_is_free(engine: Engine) -> None:
    with transaction(make_sessionmaker(engine)) as session:
        session.execute(delete(leases.JobLease))
    assert _take(engine, "host-1:10", T0)
    # Another process, and the holder itself, within the period: refused.
    assert not _take(engine, "host-2:20", T0 + timedelta(seconds=1))
    assert not _take(engine, "host-1:10", T0 + timedelta(seconds=59))
    # Another job is its own lease.
    assert _take(engine, "host-2:20", T0 + timedelta(seconds=1), name="job-b")
    # Once the period has run out, whoever comes first takes it.
    assert _take(engine, "host-2:20", T0 + PERIOD)
    assert not _take(engine, "host-1:10", T0 + PERIOD + timedelta(seconds=1))
    assert _runs(engine) == 2
    assert _runs(engine, "job-b") == 1
    assert _runs(engine, "never-taken") == 0


def test_a_lease_taken_in_a_rolled_back_transaction_is_not_held(engine: Engine) -> None:
    with transaction(make_sessionmaker(engine)) as session:
        session.execute(delete(leases.JobLease))
    factory = make_sessionmaker(engine)
    session = factory()
    try:
        session.begin()
        assert leases.take(session, "job-a", "host-1:10", PERIOD, T0)
        session.rollback()
    finally:
        session.close()
    assert _take(engine, "host-2:20", T0)
