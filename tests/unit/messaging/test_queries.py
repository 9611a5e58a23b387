"""The outbox statements: every status a statement writes is a move the lifecycle has, guarded by the
row's current status; an ORM row asked to make an illegal move is refused before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Table, create_engine, insert, select
from sqlalchemy.orm import Session

from passgate.messaging import queries
from passgate.messaging.models import Message
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
