"""Every statement over outbox messages the dispatcher runs: claim, mark sent, skip, retry.

Each statement that changes a message's status is built through `_moving`, which checks the move against
`MESSAGE_TRANSITIONS` (at import, for the fixed statements) and guards the row's current status in its
WHERE; ORM rows change status through `move`, which checks before it sets. A move the lifecycle does not
have is refused (`IllegalMessageMove`) instead of written.

The claim of a round is one statement: the due messages, outer-joined to the rows the purposes' hooks
contribute (`ClaimJoin`, see `RoundStatements`), so that a round costs no extra round trip per hook.

The reads the HTTP side needs are here too, behind named functions: the message a delivery report is
about (`report_target`) and the dev inbox (`dev_inbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Table, bindparam, null, or_, select, union_all, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from passgate.db.fastpath import CursorStatement, dialect_insert
from passgate.messaging.interfaces import ClaimJoin
from passgate.messaging.models import DevInboxMessage, Message, MessageBounce
from passgate.messaging.states import DeliveryStatus, MessageStatus, check_move

_messages = cast(Table, Message.__table__)


def _moving(current: MessageStatus, wanted: MessageStatus, plain: bool = False) -> ColumnElement[bool]:
    """The WHERE guard of a statement that moves rows from `current` to `wanted`, once the move is
    checked against the lifecycle (raises `IllegalMessageMove` if it has no such move). `plain` binds
    the status as a plain string (statements run on the DBAPI cursor, `db.CursorStatement`)."""
    check_move(current, wanted)
    return _messages.c.status == (current.value if plain else current)


def move(message: Message, wanted: MessageStatus) -> None:
    """Moves an ORM-loaded message to `wanted`, refusing a move the lifecycle does not have."""
    check_move(message.status, wanted)
    message.status = wanted


_QUEUED_DUE = _moving(MessageStatus.QUEUED, MessageStatus.SENDING) & (
    _messages.c.next_attempt_at <= bindparam("now")
)
# A worker that died mid-send leaves SENDING with an expired lock: take it over.
_STALE_DUE = _moving(MessageStatus.SENDING, MessageStatus.SENDING) & (
    _messages.c.locked_until < bindparam("now")
)
IS_DUE = or_(_QUEUED_DUE, _STALE_DUE)

# The claimed messages a round's record finds still SENDING (locked on PostgreSQL, as the update was).
STILL_SENDING = (
    select(_messages.c.id, _messages.c.session_id, _messages.c.secret_id)
    .where(_messages.c.id.in_(bindparam("ids", expanding=True)), _messages.c.status == MessageStatus.SENDING)
    .with_for_update()
)
# An accepted message, SENT, with its provider's id, if it is still SENDING (`db.defer_update`: the record
# may have read it on a snapshot).
MARK_SENT = CursorStatement(
    update(_messages)
    .where(
        _messages.c.id == bindparam("mid"),
        _moving(MessageStatus.SENDING, MessageStatus.SENT, plain=True),
    )
    .values(
        status=MessageStatus.SENT.value,
        delivery_status=DeliveryStatus.SENT.value,
        sent_at=bindparam("now"),
        sealed_secret=null(),
        locked_until=null(),
        last_error=null(),
        provider=bindparam("provider"),
        provider_message_id=bindparam("provider_id"),
    )
)
_DUE = (
    select(_messages.c.id)
    .where(IS_DUE)
    .order_by(_messages.c.next_attempt_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# What a claim gives back of each message it takes (its RETURNING, or the read of a snapshot claim), in
# the order of `ClaimedRow`.
CLAIMED_COLUMNS = (
    _messages.c.id,
    _messages.c.client_id,
    _messages.c.session_id,
    _messages.c.channel,
    _messages.c.destination,
    _messages.c.template_name,
    _messages.c.locale,
    _messages.c.purpose,
    _messages.c.sealed_secret,
    _messages.c.secret_id,
    _messages.c.attempts,
    _messages.c.next_attempt_at,
)
# PostgreSQL's claim (and SQLite's with the write lock held): FOR UPDATE SKIP LOCKED, so that workers
# never wait on each other's rows.
CLAIM = (
    update(_messages)
    .where(_messages.c.id.in_(_DUE.scalar_subquery()))
    .values(
        status=MessageStatus.SENDING.value,
        attempts=_messages.c.attempts + 1,
        locked_until=bindparam("until"),
        locked_by=bindparam("by"),
    )
    .returning(*CLAIMED_COLUMNS)
)
# One message of a round worked out on a snapshot claimed, only if it is still due (`db.defer_update`:
# else the claim runs again with the write lock held).
CLAIM_ONE = CursorStatement(
    update(_messages)
    .where(_messages.c.id == bindparam("mid"), IS_DUE)
    .values(
        status=MessageStatus.SENDING.value,
        attempts=_messages.c.attempts + 1,
        locked_until=bindparam("until"),
        locked_by=bindparam("by"),
        secret_id=bindparam("secret_id"),
        sealed_secret=bindparam("sealed"),
    )
)
# Once per claimed message that gets its code or link token at the claim.
SET_SECRET = CursorStatement(
    update(_messages)
    .where(_messages.c.id == bindparam("mid"))
    .values(secret_id=bindparam("secret_id"), sealed_secret=bindparam("sealed"))
)
# A claimed message whose owner closed before it went out: not sent, and not counted as an attempt.
SKIP = (
    update(_messages)
    .where(_messages.c.id == bindparam("mid"), _moving(MessageStatus.SENDING, MessageStatus.FAILED))
    .values(
        status=MessageStatus.FAILED.value,
        attempts=_messages.c.attempts - 1,
        last_error=bindparam("error"),
        sealed_secret=None,
        locked_until=None,
    )
)


class ClaimedRow(NamedTuple):
    """A message as the claim's RETURNING gives it (attempts counted), for a claim worked out on a snapshot:
    the fields of `CLAIMED_COLUMNS`, in their order."""

    id: str
    client_id: str
    session_id: str | None
    channel: str
    destination: str
    template_name: str
    locale: str
    purpose: str
    sealed_secret: str | None
    secret_id: str | None
    attempts: int
    next_attempt_at: datetime


def _first_due(columns: Sequence[Any], order: tuple[Any, ...], joins: Sequence[ClaimJoin]) -> Any:
    """`columns` (of messages outer-joined to the hooks' rows) of the first `limit` due messages by `order`.

    Each kind of due message (queued, or claimed by a worker whose claim expired) is read in the order of
    the due-messages index and stops at `limit`; the two short lists are merged. One statement over
    `IS_DUE` with the same ORDER BY sorted every due message first: after an outage with 50,000 mails
    waiting, 22 ms per read, and a round reads twice (the look ahead and the claim)."""
    joined: Any = _messages
    for join in joins:
        joined = joined.outerjoin(join.table, join.table.c.id == _messages.c.session_id)

    def first(kind: Any) -> Any:
        # Ordered by the index's own column only: a tie-breaker there would sort every due message again.
        return (
            select(*columns)
            .select_from(joined)
            .where(kind)
            .order_by(_messages.c.next_attempt_at)
            .limit(bindparam("limit"))
        )

    both = union_all(select(first(_QUEUED_DUE).subquery()), select(first(_STALE_DUE).subquery())).subquery()
    return select(both).order_by(*(both.c[c.key] for c in order)).limit(bindparam("limit"))


def _hook_columns(joins: Sequence[ClaimJoin]) -> list[Any]:
    return [join.table.c[name].label(f"{join.prefix}{name}") for join in joins for name in join.columns]


@dataclass(frozen=True)
class RoundStatements:
    """The statement of a round that reads the hooks' rows with the messages, composed once per dispatcher.

    `due_round`: the due messages as the claim's RETURNING gives them, each with the hooks' columns. The
    look before a claim reads it in a transaction that only reads (`Claimer.look_ahead`), and a claim worked
    out on a read snapshot starts from those rows (`Claimer.claim_on_snapshot`)."""

    due_round: Any

    @classmethod
    def compose(cls, joins: Sequence[ClaimJoin]) -> RoundStatements:
        extra = _hook_columns(joins)
        return cls(
            _first_due((*CLAIMED_COLUMNS, *extra), (_messages.c.next_attempt_at, _messages.c.id), joins)
        )


def report_target(session: Session, by: Literal["provider", "id"], ident: str) -> Message | None:
    """The message a delivery report names, locked for the update the report makes (FOR UPDATE on
    PostgreSQL), or None: by the id the provider gave it (`provider`) or by the outbox id (`id`)."""
    column = Message.provider_message_id if by == "provider" else Message.id
    return session.scalars(select(Message).where(column == ident).with_for_update()).first()


def add_bounce(session: Session, values: dict[str, Any]) -> bool:
    """Records a bounce (`MessageBounce`'s columns); False when the same bounce of the same message is
    already recorded (nothing written)."""
    stmt: Any = dialect_insert(session.get_bind().dialect.name, MessageBounce.__table__)
    stmt = stmt.values(**values).on_conflict_do_nothing(index_elements=["message_id", "bounce_key"])
    result: Any = session.execute(stmt)
    return bool(result.rowcount)


def dev_inbox(session: Session, limit: int) -> Sequence[DevInboxMessage]:
    """The dev inbox's `limit` latest messages, newest first."""
    return session.scalars(select(DevInboxMessage).order_by(DevInboxMessage.id.desc()).limit(limit)).all()
