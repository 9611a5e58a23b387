"""bench/scale.py's parts at a tiny size, on SQLite and PostgreSQL: the seed writes the rows it says, shaped
like real ones (statuses of the lifecycles, a year of timestamps, the installation's destination hashes,
foreign keys that hold); a row that disagrees with its table stops it; the plan checker finds every hot
statement's plan and flags a full scan of a large table; the purge phase finds its function by name."""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, inspect, select, text

from passgate.auth.models import Client
from passgate.db import make_engine
from passgate.messaging.states import MessageStatus
from passgate.mfa.states import Status, TerminationReason
from passgate.migrate import upgrade
from passgate.webhooks.states import DeliveryStatus
from tests.conftest import BACKENDS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _scale_data as sd  # noqa: E402
import scale  # noqa: E402
from _common import BenchError  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEYS = "bench-scale-test-key-0123456789abcdefghijkl"
SESSIONS = 200


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of its own (the seed's counts are whole tables)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'scale.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    base = os.environ["PASSGATE_TEST_DATABASE_URL"]
    schema = "scaletest_" + secrets.token_hex(4)
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    engine = make_engine(f"{base}{sep}options=-csearch_path%3D{schema}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def _seeded(engine: Engine, sessions: int = SESSIONS) -> sd.Seeder:
    client_id = "cl_" + secrets.token_hex(10)
    with engine.begin() as conn:
        conn.execute(
            insert(Client.__table__),
            {"id": client_id, "name": "Scale", "country": "US", "sandbox": True, "created_at": NOW},
        )
    seeder = sd.Seeder(engine, client_id, sd.keyring_of(KEYS), NOW, sd.SeedSize.of(sessions), batch=64)
    seeder.run()
    sd.analyze(engine)
    return seeder


def test_the_seed_writes_what_it_says_shaped_like_real_rows(fresh: Engine) -> None:
    seeder = _seeded(fresh)
    expected = seeder.size.rows_by_table()
    assert sd.table_counts(fresh) == expected
    assert seeder.written == expected
    assert expected["mfa_sessions"] == SESSIONS and expected["mfa_events"] == 3 * SESSIONS
    s, m, d, w = sd.SESSIONS.c, sd.MESSAGES.c, sd.DECISIONS.c, sd.DELIVERIES.c
    with fresh.connect() as conn:
        statuses = set(conn.scalars(select(s.status).distinct()))
        reasons = set(conn.scalars(select(s.termination_reason).distinct())) - {None}
        assert statuses <= {x.value for x in Status} and Status.VERIFIED.value in statuses
        assert reasons <= {x.value for x in TerminationReason}
        assert set(conn.scalars(select(m.status).distinct())) <= {x.value for x in MessageStatus}
        assert set(conn.scalars(select(w.status).distinct())) <= {x.value for x in DeliveryStatus}
        # A year of data: the oldest row about a year back, the newest within the last days.
        oldest, newest = conn.execute(select(func.min(s.created_at), func.max(s.created_at))).one()
        assert oldest < NOW - timedelta(days=360) and newest > NOW - timedelta(days=3)
        # Each session is its CHALLENGE decision's, and its message is its own.
        joined = conn.scalar(
            select(func.count())
            .select_from(sd.SESSIONS.join(sd.DECISIONS, d.id == s.decision_id))
            .where(d.decision == "CHALLENGE")
        )
        assert joined == SESSIONS
        assert (
            conn.scalar(select(func.count()).select_from(sd.MESSAGES.join(sd.SESSIONS, s.id == m.session_id)))
            == SESSIONS
        )
        destination, stored = conn.execute(select(s.destination, s.destination_hash).limit(1)).one()
    assert stored == sd.keyring_of(KEYS).keyed_hash("destination", destination)


def test_a_row_that_disagrees_with_its_table_stops_the_seed() -> None:
    row: dict[str, Any] = {c.name: None for c in sd.DECISIONS.c}
    assert sd.check_columns(sd.DECISIONS, row) is row
    with pytest.raises(sd.SchemaDrift, match=r"decisions: the seed does not write \['segment'\]"):
        sd.check_columns(sd.DECISIONS, {k: v for k, v in row.items() if k != "segment"})
    with pytest.raises(sd.SchemaDrift, match=r"unknown \['colour'\]"):
        sd.check_columns(sd.DECISIONS, {**row, "colour": "red"})


def test_the_plan_checker_reads_every_hot_plan_and_flags_a_full_scan(fresh: Engine) -> None:
    seeder = _seeded(fresh)
    with fresh.connect() as conn:
        sample_id = str(conn.scalar(select(func.max(sd.SESSIONS.c.id))))
        endpoint_id = str(conn.scalar(select(sd.ENDPOINTS.c.id)))
    statements = sd.hot_statements() + sd.query_functions() + sd.insert_statements(seeder)
    names = {h.name for h in statements}
    # Found in the code, not listed by hand: the decision, verify, outbox and webhook claims' statements.
    assert {
        "mfa.queries._SESSION_ROW",
        "mfa.queries._LIVE_CODES",
        "mfa.queries._CONSUME",
        "policy.queries._DEVICE",
        "messaging.queries.CLAIM",
        "webhooks.queries._statements().pick",
        "insert decisions",
        "mfa.queries.events (timeline)",
        "console.activity.sessions_of",
    } <= names
    deliberate = sd.HotStatement(
        "deliberate full scan", select(sd.DECISIONS.c.id).where(sd.DECISIONS.c.segment == "none")
    )
    # Every seeded table but the endpoints (a handful per client: the webhook claim reads them all).
    large = {t.name for t in sd.SEEDED} - {"webhook_endpoints"}
    # strict: on PostgreSQL, a sequential scan only where no index can serve (the plan a large table gets).
    plans = sd.check_plans(
        fresh,
        [*statements, deliberate],
        client_id=seeder.client_id,
        sample_id=sample_id,
        now=NOW,
        large=large,
        endpoint_id=endpoint_id,
        strict=True,
    )
    by_name = {p.name: p for p in plans}
    assert [(p.name, p.error) for p in plans if p.error] == []
    # Every statement has a plan (SQLite has none to show for a plain INSERT … VALUES).
    assert [p.name for p in plans if not p.lines and not p.sql.startswith("INSERT")] == []
    assert [p.name for p in plans if p.problems] == ["deliberate full scan"]
    assert by_name["deliberate full scan"].problems[0].startswith("full scan of decisions")
    if fresh.dialect.name == "sqlite":
        # A decision's session is found by the decision index, not by reading the client's sessions.
        assert any(
            "ix_mfa_sessions_decision" in line for line in by_name["console.activity.sessions_of"].lines
        )
    # The same statement reads nothing large when decisions is not a large table.
    again = sd.check_plans(
        fresh,
        [deliberate],
        client_id=seeder.client_id,
        sample_id=sample_id,
        now=NOW,
        large=set(),
        strict=True,
    )
    assert again[0].problems == []
    report = "\n".join(sd.plan_report(plans))
    assert "FULL SCAN  deliberate full scan" in report


def test_full_scans_are_read_from_either_databases_plan() -> None:
    sql = "SELECT 1 FROM webhook_deliveries AS earlier"
    assert sd.full_scans("sqlite", sql, ["SCAN earlier"], {"webhook_deliveries"}) == [
        "full scan of webhook_deliveries (SCAN earlier)"
    ]
    assert sd.full_scans("sqlite", sql, ["SCAN earlier USING INDEX ix_x"], {"webhook_deliveries"}) == []
    assert sd.full_scans("sqlite", sql, ["SCAN anon_1"], {"webhook_deliveries"}) == []
    pg = ["Limit", "  ->  Seq Scan on mfa_sessions  (cost=0.00..1.00 rows=1 width=8)"]
    assert sd.full_scans("postgresql", "", pg, {"mfa_sessions"})[0].startswith("full scan of mfa_sessions")
    assert sd.full_scans("postgresql", "", pg, {"decisions"}) == []


def test_the_models_indexes_are_the_migrations(fresh: Engine) -> None:
    found = inspect(fresh)
    for table, name in (
        (sd.SESSIONS, "ix_mfa_sessions_client_account"),
        (sd.DELIVERIES, "ix_webhook_deliveries_endpoint_created"),
        (sd.SESSIONS, "ix_mfa_sessions_decision"),
    ):
        [model] = [i for i in table.indexes if i.name == name]
        [migrated] = [i for i in found.get_indexes(table.name) if i["name"] == name]
        assert migrated["column_names"] == [c.name for c in model.columns]


def test_the_purge_phase_finds_its_function_by_name() -> None:
    assert scale.find_purge("passgate.no_such_module.purge_once") is None
    assert scale.find_purge("passgate.ids.no_such_function") is None
    assert scale.find_purge("passgate.ids.new_uuid") is not None

    def purge_once(engine: Any, cutoff: datetime, batch_size: int = 500) -> int:
        return 0

    made = scale.purge_arguments(
        purge_once, {"engine": lambda: "E", "cutoff": lambda: NOW, "now": lambda: NOW}
    )
    assert made == {"engine": "E", "cutoff": NOW}
    with pytest.raises(BenchError, match="wants 'cutoff'"):
        scale.purge_arguments(purge_once, {"engine": lambda: "E"})


def test_the_purge_thread_stops_when_nothing_is_left() -> None:
    left = [300, 200, 0]
    thread = scale.PurgeThread(lambda: left.pop(0), {}, limit_s=30, stop=threading.Event())
    thread.start()
    thread.join(10)
    assert (thread.calls, thread.purged, thread.removed, thread.error) == (3, 500, 500, None)


def test_the_purge_thread_counts_batches_and_ends_when_told() -> None:
    """A call that would run on is stopped by the event the purge was given, and the rows its batches
    removed are counted before the call returns."""
    stop = threading.Event()
    thread = scale.PurgeThread(lambda: None, {}, limit_s=30, stop=stop)

    def purge() -> dict[str, int]:
        n = 0
        while not stop.is_set():
            thread.on_batch(SimpleNamespace(counts={"decisions": 10, "mfa_sessions": 5}))
            n += 15
            time.sleep(0.001)
        return {"decisions": n}

    thread.fn = purge
    thread.start()
    deadline = time.monotonic() + 10
    while thread.batches < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert thread.is_alive() and thread.removed >= 45
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and thread.error is None
    assert thread.calls == 1 and thread.removed == thread.purged == 15 * thread.batches
    assert thread.lasted() > 0


def test_the_ratio_is_the_median_of_the_rounds_against_the_empty_runs_either_side() -> None:
    def run(rps: float, cpu: float) -> dict[str, Any]:
        return {"rps": rps, "cpu": {"serve": cpu}}

    empty = [run(100, 0.5), run(300, 0.5), run(200, 0.5), run(200, 0.5), run(100, 0.5), run(100, 0.5)]
    big = [run(180, 0.5), run(100, 0.5), run(95, 0.5)]
    assert scale.ratio(big, empty) == 0.9  # rounds: 0.9, 0.5, 0.95
    # By CPU: empty's mean ms per request over big's: 3.33 / 2.78 = 1.2, 2.5 / 5.0 = 0.5, 5.0 / 5.26 = 0.95.
    assert scale.cpu_ratio(big, empty) == 0.95


def test_the_purge_phase_finds_the_retention_purge() -> None:
    from passgate.retention.services import purge_once

    assert scale.find_purge() is purge_once
