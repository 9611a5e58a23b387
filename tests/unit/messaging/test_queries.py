"""The outbox statements: every status a statement writes is a move the lifecycle has, guarded by the
row's current status; an ORM row asked to make an illegal move is refused before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, Table, create_engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.models import Client
from passgate.db import make_sessionmaker
from passgate.ids import new_uuid
from passgate.messaging import queries
from passgate.messaging.models import DevInboxMessage, Message
from passgate.messaging.states import IllegalMessageMove, MessageStatus

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_statement_built_for_an_illegal_move_is_refused() -> None:
    with pytest.raises(IllegalMessageMove):
        queries._moving(MessageStatus.SENT, MessageStatus.QUEUED)
    with pytest.raises(IllegalMessageMove):
        queries._moving(MessageStatus.FAILED, MessageStatus.SENDING)


def test_the_guard_is_the_current_status() -> None:
    guard = queries._moving(MessageStatus.SENDING, MessageStatus.SENT, plain=True)
    assert "status" in str(guard)
    assert guard.right.value == "SENDING"  # type: ignore[attr-defined]


@pytest.mark.parametrize("final", [MessageStatus.SENT, MessageStatus.FAILED])
def test_an_orm_row_cannot_leave_a_final_status(final: MessageStatus) -> None:
    message = Message(status=final)
    with pytest.raises(IllegalMessageMove):
        queries.move(message, MessageStatus.QUEUED)
    assert message.status == final


def test_an_orm_row_makes_a_legal_move() -> None:
    message = Message(status=MessageStatus.SENDING)
    queries.move(message, MessageStatus.QUEUED)
    assert message.status == MessageStatus.QUEUED


def _row(engine, mid: str, status: MessageStatus) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            insert(Message.__table__),
            {
                "id": mid,
                "client_id": "c1",
                "session_id": None,
                "channel": "EMAIL",
                "destination": "a@example.com",
                "template_name": "email-link",
                "locale": "en",
                "purpose": "test",
                "status": status.value,
                "delivery_status": "QUEUED",
                "attempts": 1,
                "next_attempt_at": NOW,
                "created_at": NOW,
            },
        )


def test_the_skip_moves_only_a_sending_row() -> None:
    engine = create_engine("sqlite://")
    table = Message.__table__
    assert isinstance(table, Table)
    table.create(engine)  # the table alone: its foreign keys are not enforced here
    _row(engine, "m-sending", MessageStatus.SENDING)
    _row(engine, "m-sent", MessageStatus.SENT)
    with Session(engine) as session, session.begin():
        session.connection().execute(
            queries.SKIP, [{"mid": "m-sending", "error": "not sent"}, {"mid": "m-sent", "error": "not sent"}]
        )
    with engine.connect() as conn:
        got = dict(conn.execute(select(table.c.id, table.c.status)).all())
    assert got == {"m-sending": "FAILED", "m-sent": "SENT"}


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def _message_row(client_id: str, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": new_uuid(),
        "client_id": client_id,
        "session_id": None,
        "channel": "SMS",
        "destination": "+12015550123",
        "template_name": "sms-code",
        "locale": "en",
        "purpose": "test",
        "status": MessageStatus.SENT.value,
        "delivery_status": "SENT",
        "attempts": 1,
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    return row | over


def test_report_target_finds_a_message_by_the_provider_id_or_the_outbox_id(
    sessions: sessionmaker[Session],
) -> None:
    client_id = "c" + new_uuid().replace("-", "")[:20]
    provider_id = "SM" + new_uuid().replace("-", "")
    row = _message_row(client_id, provider="twilio", provider_message_id=provider_id)
    with sessions.begin() as s:
        s.add(Client(id=client_id, name="Q", country="US", sandbox=False, created_at=NOW))
        s.flush()
        s.execute(insert(Message.__table__), row)
    with sessions.begin() as s:
        by_provider = queries.report_target(s, "provider", provider_id)
        by_id = queries.report_target(s, "id", str(row["id"]))
        assert by_provider is not None and by_provider is by_id and by_id.id == row["id"]
        # Each key is looked up in its own column only.
        assert queries.report_target(s, "id", provider_id) is None
        assert queries.report_target(s, "provider", str(row["id"])) is None


def test_dev_inbox_is_the_latest_messages_newest_first(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        before = [m.id for m in queries.dev_inbox(s, 1000)]
    ids = []
    for n in range(3):
        with sessions.begin() as s:
            message = DevInboxMessage(
                message_id=new_uuid(),
                client_id="c1",
                channel="SMS",
                destination=f"+1201555012{n}",
                text=f"code {n}",
                meta={},
                created_at=NOW,
            )
            s.add(message)
            s.flush()
            ids.append(message.id)
    with sessions.begin() as s:
        assert [m.id for m in queries.dev_inbox(s, 2)] == [ids[2], ids[1]]
        assert [m.id for m in queries.dev_inbox(s, 1000)] == [*reversed(ids), *before]
