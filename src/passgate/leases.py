"""Leases that make a periodic job run once per cluster, whatever the number of processes.

Every process that runs workers (`passgate serve`, `passgate worker`, on any machine) looks after the same
periodic jobs: expiring sessions past their time, forgetting old velocity counters and webhook deliveries.
Each run of such a job first takes the job's lease for one period, with one statement that succeeds only
when the lease is free or has run out (`INSERT … ON CONFLICT DO UPDATE … WHERE until <= now RETURNING`).
So in any period exactly one process runs the job, the others skip it, and a process that dies holding a
lease only delays the job until the lease runs out. The statement is atomic on both databases: on
PostgreSQL the conflicting row is locked by the upsert, on SQLite the write lock serialises writers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import String, Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from passgate.db import Base
from passgate.db.types import UTCDateTime


class JobLease(Base):
    """Who holds a periodic job, and until when."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    runs: Mapped[int] = mapped_column(default=0)


def take(session: Session, name: str, holder: str, period: timedelta, now: datetime) -> bool:
    """Take the job `name` for one `period` from `now` if no other holder has it; True when taken. Commit
    (or roll back) the session's transaction as usual: the lease is a row like any other."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, JobLease.__table__)
    values = insert(table).values(name=name, holder=holder, until=now + period, runs=1)
    stmt = values.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": values.excluded.holder, "until": values.excluded.until, "runs": table.c.runs + 1},
        where=table.c.until <= now,
    ).returning(table.c.name)
    return session.execute(stmt).first() is not None


def runs(session: Session, name: str) -> int:
    """How many times the job has been taken (for tests and `passgate check`)."""
    count = session.scalar(select(func.coalesce(func.max(JobLease.runs), 0)).where(JobLease.name == name))
    return int(count or 0)
