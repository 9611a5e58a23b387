"""The retention purge's and the erasure's statements, behind named functions.

The purge works in two moves per batch, so that SQLite's write lock is held only for deletes by primary
key: `due_ids` looks for up to a batch of due rows in a read-only transaction (walking a time index of
the client's rows), then `delete_batch` removes them, children first, in a short write transaction of its
own. `delete_batch` checks again that each row is still due (a webhook delivery may have been replayed in
between), locking the rows on PostgreSQL, and deletes only those.

Children are deleted explicitly before their parents rather than left to ON DELETE CASCADE: several of
them (messages, dev inbox rows) have no foreign key to their parent, and the counts in the report are
then true on both databases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.orm import Session

from passgate.audit.models import AuditEntry
from passgate.auth.models import Client
from passgate.messaging.models import DevInboxMessage, Message, MessageAttempt
from passgate.mfa.models import FailureCounter, MfaEvent, MfaSecret, MfaSession
from passgate.policy.models import Decision, Device
from passgate.retention.models import ClientRetention
from passgate.retention.plan import Kind, Step
from passgate.webhooks.events import EventType
from passgate.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from passgate.webhooks.states import DeliveryStatus

# Deliveries still on their way (waiting or being sent) are never purged, whatever their age.
FINISHED = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value)
# Bound parameters per IN list in the erasure (an account may have thousands of sessions).
CHUNK = 500

Counts = dict[str, int]


def clients(session: Session) -> list[tuple[str, ClientRetention | None]]:
    """Every client with its stored periods (None when it set none)."""
    rows = session.execute(
        select(Client.id, ClientRetention)
        .outerjoin(ClientRetention, ClientRetention.client_id == Client.id)
        .order_by(Client.id)
    ).all()
    return [(client_id, stored) for client_id, stored in rows]


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _delete(session: Session, column: Any, ids: Sequence[Any]) -> int:
    if not ids:
        return 0
    table = column.table
    return _rowcount(
        session.execute(delete(table).where(column.in_(ids)).execution_options(synchronize_session=False))
    )


# -- the purge: one target per kind of parent row --------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One kind of parent row a step removes: which rows are due, and how a batch of them goes."""

    table: str
    due: Callable[[str, datetime], ColumnElement[bool]]
    id_column: Any
    order: Any
    remove_children: Callable[[Session, list[Any]], Counts]
    # About how many rows one parent row goes with (itself and its children): a batch of `batch_size` rows
    # takes batch_size // weight parents, so a transaction stays about the same size whatever the kind.
    weight: int = 1

    def parents_per_batch(self, batch_size: int) -> int:
        return max(1, batch_size // self.weight)


def _no_children(session: Session, ids: list[Any]) -> Counts:
    return {}


def _session_children(session: Session, ids: list[Any]) -> Counts:
    message_ids = list(session.scalars(select(Message.id).where(Message.session_id.in_(ids))))
    return {
        "dev_inbox": _delete(session, DevInboxMessage.message_id, message_ids),
        "message_attempts": _delete(session, MessageAttempt.message_id, message_ids),
        "messages": _delete(session, Message.id, message_ids),
        "mfa_events": _delete(session, MfaEvent.session_id, ids),
        "mfa_secrets": _delete(session, MfaSecret.session_id, ids),
    }


def _message_children(session: Session, ids: list[Any]) -> Counts:
    return {
        "dev_inbox": _delete(session, DevInboxMessage.message_id, ids),
        "message_attempts": _delete(session, MessageAttempt.message_id, ids),
    }


def _delivery_children(session: Session, ids: list[Any]) -> Counts:
    return {"webhook_attempts": _delete(session, WebhookAttempt.delivery_id, ids)}


TARGETS: dict[Kind, tuple[Target, ...]] = {
    Kind.SESSIONS: (
        Target(
            "mfa_sessions",
            lambda c, cut: (MfaSession.client_id == c) & (MfaSession.created_at < cut),
            MfaSession.id,
            MfaSession.created_at,
            _session_children,
            weight=8,  # a session, its message and attempt, secret, and about four timeline rows
        ),
        # What is left: test sends (no session), and messages whose session went another way.
        Target(
            "messages",
            lambda c, cut: (Message.client_id == c) & (Message.created_at < cut),
            Message.id,
            Message.created_at,
            _message_children,
            weight=3,
        ),
    ),
    Kind.DECISIONS: (
        Target(
            "decisions",
            lambda c, cut: (Decision.client_id == c) & (Decision.created_at < cut),
            Decision.id,
            Decision.created_at,
            _no_children,
        ),
    ),
    Kind.WEBHOOK_DELIVERIES: (
        Target(
            "webhook_deliveries",
            lambda c, cut: (
                (WebhookDelivery.client_id == c)
                & (WebhookDelivery.created_at < cut)
                & WebhookDelivery.status.in_(FINISHED)
            ),
            WebhookDelivery.id,
            WebhookDelivery.created_at,
            _delivery_children,
            weight=2,
        ),
        # Events left without any delivery (their deliveries purged, or no endpoint wanted them).
        Target(
            "webhook_events",
            lambda c, cut: (
                (WebhookEvent.client_id == c)
                & (WebhookEvent.created_at < cut)
                & ~exists().where(WebhookDelivery.event_id == WebhookEvent.id)
            ),
            WebhookEvent.id,
            WebhookEvent.created_at,
            _no_children,
        ),
    ),
    Kind.AUDIT_LOG: (
        Target(
            "audit_log",
            lambda c, cut: (AuditEntry.client_id == c) & (AuditEntry.at < cut),
            AuditEntry.id,
            AuditEntry.at,
            _no_children,
        ),
    ),
}


def due_ids(session: Session, target: Target, step: Step, limit: int) -> list[Any]:
    """Up to `limit` ids of the step's due rows of `target`, oldest first (the client's time index)."""
    stmt = (
        select(target.id_column)
        .where(target.due(step.client_id, step.cutoff))
        .order_by(target.order)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def delete_batch(session: Session, target: Target, step: Step, ids: list[Any]) -> Counts:
    """Delete those of `ids` still due, with their children first; how many rows of each table."""
    still = list(
        session.scalars(
            select(target.id_column)
            .where(target.id_column.in_(ids), target.due(step.client_id, step.cutoff))
            .with_for_update()  # PostgreSQL: a replay cannot move a delivery between check and delete
        )
    )
    if not still:
        return {target.table: 0}
    counts = target.remove_children(session, still)
    counts[target.table] = _delete(session, target.id_column, still)
    return counts


def count_due(session: Session, step: Step) -> Counts:
    """How many rows the step would remove, children included (for a dry run); each row counted once."""
    c, cut = step.client_id, step.cutoff
    if step.kind is Kind.SESSIONS:
        sessions = select(MfaSession.id).where(TARGETS[Kind.SESSIONS][0].due(c, cut)).scalar_subquery()
        of_sessions = Message.session_id.in_(sessions)
        alone = TARGETS[Kind.SESSIONS][1].due(c, cut) & (Message.session_id.is_(None) | ~of_sessions)
        messages = select(Message.id).where(of_sessions | alone).scalar_subquery()
        return {
            "mfa_sessions": _count(session, MfaSession.id.in_(sessions)),
            "mfa_events": _count(session, MfaEvent.session_id.in_(sessions)),
            "mfa_secrets": _count(session, MfaSecret.session_id.in_(sessions)),
            "messages": _count(session, Message.id.in_(messages)),
            "message_attempts": _count(session, MessageAttempt.message_id.in_(messages)),
            "dev_inbox": _count(session, DevInboxMessage.message_id.in_(messages)),
        }
    if step.kind is Kind.WEBHOOK_DELIVERIES:
        due = TARGETS[Kind.WEBHOOK_DELIVERIES][0].due(c, cut)
        deliveries = select(WebhookDelivery.id).where(due).scalar_subquery()
        # An event goes once every delivery it has is gone.
        kept = exists().where(WebhookDelivery.event_id == WebhookEvent.id, ~due)
        events = (WebhookEvent.client_id == c) & (WebhookEvent.created_at < cut) & ~kept
        return {
            "webhook_deliveries": _count(session, due),
            "webhook_attempts": _count(session, WebhookAttempt.delivery_id.in_(deliveries)),
            "webhook_events": _count(session, events),
        }
    return {t.table: _count(session, t.due(c, cut)) for t in TARGETS[step.kind]}


def _count(session: Session, where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).where(where)) or 0)


