"""Velocity windows slide with the injected clock, on the database and on Redis alike."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from passgate.db import make_sessionmaker, transaction
from passgate.policy.velocity import DatabaseVelocityStore, RedisVelocityStore, VelocityStore

BACKENDS = ["database"] + (["redis"] if os.environ.get("PASSGATE_TEST_REDIS_URL") else [])


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[VelocityStore]:
    if request.param == "redis":
        yield RedisVelocityStore(
            os.environ["PASSGATE_TEST_REDIS_URL"], prefix=f"pgtest:{secrets.token_hex(4)}:"
        )
    else:
        yield DatabaseVelocityStore()


def test_windows_slide(store: VelocityStore, engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    client = "cl_vel_" + secrets.token_hex(4)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    keys = {"account": "a1", "ip": "203.0.113.9"}
    needed = frozenset({("account", "failedAttempts"), ("ip", "failedAttempts"), ("account", "logins")})
    with transaction(sessions) as s:
        for minutes in (0, 20, 50):
            store.record(s, client, ["failedAttempts"], keys, t0 + timedelta(minutes=minutes))
        store.record(s, client, ["logins"], {"account": "a1"}, t0)
        store.record(s, client, ["failedAttempts"], {"account": "someone-else"}, t0)

    def counts(at: datetime) -> tuple[int, int, int]:
        with sessions() as s:
            c = store.counts(s, client, keys, needed, at)
        return (
            c["account"]["failedAttempts1h"],
            c["account"]["failedAttempts24h"],
            c["ip"]["failedAttempts1h"],
        )

    assert counts(t0 + timedelta(minutes=55)) == (3, 3, 3)
    assert counts(t0 + timedelta(minutes=61)) == (2, 3, 2)  # the first fell out of the hour
    assert counts(t0 + timedelta(minutes=111)) == (0, 3, 0)
    assert counts(t0 + timedelta(hours=24, minutes=30)) == (0, 1, 0)  # only the 12:50 one is within a day
    assert counts(t0 - timedelta(minutes=1)) == (0, 0, 0)  # nothing counted from the future
    with sessions() as s:
        assert store.counts(s, client, keys, needed, t0 + timedelta(minutes=5))["account"]["logins1h"] == 1
        other_client = store.counts(s, client + "x", keys, needed, t0 + timedelta(minutes=55))
    assert other_client["account"]["failedAttempts1h"] == 0  # tenants never share counters


def test_forget_drops_one_keys_counters_only(store: VelocityStore, engine: Engine) -> None:
    """An erasure forgets an account's counters in every metric; other keys and clients keep theirs."""
    sessions = make_sessionmaker(engine)
    client = "cl_vel_" + secrets.token_hex(4)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    needed = frozenset({("account", "logins"), ("account", "failedAttempts")})
    with transaction(sessions) as s:
        for c in (client, client + "x"):
            store.record(s, c, ["logins", "failedAttempts"], {"account": "gone"}, t0)
            store.record(s, c, ["logins"], {"account": "kept"}, t0)
        store.record(s, client, ["logins"], {"account": "gone"}, t0 + timedelta(minutes=3))

    def logins(c: str, account: str) -> int:
        with sessions() as s:
            return store.counts(s, c, {"account": account}, needed, t0 + timedelta(minutes=5))["account"][
                "logins1h"
            ]

    assert logins(client, "gone") == 2
    with transaction(sessions) as s:
        forgotten = store.forget(s, client, "account", "gone")
    # The database keeps a row per minute and metric (3 here), Redis a key per metric (2).
    assert forgotten == (3 if store.backend == "database" else 2)
    assert logins(client, "gone") == 0
    assert logins(client, "kept") == 1 and logins(client + "x", "gone") == 1
    with transaction(sessions) as s:
        assert store.forget(s, client, "account", "gone") == 0
