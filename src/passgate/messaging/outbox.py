"""The outbox's only door in: every message to send becomes a row here, and a worker sends it later.

Challenges (`mfa`) and sample sends (`messaging.catalog`) both queue through `queue`, so a Message row is
always born the same way: QUEUED, due now, no secret (its code or link token is made by the worker that
first claims it, see `DeliveryHooks.make_secret`), inserted at commit with the transaction's other rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from passgate.db.deferred import DeferredWrites
from passgate.ids import new_uuid
from passgate.messaging.models import Message
from passgate.messaging.states import DeliveryStatus, MessageStatus

# Set on the session when a message is queued; read after commit to wake an in-process worker (see
# bootstrap.WorkNotifier).
WORK_QUEUED = "work_queued"


@dataclass(frozen=True)
class OutboxMessage:
    """A message to send: to whom, with which template and locale, and for which purpose (whose hooks
    own it, see `messaging.interfaces.DeliveryHooks`)."""

    client_id: str
    channel: str
    destination: str
    template_name: str
    locale: str
    purpose: str
    queued_at: datetime
    session_id: str | None = None
    id: str = field(default_factory=new_uuid)


def queue(session: Session, message: OutboxMessage) -> str:
    """Queues `message` (inserted at commit: nothing in the transaction reads it back; the worker claims
    it after) and returns its id."""
    DeferredWrites.of(session).insert(Message.__table__,
        [
            {
                "id": message.id,
                "client_id": message.client_id,
                "session_id": message.session_id,
                "secret_id": None,
                "channel": message.channel,
                "destination": message.destination,
                "template_name": message.template_name,
                "locale": message.locale,
                "purpose": message.purpose,
                "sealed_secret": None,
                "status": MessageStatus.QUEUED.value,
                "delivery_status": DeliveryStatus.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": message.queued_at,
                "locked_until": None,
                "locked_by": None,
                "provider": None,
                "provider_message_id": None,
                "last_error": None,
                "created_at": message.queued_at,
                "sent_at": None,
            }
        ],
    )
    session.info[WORK_QUEUED] = True
    return message.id
