"""The retention purge on SQLite and PostgreSQL: exactly the rows older than each client's periods go,
children with their parents, in batches of short transactions; the workers' job runs once per period in
the cluster (a lease)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from passgate import leases
from passgate.audit.models import AuditEntry
from passgate.auth.services import create_client
from passgate.clock import FrozenClock
from passgate.db import make_sessionmaker, transaction
from passgate.messaging.models import DevInboxMessage, Message, MessageAttempt
from passgate.mfa.models import MfaEvent, MfaSecret, MfaSession
from passgate.policy.models import Decision
from passgate.retention.plan import Kind, Periods, RetentionBody
from passgate.retention.services import (
    JOB,
    BatchDone,
    RetentionJob,
    purge_once,
    retention_view,
    update_retention,
)
from passgate.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

# The database is shared by the run's tests (tenancy isolates them) and a purge visits every client: the
# other tests' rows are made at the real time, less than the shortest period (7 days) before NOW.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
_n = itertools.count()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def new_client(factory: sessionmaker[Session], **periods: int) -> str:
    with transaction(factory) as session:
        client = create_client(session, f"Retention {next(_n)}", "US", False, NOW)
        if periods:
            update_retention(session, client.id, RetentionBody(**periods), NOW)
        return client.id


@dataclass
class Seeded:
    """The ids made for one client, by what they are."""

    sessions: dict[str, list[str]] = field(default_factory=lambda: {"old": [], "young": []})
    messages: dict[str, list[str]] = field(default_factory=lambda: {"old": [], "young": []})
    decisions: dict[str, list[str]] = field(default_factory=lambda: {"old": [], "young": []})
    deliveries: dict[str, list[str]] = field(default_factory=lambda: {"old": [], "young": [], "open": []})
    events: dict[str, list[str]] = field(default_factory=lambda: {"old": [], "young": [], "open": []})
    audit: dict[str, list[int]] = field(default_factory=lambda: {"old": [], "young": []})


def add_session(session: Session, client_id: str, at: datetime, account: str = "acct-1") -> tuple[str, str]:
    """A session with a secret, two timeline rows, and a message with an attempt and a dev inbox copy."""
    sid, mid = str(uuid.uuid4()), str(uuid.uuid4())
    session.add(
        MfaSession(
            id=sid,
            client_id=client_id,
            event_type="LOGIN",
            type="OTP",
            channel="EMAIL",
            template_name="email-code",
            locale="en",
            destination="jo@example.com",
            destination_hash="h" * 64,
            account_id=account,
            device_session_id="dev1",
            status="VERIFIED",
            send_attempts=1,
            verification_attempts=1,
            max_sends=3,
            max_attempts=5,
            ttl_seconds=600,
            expires_at=at + timedelta(minutes=10),
            created_at=at,
            updated_at=at,
            render_context={"person": {"name": {"first": "Jo"}}},
        )
    )
    session.flush()
    session.add(
        MfaSecret(
            id=str(uuid.uuid4()),
            session_id=sid,
            kind="CODE",
            secret_hash="s" * 64,
            key_id="k1",
            created_at=at,
            expires_at=at + timedelta(minutes=10),
        )
    )
    for kind in ("MESSAGE_QUEUED", "VERIFIED"):
        session.add(
            MfaEvent(session_id=sid, client_id=client_id, type=kind, source="api", data={}, created_at=at)
        )
    add_message(session, client_id, at, mid, sid)
    return sid, mid


def add_message(session: Session, client_id: str, at: datetime, mid: str, sid: str | None = None) -> None:
    session.add(
        Message(
            id=mid,
            client_id=client_id,
            session_id=sid,
            channel="EMAIL",
            destination="jo@example.com",
            template_name="email-code",
            locale="en",
            purpose="challenge" if sid else "test",
            status="SENT",
            delivery_status="SENT",
            attempts=1,
            next_attempt_at=at,
            created_at=at,
        )
    )
    session.flush()
    session.add(
        MessageAttempt(
            message_id=mid, attempt=1, provider="smtp", result="sent", started_at=at, finished_at=at
        )
    )
    session.add(
        DevInboxMessage(
            message_id=mid,
            client_id=client_id,
            channel="EMAIL",
            destination="jo@example.com",
            meta={},
            created_at=at,
        )
    )


def add_decision(session: Session, client_id: str, at: datetime) -> str:
    did = str(uuid.uuid4())
    session.add(
        Decision(
            id=did,
            client_id=client_id,
            event_type="LOGIN",
            inquiry_id=f"inq{next(_n)}",
            device_session_id="dev1",
            account_id="acct-1",
            decision="ALLOW",
            segment="default",
            set_version="v1",
            tags=[],
            request={"person": {"emailAddress": "jo@example.com"}},
            created_at=at,
        )
    )
    return did


def add_endpoint(session: Session, client_id: str) -> str:
    eid = str(uuid.uuid4())
    session.add(
        WebhookEndpoint(
            id=eid,
            client_id=client_id,
            url="https://hooks.example.com/passgate",
            events=["MFA.StatusUpdate"],
            signature_scheme="standard-webhooks",
            enabled=True,
            created_at=NOW - timedelta(days=1000),
            updated_at=NOW - timedelta(days=1000),
        )
    )
    session.flush()
    return eid


def add_delivery(
    session: Session, client_id: str, endpoint: str, at: datetime, status: str
) -> tuple[str, str]:
    event_id, delivery_id = str(uuid.uuid4()), str(uuid.uuid4())
    session.add(
        WebhookEvent(
            id=event_id, client_id=client_id, event_type="MFA.StatusUpdate", body="{}", created_at=at
        )
    )
    session.flush()
    session.add(
        WebhookDelivery(
            id=delivery_id,
            event_id=event_id,
            endpoint_id=endpoint,
            client_id=client_id,
            status=status,
            tries=1,
            attempts=1,
            next_attempt_at=at,
            created_at=at,
        )
    )
    session.flush()
    session.add(
        WebhookAttempt(delivery_id=delivery_id, attempt=1, result="delivered", started_at=at, finished_at=at)
    )
    return event_id, delivery_id


def seed(factory: sessionmaker[Session], client_id: str, periods: Periods) -> Seeded:
    """For each kind, rows a day past the client's period (old) and a day within it (young)."""
    s = Seeded()
    with transaction(factory) as session:
        for age, which in ((periods.sessions_days + 1, "old"), (periods.sessions_days - 1, "young")):
            for _ in range(2):
                sid, mid = add_session(session, client_id, ago(age))
                s.sessions[which].append(sid)
                s.messages[which].append(mid)
            test_send = str(uuid.uuid4())  # a test send: a message without a session
            add_message(session, client_id, ago(age), test_send)
            s.messages[which].append(test_send)
        for age, which in ((periods.decisions_days + 1, "old"), (periods.decisions_days - 1, "young")):
            s.decisions[which] += [add_decision(session, client_id, ago(age)) for _ in range(3)]
        endpoint = add_endpoint(session, client_id)
        days = periods.webhook_deliveries_days
        for age, which, status in (
            (days + 1, "old", "DELIVERED"),
            (days + 1, "old", "FAILED"),
            (days - 1, "young", "DELIVERED"),
            (days + 5, "open", "PENDING"),
        ):
            event_id, delivery_id = add_delivery(session, client_id, endpoint, ago(age), status)
            s.events[which].append(event_id)
            s.deliveries[which].append(delivery_id)
        for age, which in ((periods.audit_log_days + 1, "old"), (periods.audit_log_days - 1, "young")):
            entry = AuditEntry(
                client_id=client_id,
                actor="test",
                action="settings.updated",
                target="x",
                details={},
                at=ago(age),
            )
            session.add(entry)
            session.flush()
            s.audit[which].append(entry.id)
    return s


