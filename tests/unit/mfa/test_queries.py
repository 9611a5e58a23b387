"""Each named MFA query against the plain path (the ORM, or a Core statement), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.models import Client
from passgate.auth.settings import ClientSettings
from passgate.db import make_sessionmaker
from passgate.ids import new_uuid
from passgate.messaging.models import Message
from passgate.mfa import queries
from passgate.mfa.models import FailureCounter, MfaEvent, MfaSecret, MfaSession
from passgate.mfa.queries import LISTENER_COLUMNS, SessionChanges, SessionRow, SessionSnapshot
from passgate.mfa.states import InvalidTransition, Status
from passgate.policy.models import Device

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def client_id(sessions: sessionmaker[Session]) -> str:
    cid = "c" + new_uuid().replace("-", "")[:20]
    with sessions.begin() as s:
        s.add(Client(id=cid, name="Q", country="US", sandbox=False, created_at=NOW))
    return cid


def _session_row(client_id: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": new_uuid(),
        "client_id": client_id,
        "decision_id": new_uuid(),
        "event_type": "LOGIN",
        "type": "OTP",
        "channel": "SMS",
        "template_name": "sms-code",
        "locale": "en",
        "destination": "+12015550123",
        "destination_hash": "d" * 64,
        "account_id": "acct-1",
        "device_session_id": "dev-1",
        "status": Status.MESSAGE_SENT.value,
        "termination_reason": None,
        "delivery_status": "SENT",
        "send_attempts": 1,
        "verification_attempts": 0,
        "max_sends": 3,
        "max_attempts": 5,
        "ttl_seconds": 600,
        "code_length": 6,
        "expires_at": NOW + timedelta(minutes=10),
        "created_at": NOW,
        "updated_at": NOW,
        "verified_at": None,
        "target_url": None,
        "bind_to_device": False,
        "match_number": None,
        "sandbox": False,
        "render_context": {"values": {}, "person": {}},
        "sequence": 1,
        "link_opens": 0,
    }
    row.update(over)
    return row


def _insert(sessions: sessionmaker[Session], row: dict[str, Any]) -> str:
    with sessions.begin() as s:
        queries.insert_session(s.connection(), row)
    return str(row["id"])


@pytest.fixture
def stored(sessions: sessionmaker[Session], client_id: str) -> Iterator[str]:
    yield _insert(sessions, _session_row(client_id))


def test_a_snapshot_holds_the_listener_columns_and_nothing_else() -> None:
    assert tuple(f.name for f in dataclasses.fields(SessionSnapshot)) == LISTENER_COLUMNS
    row = dict.fromkeys(LISTENER_COLUMNS, 0)
    snapshot = SessionSnapshot(**row)
    with pytest.raises(AttributeError):
        snapshot.destination  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.status = "VERIFIED"  # type: ignore[misc]


def test_load_locked_reads_the_row_the_orm_reads(
    sessions: sessionmaker[Session], client_id: str, stored: str
) -> None:
    with sessions.begin() as s:
        row = queries.load_locked(s.connection(), client_id, stored)
        orm = queries.load(s, client_id, stored, lock=True)
        assert orm is not None and row is not None
        assert row == queries.row_of(orm)
        assert isinstance(row, SessionRow) and row.expires_at == NOW + timedelta(minutes=10)
        assert SessionSnapshot.of(orm) == SessionSnapshot.of(row)
        # Another client's session is not found, by either path.
        assert queries.load_locked(s.connection(), "other", stored) is None
        assert queries.load(s, "other", stored) is None


def test_write_back_writes_the_changes_and_expires_the_orm_copy(
    sessions: sessionmaker[Session], client_id: str, stored: str
) -> None:
    with sessions.begin() as s:
        tracked = s.get(MfaSession, stored)
        assert tracked is not None and tracked.verification_attempts == 0
        conn = s.connection()
        row = queries.load_locked(conn, client_id, stored)
        assert row is not None
        changes = SessionChanges.of(row)
        changes.status = Status.VERIFICATION_ATTEMPT_FAILED.value
        changes.verification_attempts = 1
        changes.updated_at = NOW + timedelta(seconds=5)
        changes.sequence = 2
        queries.write_back(s, conn, changes)
        assert tracked.verification_attempts == 1  # read again, not stale
        assert changes.snapshot().status == Status.VERIFICATION_ATTEMPT_FAILED.value
    with sessions.begin() as s:
        again = s.execute(select(MfaSession.__table__).where(MfaSession.id == stored)).one()._mapping
        assert (again["status"], again["verification_attempts"], again["sequence"]) == (
            "VERIFICATION_ATTEMPT_FAILED",
            1,
            2,
        )
        assert again["updated_at"] == NOW + timedelta(seconds=5)
        # What a caller is told the row now is (`SessionChanges.after`) is what the database has.
        assert queries.load_locked(s.connection(), client_id, stored) == changes.after()


def test_write_back_refuses_a_move_the_lifecycle_forbids(
    sessions: sessionmaker[Session], client_id: str
) -> None:
    stored = _insert(sessions, _session_row(client_id, status="VERIFIED", verified_at=NOW))
    with sessions.begin() as s:
        conn = s.connection()
        row = queries.load_locked(conn, client_id, stored)
        assert row is not None
        changes = SessionChanges.of(row)
        changes.status = Status.MESSAGE_SENT.value
        with pytest.raises(InvalidTransition):
            queries.write_back(s, conn, changes)
    with sessions.begin() as s:
        assert s.scalar(select(MfaSession.status).where(MfaSession.id == stored)) == "VERIFIED"


def test_consume_verifies_an_open_session_once(
    sessions: sessionmaker[Session], client_id: str, stored: str
) -> None:
    with sessions.begin() as s:
        conn = s.connection()
        assert queries.consume(conn, stored, "MESSAGE_SENT", NOW) is None
        # A second answer that read the session open finds it verified, and changes nothing.
        assert queries.consume(conn, stored, "MESSAGE_SENT", NOW + timedelta(seconds=1)) == ("VERIFIED", None)
        assert queries.status_now(conn, stored) == ("VERIFIED", None)
        # A caller that knows the session is closed is refused before anything is written.
        with pytest.raises(InvalidTransition):
            queries.consume(conn, stored, "TERMINATED", NOW)
        orm = s.get(MfaSession, stored)
        assert orm is not None and (orm.status, orm.verified_at) == ("VERIFIED", NOW)


def test_link_opened_counts_in_the_database(
    sessions: sessionmaker[Session], client_id: str, stored: str
) -> None:
    with sessions.begin() as s:
        assert [queries.link_opened(s.connection(), stored) for _ in range(3)] == [1, 2, 3]
        assert s.scalar(select(MfaSession.link_opens).where(MfaSession.id == stored)) == 3


def test_client_config_reads_the_client_and_its_settings(
    sessions: sessionmaker[Session], client_id: str
) -> None:
    with sessions.begin() as s:
        assert queries.client_config(s.connection(), client_id) == (False, "US", None)
        s.add(
            ClientSettings(
                client_id=client_id,
                link_ttl_seconds=900,
                otp_length=8,
                sms_allowed_countries=["US", "CA"],
                reject_voip=True,
                updated_at=NOW,
            )
        )
        s.flush()
        assert queries.client_config(s.connection(), client_id) == (
            False,
            "US",
            (900, None, 8, None, None, ["US", "CA"], True, None),
        )


def test_failure_counters_count_wait_lock_and_clear(sessions: sessionmaker[Session], client_id: str) -> None:
    subject = "s" * 64
    with sessions.begin() as s:
        conn = s.connection()
        assert queries.counter_state(conn, client_id, "destination", subject) is None
        assert [queries.record_failure(conn, client_id, "destination", subject, NOW) for _ in range(3)] == [
            1,
            2,
            3,
        ]
        queries.set_wait(conn, client_id, "destination", subject, NOW + timedelta(seconds=30))
        assert queries.counter_state(conn, client_id, "destination", subject) == (
            3,
            NOW + timedelta(seconds=30),
            False,
        )
        assert queries.locked_scopes(conn, client_id, subject, "a" * 64) == set()
        queries.lock_counter(conn, client_id, "destination", subject)
        queries.record_failure(conn, client_id, "account", "a" * 64, NOW)
        queries.lock_counter(conn, client_id, "account", "a" * 64)
        assert queries.locked_scopes(conn, client_id, subject, "a" * 64) == {"destination", "account"}
        assert queries.locked_scopes(conn, client_id, "x" * 64, "") == set()
        orm = s.get(FailureCounter, (client_id, "destination", subject))
        assert orm is not None and (orm.failures, orm.locked) == (3, True)
        queries.clear_failures(conn, client_id, [("destination", subject), ("account", "a" * 64)], NOW)
        assert queries.counter_state(conn, client_id, "destination", subject) == (0, None, False)
        assert queries.counter_state(conn, client_id, "account", "a" * 64) == (0, None, False)


def _secret(session_id: str, kind: str, n: int, active: bool = True) -> dict[str, Any]:
    return {
        "id": new_uuid(),
        "session_id": session_id,
        "kind": kind,
        "secret_hash": f"{kind}{n}".ljust(64, "0"),
        "key_id": "k1",
        "active": active,
        "created_at": NOW,
        "activated_at": NOW + timedelta(seconds=n) if active else None,
        "expires_at": NOW + timedelta(minutes=10),
    }


def test_live_codes_and_recent_secrets_are_the_last_three_active(
    sessions: sessionmaker[Session], client_id: str, stored: str
) -> None:
    rows = [_secret(stored, "CODE", n) for n in range(5)] + [_secret(stored, "CODE", 9, active=False)]
    with sessions.begin() as s:
        s.execute(insert(MfaSecret.__table__), rows)
        live = queries.live_codes(s.connection(), stored)
        assert [h for h, _, _ in live] == [
            rows[4]["secret_hash"],
            rows[3]["secret_hash"],
            rows[2]["secret_hash"],
        ]
        assert all(k == "k1" and e == NOW + timedelta(minutes=10) for _, k, e in live)
        assert list(queries.recent_secret_ids(s, stored)) == [rows[4]["id"], rows[3]["id"], rows[2]["id"]]


def test_link_secret_and_session_by_id(sessions: sessionmaker[Session], client_id: str, stored: str) -> None:
    link = _secret(stored, "LINK", 1)
    with sessions.begin() as s:
        s.execute(insert(MfaSecret.__table__), [link, _secret(stored, "CODE", 2)])
        found = queries.link_secret(s, ["nothing", link["secret_hash"]])
        assert found is not None and found.id == link["id"]
        assert queries.link_secret(s, [_secret(stored, "CODE", 2)["secret_hash"]]) is None  # a code
        by_id = queries.session_by_id(s, stored, lock=True)
        assert by_id is not None and by_id.client_id == client_id
        assert queries.session_by_id(s, new_uuid()) is None


def test_expiry_finds_open_sessions_past_their_time(sessions: sessionmaker[Session], client_id: str) -> None:
    late = NOW + timedelta(days=3650)  # past every session other tests left behind
    due = _insert(sessions, _session_row(client_id, expires_at=late))
    _insert(sessions, _session_row(client_id, expires_at=late, status="VERIFIED", verified_at=NOW))
    _insert(sessions, _session_row(client_id, expires_at=late + timedelta(hours=1)))
    with sessions.begin() as s:
        assert queries.any_expired(s, late)
        expired = queries.expire_due(s, late, 1000)
        mine = [m.id for m in expired if m.client_id == client_id]
        assert mine == [due]
        assert all(m.status in ("UNKNOWN", "MESSAGE_SENT", "VERIFICATION_ATTEMPT_FAILED") for m in expired)


def test_events_and_last_sent_at(sessions: sessionmaker[Session], client_id: str, stored: str) -> None:
    with sessions.begin() as s:
        assert queries.last_sent_at(s, stored) is None
        s.execute(
            insert(MfaEvent.__table__),
            [
                {
                    "session_id": stored,
                    "client_id": client_id,
                    "type": t,
                    "source": "api",
                    "data": {},
                    "created_at": NOW,
                }
                for t in ("CREATED", "MESSAGE_SENT")
            ],
        )
        for sent in (NOW + timedelta(seconds=1), NOW + timedelta(seconds=5), None):
            s.execute(
                insert(Message.__table__),
                {
                    "id": new_uuid(),
                    "client_id": client_id,
                    "session_id": stored,
                    "channel": "SMS",
                    "destination": "+12015550123",
                    "template_name": "sms-code",
                    "locale": "en",
                    "purpose": "challenge",
                    "status": "SENT" if sent else "QUEUED",
                    "delivery_status": "SENT" if sent else "QUEUED",
                    "attempts": 1,
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                    "sent_at": sent,
                },
            )
        assert [e.type for e in queries.events(s, stored)] == ["CREATED", "MESSAGE_SENT"]
        assert queries.last_sent_at(s, stored) == NOW + timedelta(seconds=5)


def test_device_trust(sessions: sessionmaker[Session], client_id: str) -> None:
    with sessions.begin() as s:
        conn = s.connection()
        assert queries.device_trust(conn, client_id, "acct-1", "dev-1") is None
        s.add(
            Device(
                client_id=client_id,
                account_id="acct-1",
                device_session_id="dev-1",
                seen=True,
                trust_state="BANNED",
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )
        s.flush()
        assert queries.device_trust(s.connection(), client_id, "acct-1", "dev-1") == "BANNED"


def test_search_sessions_filters_newest_first_within_the_client(
    sessions: sessionmaker[Session], client_id: str
) -> None:
    """The console's session list: each filter narrows it, `q` is a session id or an account id, `before`
    pages back in time, and another client's sessions never appear."""
    older = _insert(sessions, _session_row(client_id, created_at=NOW - timedelta(minutes=2)))
    email = _insert(
        sessions,
        _session_row(client_id, channel="EMAIL", account_id="acct-2", created_at=NOW - timedelta(minutes=1)),
    )
    newest = _insert(sessions, _session_row(client_id, status=Status.VERIFIED.value, created_at=NOW))
    with sessions.begin() as s:
        s.add(Client(id=client_id + "x", name="Other", country="US", sandbox=False, created_at=NOW))
    _insert(sessions, _session_row(client_id + "x", created_at=NOW))

    def ids(**filters: Any) -> list[str]:
        with sessions.begin() as s:
            return [m.id for m in queries.search_sessions(s, client_id, limit=10, **filters)]

    assert ids() == [newest, email, older]
    assert ids(status=Status.VERIFIED.value) == [newest]
    assert ids(channel="EMAIL") == [email]
    assert ids(account_id="acct-1") == [newest, older]
    assert ids(q=email.upper()) == [email]  # a session id, in any case
    assert ids(q="acct-2") == [email]  # or an account id
    assert ids(before=NOW) == [email, older]
    assert ids(channel="SMS", before=NOW - timedelta(minutes=1)) == [older]
    with sessions.begin() as s:
        assert [m.id for m in queries.search_sessions(s, client_id, limit=2)] == [newest, email]