# -- the erasure -----------------------------------------------------------------------------------------


def _chunks(ids: Sequence[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i : i + CHUNK])


def _add(counts: Counts, more: Counts) -> None:
    for table, n in more.items():
        counts[table] = counts.get(table, 0) + n


def erase_sessions(session: Session, client_id: str, account_id: str) -> Counts:
    """Delete the account's sessions with their messages (sent or not), attempts, secrets, timeline rows."""
    ids = list(
        session.scalars(
            select(MfaSession.id).where(
                MfaSession.client_id == client_id, MfaSession.account_id == account_id
            )
        )
    )
    counts: Counts = {"mfa_sessions": 0}
    for chunk in _chunks(ids):
        _add(counts, _session_children(session, chunk))
        counts["mfa_sessions"] += _delete(session, MfaSession.id, chunk)
    return counts


@dataclass(frozen=True)
class ErasedDecisions:
    count: int
    ids: list[str]
    emails: list[str]  # the addresses the decisions' requests gave, for the velocity counters


def anonymise_decisions(session: Session, client_id: str, account_id: str) -> ErasedDecisions:
    """Blank the personal fields of the account's decisions, keeping what the statistics count."""
    rows = session.execute(
        select(Decision.id, Decision.request).where(
            Decision.client_id == client_id, Decision.account_id == account_id
        )
    ).all()
    emails = sorted(
        {
            str(email).lower()
            for _, request in rows
            if isinstance(request, dict)
            and isinstance(request.get("person"), dict)
            and (email := request["person"].get("emailAddress"))
        }
    )
    ids = [decision_id for decision_id, _ in rows]
    for chunk in _chunks(ids):
        session.execute(
            update(Decision)
            .where(Decision.id.in_(chunk))
            .values(account_id=None, inquiry_id="", device_session_id="", request={})
            .execution_options(synchronize_session=False)
        )
    return ErasedDecisions(len(ids), ids, emails)