def ids(session: Session, column: Any, among: list[Any]) -> set[Any]:
    return set(session.scalars(select(column).where(column.in_(among))))


def assert_only_young_left(factory: sessionmaker[Session], s: Seeded) -> None:
    every = s.sessions["old"] + s.sessions["young"]
    messages = s.messages["old"] + s.messages["young"]
    with transaction(factory) as session:
        assert ids(session, MfaSession.id, every) == set(s.sessions["young"])
        assert ids(session, MfaSecret.session_id, every) == set(s.sessions["young"])
        assert ids(session, MfaEvent.session_id, every) == set(s.sessions["young"])
        assert ids(session, Message.id, messages) == set(s.messages["young"])
        assert ids(session, MessageAttempt.message_id, messages) == set(s.messages["young"])
        assert ids(session, DevInboxMessage.message_id, messages) == set(s.messages["young"])
        assert ids(session, Decision.id, s.decisions["old"] + s.decisions["young"]) == set(
            s.decisions["young"]
        )
        deliveries = sum(s.deliveries.values(), [])
        kept = set(s.deliveries["young"] + s.deliveries["open"])  # a waiting delivery stays, whatever its age
        assert ids(session, WebhookDelivery.id, deliveries) == kept
        assert ids(session, WebhookAttempt.delivery_id, deliveries) == kept
        assert ids(session, WebhookEvent.id, sum(s.events.values(), [])) == set(
            s.events["young"] + s.events["open"]
        )
        assert ids(session, AuditEntry.id, s.audit["old"] + s.audit["young"]) == set(s.audit["young"])


