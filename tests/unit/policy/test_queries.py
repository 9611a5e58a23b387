"""The policy statements the HTTP side calls by name: a decision by its correlation id, and a device's trust
set, read and forgotten; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.models import Client
from passgate.db import make_sessionmaker
from passgate.ids import new_uuid
from passgate.policy import queries
from passgate.policy.models import Decision

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def _client(sessions: sessionmaker[Session]) -> str:
    cid = "c" + new_uuid().replace("-", "")[:20]
    with sessions.begin() as s:
        s.add(Client(id=cid, name="Q", country="US", sandbox=False, created_at=NOW))
    return cid


def test_decision_of_finds_only_the_clients_own_decision(sessions: sessionmaker[Session]) -> None:
    client_id, other = _client(sessions), _client(sessions)
    decision_id = new_uuid()
    with sessions.begin() as s:
        s.add(
            Decision(
                id=decision_id,
                client_id=client_id,
                event_type="LOGIN",
                inquiry_id="inq1",
                device_session_id="ds1",
                account_id="acct-1",
                decision="ALLOW",
                segment="default",
                set_version="v1",
                tags=[],
                request={"inquiryId": "inq1"},
                created_at=NOW,
            )
        )
    with sessions.begin() as s:
        found = queries.decision_of(s, client_id, decision_id)
        assert found is not None and found.account_id == "acct-1"
        assert queries.decision_of(s, other, decision_id) is None
        assert queries.decision_of(s, client_id, new_uuid()) is None


def test_device_trust_is_set_changed_read_and_forgotten(sessions: sessionmaker[Session]) -> None:
    client_id = _client(sessions)
    later = NOW + timedelta(minutes=5)
    with sessions.begin() as s:
        assert queries.device(s, client_id, "acct-1", "ds1") is None
        queries.set_device_trust(s, client_id, "acct-1", "ds1", "BANNED", NOW)
    with sessions.begin() as s:
        row = queries.device(s, client_id, "acct-1", "ds1")
        assert row is not None and (row.trust_state, row.seen) == ("BANNED", False)
        queries.set_device_trust(s, client_id, "acct-1", "ds1", "TRUSTED", later)
    with sessions.begin() as s:
        row = queries.device(s, client_id, "acct-1", "ds1")
        # Changed in place: the trust and the last sighting, never the first sighting nor `seen`.
        assert row is not None and row.trust_state == "TRUSTED" and not row.seen
        assert (row.first_seen_at, row.last_seen_at) == (NOW, later)
        queries.set_device_trust(s, client_id, "acct-1", "ds2", "TRUSTED", NOW)
    with sessions.begin() as s:
        fresh = queries.device(s, client_id, "acct-1", "ds2")
        assert fresh is not None and fresh.seen  # a device first known as trusted counts as seen
        assert queries.forget_device(s, client_id, "acct-1", "ds1")
    with sessions.begin() as s:
        assert queries.device(s, client_id, "acct-1", "ds1") is None
        assert not queries.forget_device(s, client_id, "acct-1", "ds1")
        assert queries.device(s, client_id, "acct-1", "ds2") is not None
