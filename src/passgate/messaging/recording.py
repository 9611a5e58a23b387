"""The record of a dispatcher round: what each send came to, written to the outbox and told to its owner.

Accepted sends are recorded in a few statements per round (read here, written at commit: the record may
be worked out on a read snapshot, see `Dispatcher.run_once`); a failure, rarer, goes through the ORM.
Every status change is checked against the message lifecycle (`queries.move`, `queries.MARK_SENT`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from passgate.db.deferred import DeferredWrites
from passgate.messaging import queries
from passgate.messaging.interfaces import Claimed, DeliveryHooks, Sent, SentMessage
from passgate.messaging.models import Message, MessageAttempt
from passgate.messaging.senders.base import SendError
from passgate.messaging.states import DeliveryStatus, MessageStatus

log = logging.getLogger("passgate.worker")
# The hooks that own a purpose's messages (`Dispatcher._hook`).
HookOf = Callable[[str], DeliveryHooks]


@dataclass(frozen=True)
class Failure:
    """A send that did not go out: the message, the provider tried, what it raised and when it started."""

    claimed: Claimed
    provider: str
    exc: SendError
    started: datetime


def record_deferred(session: Session, c: Claimed, now: datetime) -> None:
    """Not rendered this round (its client's render time ran out): due again at once, the attempt not
    counted, the code or link token kept."""
    message = session.get(Message, c.message_id)
    if message is None or message.status != MessageStatus.SENDING:
        return
    queries.move(message, MessageStatus.QUEUED)
    message.attempts = max(message.attempts - 1, 0)
    message.locked_until = None
    message.next_attempt_at = now


def record_sent(session: Session, sent: list[Sent], now: datetime, hook_of: HookOf) -> None:
    """The provider accepted these: each message SENT (unless another worker already recorded it after
    re-claiming it from a stall), one attempt each, and their owners told."""
    if not sent:
        return
    conn = session.connection()
    # Only rows still SENDING move: read here, and checked again by the update's own WHERE when it runs
    # at commit (the record may run on a read snapshot, its writes later: see Dispatcher.run_once).
    ids = [s.claimed.message_id for s in sent]
    moved = {row.id: row for row in conn.execute(queries.STILL_SENDING, {"ids": ids})}
    if moved:
        marks = [
            {"mid": s.claimed.message_id, "now": now, "provider": s.provider, "provider_id": s.provider_id}
            for s in sent
            if s.claimed.message_id in moved
        ]
        DeferredWrites.of(session).update(queries.MARK_SENT, marks)
    # The attempt is recorded either way: the send happened.
    attempts = [
        {
            "message_id": s.claimed.message_id,
            "attempt": s.claimed.attempt,
            "provider": s.provider,
            "result": "sent",
            "error": None,
            "started_at": s.started,
            "finished_at": now,
        }
        for s in sent
    ]
    DeferredWrites.of(session).insert(MessageAttempt.__table__, attempts)
    by_purpose: dict[str, list[SentMessage]] = {}
    for s in sent:
        row = moved.get(s.claimed.message_id)
        if row is not None:
            told = SentMessage(
                s.claimed.message_id, row.session_id, row.secret_id, s.claimed.attempt, s.provider
            )
            by_purpose.setdefault(s.claimed.purpose, []).append(told)
    for purpose, told_of in by_purpose.items():
        hook_of(purpose).messages_sent(session, told_of, now)


def record_failure(
    session: Session, failure: Failure, now: datetime, retry_schedule: tuple[float, ...], hook_of: HookOf
) -> None:
    """A failed send: retried after the schedule's delay (jittered), or, refused for good or out of
    retries, FAILED and its owner told."""
    c, exc = failure.claimed, failure.exc
    reason = str(exc)[:500] or type(exc).__name__
    give_up = not exc.retryable or c.attempt > len(retry_schedule)
    message = session.get(Message, c.message_id)
    if message is None or message.status != MessageStatus.SENDING:
        return
    session.add(
        MessageAttempt(
            message_id=c.message_id,
            attempt=c.attempt,
            provider=failure.provider,
            result="failed" if give_up else "retry",
            error=reason,
            started_at=failure.started,
            finished_at=now,
        )
    )
    message.last_error = reason
    message.locked_until = None
    message.provider = failure.provider
    if give_up:
        queries.move(message, MessageStatus.FAILED)
        message.delivery_status = DeliveryStatus.UNDELIVERED
        message.sealed_secret = None
        log.warning("message failed for good", extra={"messageId": c.message_id, "reason": reason})
        hook_of(c.purpose).message_failed(session, message, exc.authorization, reason, now)
    else:
        delay = retry_schedule[c.attempt - 1]
        queries.move(message, MessageStatus.QUEUED)
        message.next_attempt_at = now + timedelta(seconds=delay * random.uniform(1.0, 1.25))
        log.info(
            "message will be retried",
            extra={"messageId": c.message_id, "reason": reason, "inSeconds": delay},
        )