def test_the_purge_removes_exactly_what_each_client_keeps_no_longer(factory: sessionmaker[Session]) -> None:
    short = Periods(sessions_days=10, decisions_days=20, webhook_deliveries_days=8, audit_log_days=100)
    plain = new_client(factory)
    custom = new_client(factory, sessionsDays=10, decisionsDays=20, webhookDeliveriesDays=8, auditLogDays=100)
    with transaction(factory) as session:
        assert retention_view(session, custom) == {
            "sessionsDays": 10,
            "decisionsDays": 20,
            "webhookDeliveriesDays": 8,
            "auditLogDays": 100,
        }
    seeded = {plain: seed(factory, plain, Periods()), custom: seed(factory, custom, short)}
    # What the custom client's periods remove, the default client keeps: a row 11 days old of each kind.
    young_for_plain = seed(factory, plain, short)

    mine = [plain, custom]
    dry = purge_once(factory, NOW, dry_run=True, client_ids=mine)
    assert dry.dry_run and dry.batches == 0
    with transaction(factory) as session:  # nothing removed by the dry run
        assert ids(session, MfaSession.id, seeded[plain].sessions["old"]) == set(
            seeded[plain].sessions["old"]
        )

    report = purge_once(factory, NOW, batch_size=1000, pause=0, client_ids=mine)
    assert report.complete and report.clients == 2
    for client_id, s in seeded.items():
        assert_only_young_left(factory, s)
    with transaction(factory) as session:
        assert len(ids(session, MfaSession.id, sum(young_for_plain.sessions.values(), []))) == 4
        assert len(ids(session, Decision.id, sum(young_for_plain.decisions.values(), []))) == 6
    # The dry run counted what the purge then removed.
    assert dry.removed == report.removed
    assert report.removed["mfa_sessions"] == 4 and report.removed["mfa_events"] == 8
    assert report.removed["messages"] == 6 and report.removed["decisions"] == 6
    assert report.removed["webhook_deliveries"] == 4 and report.removed["audit_log"] == 2

    again = purge_once(factory, NOW, pause=0, client_ids=mine)
    assert again.batches == 0 and not any(again.removed.values())