def _plain_pending(
    s: Session, key: queries.PendingKey, now: datetime, hashes: list[str] | None = None
) -> str | None:
    """The pending lookups written plainly with the ORM, in Python where SQL would need care (NULLs)."""
    rows = s.scalars(select(MfaSession).where(MfaSession.client_id == key.client_id)).all()
    found = [
        m
        for m in rows
        if m.status in ("UNKNOWN", "MESSAGE_SENT", "VERIFICATION_ATTEMPT_FAILED")
        and m.expires_at > now
        and m.source == key.source
        and (
            m.destination_hash in hashes
            if hashes is not None
            else (
                m.destination_hash,
                m.event_type,
                m.template_name,
                m.account_id,
                m.device_session_id,
                m.purpose,
                m.bind_to_device,
            )
            == (
                key.destination_hash,
                key.event_type,
                key.template_name,
                key.account_id,
                key.device_session_id,
                key.purpose,
                key.bind_to_device,
            )
        )
    ]
    found.sort(key=lambda m: (m.created_at, m.id), reverse=True)
    return found[0].id if found else None


def test_pending_session_and_newest_pending_find_what_the_plain_path_finds(
    sessions: sessionmaker[Session], client_id: str
) -> None:
    base = {"destination_hash": "p" * 64}
    variants: list[dict[str, Any]] = [
        {},
        {"created_at": NOW + timedelta(seconds=1)},
        {"status": "VERIFIED", "verified_at": NOW, "created_at": NOW + timedelta(seconds=2)},
        {"expires_at": NOW - timedelta(seconds=1), "created_at": NOW + timedelta(seconds=3)},
        {"account_id": None},
        {"account_id": "acct-2", "created_at": NOW + timedelta(seconds=4)},
        {"device_session_id": "dev-2"},
        {"template_name": "email-code"},
        {"bind_to_device": True},
        {"destination_hash": "q" * 64, "created_at": NOW + timedelta(seconds=5)},
        {
            "source": "verify",
            "event_type": "VERIFY",
            "purpose": "signup",
            "account_id": None,
            "device_session_id": None,
        },
        {
            "source": "verify",
            "event_type": "VERIFY",
            "purpose": "password_reset",
            "account_id": None,
            "device_session_id": None,
            "created_at": NOW + timedelta(seconds=6),
        },
    ]
    for over in variants:
        _insert(sessions, _session_row(client_id, **{**base, **over}))
    keys = [
        queries.PendingKey(
            client_id, "p" * 64, "decision", "LOGIN", "sms-code", "acct-1", "dev-1", None, False
        ),
        queries.PendingKey(client_id, "p" * 64, "decision", "LOGIN", "sms-code", None, "dev-1", None, False),
        queries.PendingKey(
            client_id, "p" * 64, "decision", "LOGIN", "sms-code", "acct-2", "dev-1", None, False
        ),
        queries.PendingKey(
            client_id, "p" * 64, "decision", "LOGIN", "sms-code", "acct-1", "dev-1", None, True
        ),
        queries.PendingKey(
            client_id, "p" * 64, "decision", "LOGIN", "sms-code", "acct-9", "dev-1", None, False
        ),
        queries.PendingKey(client_id, "p" * 64, "verify", "VERIFY", "sms-code", None, None, "signup", False),
        queries.PendingKey(client_id, "p" * 64, "verify", "VERIFY", "sms-code", None, None, "other", False),
        queries.PendingKey(
            "c-other", "p" * 64, "decision", "LOGIN", "sms-code", "acct-1", "dev-1", None, False
        ),
    ]
    found = []
    with sessions.begin() as s:
        for key in keys:
            row = queries.pending_session(s.connection(), key, NOW)
            assert (row.id if row else None) == _plain_pending(s, key, NOW), key
            found.append(row is not None)
        for source in ("decision", "verify"):
            for hashes in (["p" * 64], ["x" * 64, "q" * 64], ["x" * 64]):
                key = keys[0]._replace(source=source)
                row = queries.newest_pending(s.connection(), client_id, hashes, source, NOW)
                assert (row.id if row else None) == _plain_pending(s, key, NOW, hashes), (source, hashes)
    assert found == [True, True, True, True, False, True, False, False]


