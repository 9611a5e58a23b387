"""The retention purge, its periodic job, the erasure of one account, and the retention settings.

`purge_once` is the purge: every client's due rows, kind by kind, in batches of `batch_size` parent rows,
each batch looked up in a read-only transaction and deleted in a short write transaction of its own, with
a pause between batches so that the API's writes go between them (on SQLite the write lock is free for
at least as long as a batch held it). `RetentionJob` runs it from the workers, once per period in the
whole cluster (a lease), within a time budget: what is left waits for the next period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from passgate import leases
from passgate.audit.services import record as audit
from passgate.auth.settings import SettingsBody
from passgate.db import make_sessionmaker, read_only, transaction
from passgate.keyring import KeyRing
from passgate.policy.velocity import VelocityStore
from passgate.retention import queries
from passgate.retention.models import ClientRetention
from passgate.retention.plan import DEFAULTS, Periods, RetentionBody, Step, plan, view

log = logging.getLogger("passgate.retention")

JOB = "retention-purge"
BATCH_SIZE = 1000
# After a batch, the purge waits this many times as long as the batch took: it works at most a tenth of the
# time, so that a purge of a million rows beside a busy API leaves it most of its throughput (on SQLite a
# batch's write holds the lock every request's commit needs; docs/performance.md).
PAUSE = 9.0


@dataclass
class PurgeReport:
    """What a purge removed (or, on a dry run, would remove): rows per table, and how it went."""

    removed: dict[str, int] = field(default_factory=dict)
    # Write transactions that deleted rows (one per batch); a dry run makes none.
    batches: int = 0
    clients: int = 0
    seconds: float = 0.0
    # The longest write transaction of the run: how long it held SQLite's write lock at most.
    longest_batch_seconds: float = 0.0
    # False when the purge stopped early (its time budget, or the process stopping): the rest is still due.
    complete: bool = True
    dry_run: bool = False

    def add(self, counts: dict[str, int]) -> None:
        for table, n in counts.items():
            self.removed[table] = self.removed.get(table, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "removed": dict(sorted(self.removed.items())),
            "batches": self.batches,
            "clients": self.clients,
            "seconds": round(self.seconds, 3),
            "longestBatchSeconds": round(self.longest_batch_seconds, 4),
            "complete": self.complete,
            "dryRun": self.dry_run,
        }


@dataclass(frozen=True)
class BatchDone:
    """Told to `on_batch` after each batch: for progress on long runs."""

    step: Step
    table: str
    counts: dict[str, int]
    report: PurgeReport


def _factory(target: Engine | sessionmaker[Session]) -> sessionmaker[Session]:
    return make_sessionmaker(target) if isinstance(target, Engine) else target


def purge_once(
    target: Engine | sessionmaker[Session],
    now: datetime,
    batch_size: int = BATCH_SIZE,
    *,
    defaults: Periods = DEFAULTS,
    dry_run: bool = False,
    pause: float = PAUSE,
    budget: float | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[BatchDone], None] | None = None,
    client_ids: Collection[str] | None = None,
) -> PurgeReport:
    """Remove every client's records older than its retention periods at `now`, in batches.

    Each batch is about `batch_size` rows, deleted in one short transaction: that many decisions, audit
    entries or events, or fewer parents with their children (a session goes with about 7 other rows, so
    1,000 rows are 125 sessions; `queries.Target.weight`). After each batch the purge
    sleeps `pause` times as long as the batch took (its lookup and its write), so others' writes get the
    lock in between (0: no pause). It stops early, with `complete` False, once `budget` seconds have
    passed or `stop` is set. With `dry_run` it only counts what would go. `client_ids` limits it to those
    clients. Takes no lease: `RetentionJob` does, for the workers.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    factory = _factory(target)
    started = time.monotonic()
    report = PurgeReport(dry_run=dry_run)
    with read_only(factory) as session:
        stored = queries.clients(session)
    if client_ids is not None:
        wanted = set(client_ids)
        stored = [(c, periods) for c, periods in stored if c in wanted]
    report.clients = len(stored)
    steps = plan(now, stored, defaults)

    def out_of_time() -> bool:
        return (stop is not None and stop.is_set()) or (
            budget is not None and time.monotonic() - started >= budget
        )

    for step in steps:
        if dry_run:
            with read_only(factory) as session:
                report.add(queries.count_due(session, step))
            continue
        for t in queries.TARGETS[step.kind]:
            while True:
                if out_of_time():
                    report.complete = False
                    report.seconds = time.monotonic() - started
                    return report
                limit = t.parents_per_batch(batch_size)
                began = time.monotonic()  # the lookup counts: on PostgreSQL it is work of the server too
                with read_only(factory) as session:
                    ids = queries.due_ids(session, t, step, limit)
                if not ids:
                    break
                wrote = time.monotonic()
                with transaction(factory) as session:
                    counts = queries.delete_batch(session, t, step, ids)
                ended = time.monotonic()
                took = ended - began
                report.batches += 1
                report.longest_batch_seconds = max(report.longest_batch_seconds, ended - wrote)
                report.add(counts)
                if on_batch is not None:
                    on_batch(BatchDone(step, t.table, counts, report))
                if len(ids) < limit:
                    break
                if pause > 0:
                    time.sleep(min(took * pause, 5.0))
    report.seconds = time.monotonic() - started
    return report


