"""The canonical request hash, and the claim of a management request, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from passgate.db import make_sessionmaker, transaction
from passgate.idempotency import services
from passgate.idempotency.exceptions import KeyReused, RequestInProgress
from passgate.keyring import KeyRing

BODY = {"inquiryId": "inq1", "person": {"name": {"first": "Jo", "last": "Doe"}, "emailAddress": "jo@x.test"}}


def test_whitespace_and_key_order_do_not_change_the_hash() -> None:
    respelled = json.loads(
        json.dumps(
            {
                "person": {"emailAddress": "jo@x.test", "name": {"last": "Doe", "first": "Jo"}},
                "inquiryId": "inq1",
            },
            indent=4,
        )
    )
    assert services.request_hash(respelled) == services.request_hash(BODY)


@pytest.mark.parametrize(
    "changed",
    [
        {**BODY, "inquiryId": "inq2"},
        {**BODY, "person": {**BODY["person"], "emailAddress": "jo@y.test"}},
        {**BODY, "extra": None},
        {k: v for k, v in BODY.items() if k != "person"},
        {**BODY, "person": {**BODY["person"], "name": {"first": "Jö", "last": "Doe"}}},
    ],
)
def test_any_value_changes_the_hash(changed: dict[str, object]) -> None:
    assert services.request_hash(changed) != services.request_hash(BODY)


@pytest.fixture
def client_id(engine: Engine) -> str:
    cid = "cl_idem_" + datetime.now(UTC).strftime("%H%M%S%f")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO clients (id, name, country, sandbox, created_at) VALUES (:id, 'x', 'US', :f, :now)"
            ),
            {"id": cid, "f": False, "now": datetime.now(UTC).replace(tzinfo=None)},
        )
    return cid


def test_a_management_claim_goes_running_then_answered_then_expired(engine: Engine, client_id: str) -> None:
    sessions = make_sessionmaker(engine)
    keyring = KeyRing([b"k" * 32])
    now = datetime.now(UTC)

    def begin(hashed: str, at: datetime) -> services.StoredAnswer | None:
        return services.begin_request(sessions, keyring, client_id, "key", hashed, "cid-1", at)

    assert begin("h1", now) is None  # claimed
    with pytest.raises(RequestInProgress):
        begin("h1", now + timedelta(seconds=1))
    with pytest.raises(KeyReused):
        begin("h2", now + timedelta(seconds=1))
    assert services.finish_request(
        sessions, keyring, client_id, "key", "h1", 201, [("content-type", "application/json")], b'{"id":"x"}'
    )
    stored = begin("h1", now + timedelta(hours=1))
    assert stored == services.StoredAnswer(
        201, [("content-type", "application/json")], b'{"id":"x"}', "cid-1"
    )
    # Sealed: another key ring cannot read it, and says so rather than running the request again.
    with pytest.raises(RequestInProgress):
        services.begin_request(sessions, KeyRing([b"j" * 32]), client_id, "key", "h1", "c", now)
    # After the retention the key is free again, for any request.
    assert begin("h2", now + timedelta(hours=24, seconds=1)) is None
    with transaction(sessions) as session:
        assert services.purge(session, now + timedelta(hours=48, seconds=2)) >= 1
    assert begin("h3", now + timedelta(hours=48, seconds=3)) is None


def test_a_release_frees_the_key(engine: Engine, client_id: str) -> None:
    sessions = make_sessionmaker(engine)
    keyring = KeyRing([b"k" * 32])
    now = datetime.now(UTC)
    assert services.begin_request(sessions, keyring, client_id, "k2", "h", "c", now) is None
    services.release_request(sessions, client_id, "k2", "h")
    assert services.begin_request(sessions, keyring, client_id, "k2", "other", "c", now) is None