def test_hold_pending_key_makes_a_start_of_the_same_key_wait_for_the_commit(engine: Engine) -> None:
    """PostgreSQL: while one transaction holds a key, another cannot take it, while a key that differs
    in one part is free; after the commit it is free again. SQLite: nothing is held (one API process)."""
    key = queries.PendingKey("c1", "d" * 64, "verify", "VERIFY", "email-code", None, None, "signup", False)
    other = key._replace(purpose="password_reset")
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            queries.hold_pending_key(conn, key)  # runs nothing
        return
    probe = text("SELECT pg_try_advisory_xact_lock(:k)")
    number = queries.pending_lock_number
    assert number(key) != number(other)

    with engine.connect() as first, engine.connect() as second:
        first_tx = first.begin()
        queries.hold_pending_key(first, key)
        with second.begin():
            assert second.execute(probe, {"k": number(key)}).scalar() is False
            assert second.execute(probe, {"k": number(other)}).scalar() is True
        first_tx.commit()
        with second.begin():
            assert second.execute(probe, {"k": number(key)}).scalar() is True


def _plain_locked(s: Session, client_id: str, destination_hash: str, account_hash: str) -> set[str]:
    """The locked counters of a challenge's destination and account, read plainly with the ORM."""
    rows = s.scalars(select(FailureCounter).where(FailureCounter.client_id == client_id)).all()
    return {
        c.scope
        for c in rows
        if c.locked
        and (c.scope, c.subject_hash) in (("destination", destination_hash), ("account", account_hash))
    }