class RetentionJob:
    """The purge as a periodic job of the workers: once per `every` seconds in the whole cluster.

    The lease is taken in a transaction of its own and held for the period; the purge then runs in its
    own short transactions, for at most 80% of the period, so that the next holder never overlaps it.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Any,
        holder: str,
        every: float,
        *,
        defaults: Periods = DEFAULTS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.holder = holder
        self.every = every
        self.defaults = defaults
        self.batch_size = batch_size
        self.stop = threading.Event()

    def run(self) -> PurgeReport | None:
        """Purge if this process takes the lease; None when another holds it."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            if not leases.take(session, JOB, self.holder, timedelta(seconds=self.every), now):
                return None
        report = purge_once(
            self.sessions,
            now,
            self.batch_size,
            defaults=self.defaults,
            budget=self.every * 0.8,
            stop=self.stop,
        )
        if report.removed and any(report.removed.values()):
            log.info("retention purge", extra={"purge": report.as_dict()})
        return report


# -- settings ------------------------------------------------------------------------------------------


class SettingsWithRetention(SettingsBody):
    """`PUT /manage/v1/settings`: the MFA settings and the retention periods; omitted or null fields
    (`retention` itself, or any of its periods) return to the defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "linkTtlSeconds": 900,
                    "otpTtlSeconds": 300,
                    "otpLength": 6,
                    "maxVerifyAttempts": 5,
                    "maxSends": 3,
                    "smsAllowedCountries": ["US", "CA"],
                    "rejectVoip": True,
                    "retention": {
                        "sessionsDays": 90,
                        "decisionsDays": 365,
                        "webhookDeliveriesDays": 30,
                        "auditLogDays": 730,
                    },
                }
            ]
        },
    )

    retention: RetentionBody | None = Field(
        default=None,
        description="days each kind of record is kept before the purge deletes it; omitted or null: the "
        "defaults (sessions 90, decisions 365, webhook deliveries 30, audit log 730)",
    )


def configured_defaults(settings: Any) -> Periods:
    """The defaults of a deployment: `PASSGATE_WEBHOOK_RETENTION_DAYS` (30) is the webhook deliveries'
    period of the clients that set none."""
    return replace(DEFAULTS, webhook_deliveries_days=int(settings.webhook_retention_days))


def periods_of(session: Session, client_id: str, defaults: Periods = DEFAULTS) -> Periods:
    return defaults.over(session.get(ClientRetention, client_id))


def retention_view(session: Session, client_id: str, defaults: Periods = DEFAULTS) -> dict[str, int]:
    """The periods in force for the client, defaults filled in (`retention` in GET /manage/v1/settings)."""
    return view(periods_of(session, client_id, defaults))


def stored_retention(session: Session, client_id: str) -> dict[str, int | None]:
    """The periods the client set (None where it keeps the default), for the console's form."""
    row = session.get(ClientRetention, client_id)
    body = RetentionBody()
    if row is not None:
        body = RetentionBody(
            sessionsDays=row.sessions_days,
            decisionsDays=row.decisions_days,
            webhookDeliveriesDays=row.webhook_deliveries_days,
            auditLogDays=row.audit_log_days,
        )
    return body.model_dump()


def update_retention(session: Session, client_id: str, body: RetentionBody | None, now: datetime) -> None:
    """Replace the client's stored periods (None, or a null period, returns to the default), in the
    caller's transaction."""
    values = (body or RetentionBody()).stored()
    row = session.get(ClientRetention, client_id)
    if row is None:
        row = ClientRetention(client_id=client_id, updated_at=now)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now
    session.flush()


# -- erasure -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed (`deleted`) or blanked (`anonymised`), rows per table."""

    account_id: str
    deleted: dict[str, int]
    anonymised: dict[str, int]

    def view(self) -> dict[str, Any]:
        return {"accountId": self.account_id, "deleted": self.deleted, "anonymised": self.anonymised}


def erase_account(
    session: Session,
    *,
    client_id: str,
    account_id: str,
    actor: str,
    now: datetime,
    keyring: KeyRing,
    velocity: VelocityStore,
) -> Erasure:
    """Remove or anonymise every row holding the account's personal data for this client, in the
    caller's transaction, and record it in the audit log (who, when, which account, how many rows; never
    the data). Another client's account with the same id is untouched: every statement names the client.
    What each table gets, and why, is `plan.ERASURE`."""
    deleted = queries.erase_sessions(session, client_id, account_id)
    decisions = queries.anonymise_decisions(session, client_id, account_id)
    deleted.update(queries.erase_decision_events(session, client_id, account_id))
    deleted["devices"] = queries.erase_devices(session, client_id, account_id)
    deleted["mfa_failure_counters"] = queries.erase_failure_counter(
        session, client_id, keyring.all_hashes("account", account_id)
    )
    forgotten = velocity.forget(session, client_id, "account", account_id)
    for email in decisions.emails:
        forgotten += velocity.forget(session, client_id, "email", email)
    deleted["velocity_counters"] = forgotten
    deleted = dict(sorted(deleted.items()))
    erasure = Erasure(account_id, deleted, {"decisions": decisions.count})
    audit(
        session,
        client_id,
        actor,
        "account.erased",
        account_id,
        now,
        {"deleted": erasure.deleted, "anonymised": erasure.anonymised},
    )
    return erasure
