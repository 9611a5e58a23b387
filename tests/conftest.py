"""Shared fixtures: every database test runs on SQLite and, when PASSGATE_TEST_DATABASE_URL is set, on
PostgreSQL too (a schema of its own per run, dropped at the end).

Isolation between tests comes from tenancy: each test makes its own clients, and Passgate never lets
one client see another's rows, so tests share a migrated database without seeing each other.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from passgate.bootstrap import Registry, build_registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.db import make_engine
from passgate.main import create_app
from passgate.migrate import upgrade
from tests.factories import Tenant, make_tenant

TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("PASSGATE_TEST_DATABASE_URL") else [])


# -- what this run leaves out, said once at the end ---------------------------------------------------------

_NOT_RUN = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Count the selected tests whose PostgreSQL or Redis variant is not collected for want of a server."""
    twins = {"PostgreSQL": 0, "Redis": 0}
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("database_url") == "sqlite":
            twins["PostgreSQL"] += 1
        if params.get("velocity_backend") == "database" or params.get("store") == "database":
            twins["Redis"] += 1
    why = {"PostgreSQL": "PASSGATE_TEST_DATABASE_URL", "Redis": "PASSGATE_TEST_REDIS_URL"}
    left = [
        f"the {name} variants of {count} test{'s' if count != 1 else ''} ({why[name]} is unset)"
        for name, count in twins.items()
        if count and not os.environ.get(why[name])
    ]
    if left:
        session.config.stash[_NOT_RUN] = (
            "NOT RUN: " + " and ".join(left) + '; README.md ("Tests and benchmarks") says how to run them'
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = terminalreporter.config.stash.get(_NOT_RUN, None)
    if line:
        terminalreporter.write_line(line, yellow=True, bold=True)


def _pg_url_with_schema(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'passgate.db'}"
        return
    base = os.environ["PASSGATE_TEST_DATABASE_URL"]
    schema = "pgtest_" + secrets.token_hex(5)
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_url_with_schema(base, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_keys=TEST_SECRET,
        data_dir=tmp_path / "data",
        public_url="http://127.0.0.1:8000",
        workers_in_process="off",
        key_cache_seconds=0,
        log_level="WARNING",
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def registry(settings: Settings, engine: Engine, clock: FrozenClock) -> Iterator[Registry]:
    yield build_registry(settings, clock=clock, engine=engine)
    # Work a test left queued must not be picked up by the next test's workers (the queue is global).
    with engine.begin() as conn:
        conn.execute(text("UPDATE messages SET status = 'FAILED' WHERE status IN ('QUEUED', 'SENDING')"))


@pytest.fixture
def app(registry: Registry):  # type: ignore[no-untyped-def]
    return create_app(registry=registry)


@pytest.fixture
def http(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def tenant(http: TestClient, registry: Registry) -> Tenant:
    return make_tenant(http, registry, admin=True)


@pytest.fixture
def other_tenant(http: TestClient, registry: Registry) -> Tenant:
    return make_tenant(http, registry, name="Other Co", admin=True)