@pytest.mark.parametrize("seed", range(4))
def test_challenge_reads_read_what_the_two_reads_and_the_plain_path_read(
    sessions: sessionmaker[Session], client_id: str, seed: int
) -> None:
    """The one statement of a new challenge's reads against `locked_scopes` and `pending_session`, and both
    against the ORM, on generated sessions and counters: few destinations and accounts, so that keys meet
    pending sessions (several for one destination, created at the same instant or not), expired ones,
    closed ones and locked counters in every combination."""
    import random

    rng = random.Random(seed)
    hashes = [c * 64 for c in "pqrs"]
    accounts = [None, "acct-1", "acct-2"]
    devices = [None, "dev-1", "dev-2"]
    templates = ["sms-code", "email-link"]
    statuses = ["UNKNOWN", "MESSAGE_SENT", "VERIFICATION_ATTEMPT_FAILED", "VERIFIED", "TERMINATED"]
    made: list[dict[str, Any]] = []
    with sessions.begin() as s:
        for _ in range(60):
            source = rng.choice(["decision", "verify"])
            status = rng.choice(statuses)
            row = _session_row(
                client_id,
                destination_hash=rng.choice(hashes),
                account_id=rng.choice(accounts),
                device_session_id=rng.choice(devices),
                template_name=rng.choice(templates),
                bind_to_device=rng.random() < 0.3,
                status=status,
                verified_at=NOW if status == "VERIFIED" else None,
                termination_reason="EXPIRED" if status == "TERMINATED" else None,
                source=source,
                event_type="VERIFY" if source == "verify" else rng.choice(["LOGIN", "NEW_ACCOUNT_OPENING"]),
                purpose=rng.choice([None, "signup"]) if source == "verify" else None,
                created_at=NOW - timedelta(seconds=rng.choice([0, 0, 1, 2, 30])),
                expires_at=NOW + timedelta(seconds=rng.choice([-5, 0, 1, 600])),
            )
            queries.insert_session(s.connection(), row)
            made.append(row)
        for scope, subjects in (("destination", hashes), ("account", [h.upper() for h in hashes])):
            for subject in subjects:
                if rng.random() < 0.4:
                    queries.record_failure(s.connection(), client_id, scope, subject, NOW)
                    if rng.random() < 0.5:
                        queries.lock_counter(s.connection(), client_id, scope, subject)
    found = {"locked": 0, "pending": 0, "neither": 0}
    with sessions.begin() as s:
        conn = s.connection()
        for _ in range(150):
            source = rng.choice(["decision", "verify"])
            key = queries.PendingKey(
                rng.choice([client_id, client_id, "c-other"]),
                rng.choice([*hashes, "x" * 64]),
                source,
                "VERIFY" if source == "verify" else rng.choice(["LOGIN", "NEW_ACCOUNT_OPENING"]),
                rng.choice(templates),
                rng.choice(accounts),
                rng.choice(devices),
                rng.choice([None, "signup"]) if source == "verify" else None,
                rng.random() < 0.3,
            )
            if rng.random() < 0.5:  # the key of a session made above
                m = rng.choice(made)
                key = queries.PendingKey(client_id, *(m[name] for name in queries.PendingKey._fields[1:]))
            account_hash = rng.choice([None, "", *(h.upper() for h in hashes)])
            pending = rng.random() < 0.8
            locked, row = queries.challenge_reads(conn, key, account_hash, NOW, pending=pending)
            # The two reads it stands for.
            want_locked = (
                set()
                if account_hash is None
                else queries.locked_scopes(conn, key.client_id, key.destination_hash, account_hash)
            )
            want_row = queries.pending_session(conn, key, NOW) if pending and not want_locked else None
            assert (locked, row) == (want_locked, want_row), (key, account_hash, pending)
            # And both against the ORM.
            if account_hash is not None:
                assert locked == _plain_locked(s, key.client_id, key.destination_hash, account_hash)
            if pending and not locked:
                assert (row.id if row else None) == _plain_pending(s, key, NOW)
            found["locked" if locked else "pending" if row else "neither"] += 1
    assert min(found.values()) >= 5, found  # the generated keys met each outcome