def test_batches_are_bounded_and_children_go_in_their_parents_batch(
    factory: sessionmaker[Session], engine: Engine
) -> None:
    client = new_client(factory, sessionsDays=7, decisionsDays=7)
    with transaction(factory) as session:
        old = [add_session(session, client, ago(8 + i / 100))[0] for i in range(25)]
        young = add_session(session, client, ago(6))[0]
        for _ in range(170):
            add_decision(session, client, ago(9))
    batches: list[dict[str, int]] = []
    decisions: list[int] = []

    def mine(done: BatchDone) -> None:
        if done.step.client_id == client and done.table == "mfa_sessions":
            batches.append(done.counts)
        if done.step.client_id == client and done.table == "decisions":
            decisions.append(done.counts["decisions"])

    # The DELETE statements of each transaction, as the database sees them.
    deletes_per_transaction: list[int] = []
    pending = [0]

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        pending[0] += sql.lstrip().upper().startswith("DELETE")

    def commit(conn: Any) -> None:
        deletes_per_transaction.append(pending[0])
        pending[0] = 0

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        report = purge_once(factory, NOW, batch_size=80, pause=0, on_batch=mine, client_ids=[client])
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    # 80 rows a batch: 80 decisions, or 10 sessions (a session weighs 8 rows with its children).
    assert decisions == [80, 80, 10]
    # Each batch is one transaction, with its children: 10 + 10 + 5 sessions.
    assert [b["mfa_sessions"] for b in batches] == [10, 10, 5]
    assert [b["mfa_events"] for b in batches] == [20, 20, 10]
    assert [b["messages"] for b in batches] == [10, 10, 5]
    assert [b["message_attempts"] for b in batches] == [10, 10, 5]
    assert [b["mfa_secrets"] for b in batches] == [10, 10, 5]
    # One write transaction per batch (six DELETEs for a session batch: inbox copies, attempts,
    # messages, timeline, secrets, then the sessions), and the lookups write nothing.
    writing = [n for n in deletes_per_transaction if n]
    assert report.batches == 6 and len(writing) == 6
    assert writing == [6, 6, 6, 1, 1, 1]
    with transaction(factory) as session:
        assert ids(session, MfaSession.id, old + [young]) == {young}
        assert ids(session, MfaEvent.session_id, old + [young]) == {young}


def test_a_purge_stops_at_its_budget_and_the_next_goes_on(factory: sessionmaker[Session]) -> None:
    client = new_client(factory, sessionsDays=7)
    with transaction(factory) as session:
        old = [add_session(session, client, ago(30))[0] for _ in range(5)]
    stopped = purge_once(factory, NOW, batch_size=2, pause=0, budget=0.0)
    assert not stopped.complete and stopped.batches == 0
    done = purge_once(factory, NOW, batch_size=2, pause=0)
    assert done.complete
    with transaction(factory) as session:
        assert ids(session, MfaSession.id, old) == set()


def test_a_delivery_replayed_after_the_look_is_not_deleted(factory: sessionmaker[Session]) -> None:
    from passgate.retention import queries
    from passgate.retention.plan import Step

    client = new_client(factory)
    with transaction(factory) as session:
        endpoint = add_endpoint(session, client)
        _, delivery = add_delivery(session, client, endpoint, ago(40), "FAILED")
    step = Step(client, Kind.WEBHOOK_DELIVERIES, ago(30))
    target = queries.TARGETS[Kind.WEBHOOK_DELIVERIES][0]
    with transaction(factory) as session:
        found = queries.due_ids(session, target, step, 10)
    assert found == [delivery]
    with transaction(factory) as session:  # a replay between the look and the delete
        session.get_one(WebhookDelivery, delivery).status = "PENDING"
    with transaction(factory) as session:
        assert queries.delete_batch(session, target, step, found) == {"webhook_deliveries": 0}
        assert ids(session, WebhookAttempt.delivery_id, [delivery]) == {delivery}