def erase_decision_events(session: Session, client_id: str, account_id: str) -> Counts:
    """Delete the account's Decision.Created events (they name the account and its device) with their
    deliveries, delivered or not."""
    needle = '"accountId":' + json.dumps(account_id)
    candidates = session.execute(
        select(WebhookEvent.id, WebhookEvent.body).where(
            WebhookEvent.client_id == client_id,
            WebhookEvent.event_type == EventType.DECISION_CREATED.value,
            WebhookEvent.body.contains(needle, autoescape=True),
        )
    ).all()
    ids = [event_id for event_id, body in candidates if _names_account(body, account_id)]
    counts: Counts = {"webhook_events": 0, "webhook_deliveries": 0, "webhook_attempts": 0}
    for chunk in _chunks(ids):
        deliveries = list(
            session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(chunk)))
        )
        counts["webhook_attempts"] += _delete(session, WebhookAttempt.delivery_id, deliveries)
        counts["webhook_deliveries"] += _delete(session, WebhookDelivery.id, deliveries)
        counts["webhook_events"] += _delete(session, WebhookEvent.id, chunk)
    return counts


def _names_account(body: str, account_id: str) -> bool:
    try:
        return bool(json.loads(body).get("accountId") == account_id)
    except (ValueError, AttributeError):
        return False


def erase_devices(session: Session, client_id: str, account_id: str) -> int:
    return _rowcount(
        session.execute(delete(Device).where(Device.client_id == client_id, Device.account_id == account_id))
    )


def erase_failure_counter(session: Session, client_id: str, account_hashes: list[str]) -> int:
    return _rowcount(
        session.execute(
            delete(FailureCounter).where(
                FailureCounter.client_id == client_id,
                FailureCounter.scope == "account",
                FailureCounter.subject_hash.in_(account_hashes),
            )
        )
    )