def test_the_job_runs_once_per_period_in_the_cluster(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        session.execute(delete(leases.JobLease).where(leases.JobLease.name == JOB))
    client = new_client(factory, sessionsDays=7)
    with transaction(factory) as session:
        old = add_session(session, client, ago(30))[0]
    clock = FrozenClock(NOW)
    first = RetentionJob(factory, clock, "host-1:1", every=60)
    second = RetentionJob(factory, clock, "host-2:2", every=60)
    report = first.run()
    assert report is not None and report.removed["mfa_sessions"] >= 1
    assert second.run() is None  # the other process skips this period
    assert first.run() is None  # and so does the holder itself
    clock.advance(60)
    assert second.run() is not None  # next period: whoever comes first
    with transaction(factory) as session:
        assert leases.runs(session, JOB) == 2
        assert ids(session, MfaSession.id, [old]) == set()


def test_the_counts_of_a_table_are_only_this_clients(factory: sessionmaker[Session]) -> None:
    """Two clients, one period: each step's counts name only its client's rows."""
    a, b = new_client(factory, sessionsDays=7), new_client(factory, sessionsDays=7)
    with transaction(factory) as session:
        for _ in range(3):
            add_session(session, a, ago(10))
        add_session(session, b, ago(10))
    per_client: dict[str, int] = {}

    def mine(done: BatchDone) -> None:
        if done.table == "mfa_sessions":
            per_client[done.step.client_id] = (
                per_client.get(done.step.client_id, 0) + done.counts["mfa_sessions"]
            )

    purge_once(factory, NOW, pause=0, on_batch=mine)
    assert (per_client.get(a), per_client.get(b)) == (3, 1)
    with transaction(factory) as session:
        left = session.scalar(select(func.count()).where(MfaSession.client_id.in_([a, b])))
    assert left == 0


def test_the_migration_makes_what_the_models_say(engine: Engine) -> None:
    """client_retention and the purge's and erasure's indexes, as migrated, equal the ORM's."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from passgate import models_all  # noqa: F401
    from passgate.db import Base

    ours = {
        "client_retention",
        "ix_messages_client_created",
        "ix_webhook_deliveries_client_created",
        "ix_audit_log_client_at",
        "ix_mfa_sessions_client_account",
        "ix_decisions_client_account",
    }
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    about_ours = [d for d in diff if ours & set(str(d).replace("'", " ").replace('"', " ").split())]
    assert about_ours == []
    with engine.connect() as conn:
        from sqlalchemy import inspect

        inspector = inspect(conn)
        names = {
            i["name"]
            for t in ("messages", "webhook_deliveries", "audit_log", "mfa_sessions", "decisions")
            for i in inspector.get_indexes(t)
        }
        assert ours - {"client_retention"} <= names
        assert "client_retention" in inspector.get_table_names()


def test_the_worker_runs_the_job_on_a_thread_of_its_own_once_per_interval(
    registry: Any, factory: sessionmaker[Session]
) -> None:
    """`passgate worker` and `passgate serve` start the purge beside their loop, not in it."""
    import asyncio

    from passgate.worker import Worker

    with transaction(factory) as session:
        session.execute(delete(leases.JobLease).where(leases.JobLease.name == JOB))
        before = leases.runs(session, JOB)
    worker = Worker(registry)
    assert worker.retention.every == registry.settings.purge_interval_seconds

    async def main() -> None:
        worker._start_retention(100.0)
        first = worker._retention_task
        assert first is not None
        worker._start_retention(101.0)  # still running, or within the interval: not started again
        assert worker._retention_task is first
        await first
        worker._start_retention(100.0 + worker.retention.every / 2)
        assert worker._retention_task is first
        worker._start_retention(100.0 + worker.retention.every)
        assert worker._retention_task is not first
        await worker._retention_task

    asyncio.run(main())
    with transaction(factory) as session:
        # The second start found the lease still held (its period had not run out): one run.
        assert leases.runs(session, JOB) == before + 1
