"""The webhooks' Core statements, behind named functions: the outbox's endpoint lookup, and the worker's
claim, load, record, release, reclaim, give up and purge.

Prepared Core statements, not the ORM: the lookup runs inside every decision and status change, the claim
and the record for every few deliveries, and building a statement costs more than running it
(`_statements()` builds the worker's once). Each function takes the connection or session of the caller's
transaction; the outbox (webhooks.outbox) and the worker (webhooks.delivery, webhooks.claims,
webhooks.outcomes) decide what is published, claimed and what each outcome means, these say how it is
read and written.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from passgate.db.types import UTCDateTime
from passgate.webhooks.models import (
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    attempts_table,
    deliveries_table,
    endpoints_table,
    events_table,
)
from passgate.webhooks.states import DeliveryStatus, DisabledReason

PENDING = DeliveryStatus.PENDING.value
SENDING = DeliveryStatus.SENDING.value
DELIVERED = DeliveryStatus.DELIVERED.value
FAILED = DeliveryStatus.FAILED.value


@dataclass(frozen=True)
class _Statements:
    busy: Any
    due_endpoints: Any
    pick: Any
    mark: Any
    load: Any
    current: Any
    endpoints: Any
    move: Any
    attempt: Any
    stale: Any


@functools.cache
def _statements() -> _Statements:
    """The hot path's statements, built once: building a statement costs more than running it."""
    D, E, V = deliveries_table.c, endpoints_table.c, events_table.c
    earlier = deliveries_table.alias("earlier")
    now = bindparam("now", type_=UTCDateTime())
    ids: Any = bindparam("ids", expanding=True)
    # A session's later event waits while an earlier one to the same endpoint is still under way.
    blocked = exists().where(
        earlier.c.endpoint_id == D.endpoint_id,
        earlier.c.session_id == D.session_id,
        earlier.c.sequence < D.sequence,
        earlier.c.status.in_([PENDING, SENDING]),
    )
    return _Statements(
        busy=select(D.endpoint_id, func.count()).where(D.status == SENDING).group_by(D.endpoint_id),
        due_endpoints=select(E.id).where(
            E.enabled.is_(True),
            exists().where(D.endpoint_id == E.id, D.status == PENDING, D.next_attempt_at <= now),
        ),
        stale=select(D.id).where(D.status == SENDING, D.locked_until < now).limit(1),
        pick=select(D.id)
        .where(
            D.endpoint_id == bindparam("endpoint"), D.status == PENDING, D.next_attempt_at <= now, ~blocked
        )
        .order_by(D.next_attempt_at, D.sequence)
        .limit(bindparam("room"))
        .with_for_update(skip_locked=True, of=deliveries_table),
        mark=update(deliveries_table)
        .where(D.id.in_(ids))
        .values(
            status=SENDING,
            tries=D.tries + 1,
            attempts=D.attempts + 1,
            locked_until=bindparam("until", type_=UTCDateTime()),
            locked_by=bindparam("by"),
            lock_token=bindparam("token"),
        ),
        load=select(
            D.id,
            D.event_id,
            D.attempts,
            E.id.label("endpoint_id"),
            E.client_id,
            E.url,
            E.signature_scheme,
            E.sealed_secret,
            E.sealed_previous_secret,
            E.previous_secret_until,
            V.body,
        )
        .select_from(
            deliveries_table.join(endpoints_table, E.id == D.endpoint_id).join(
                events_table, V.id == D.event_id
            )
        )
        .where(D.id.in_(ids)),
        current=select(D.id, D.status, D.lock_token, D.tries).where(D.id.in_(ids)).with_for_update(),
        endpoints=select(E.id, E.enabled, E.failing_since)
        .where(E.id.in_(ids))
        .order_by(E.id)
        .with_for_update(),
        move=update(deliveries_table)
        .where(D.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            next_attempt_at=func.coalesce(bindparam("b_next", type_=UTCDateTime()), D.next_attempt_at),
            delivered_at=func.coalesce(bindparam("b_delivered", type_=UTCDateTime()), D.delivered_at),
            last_status_code=bindparam("b_code"),
            last_error=bindparam("b_error"),
            locked_until=None,
            locked_by=None,
            lock_token=None,
        ),
        attempt=insert(attempts_table),
    )


# -- the outbox -------------------------------------------------------------------------------------------

_ENABLED_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.events, WebhookEndpoint.channel).where(
    WebhookEndpoint.client_id == bindparam("client_id"), WebhookEndpoint.enabled.is_(True)
)


class EndpointFilterRow(NamedTuple):
    """An enabled endpoint's subscription: which event types (none: all) on which channel (none: any)."""

    id: str
    events: list[str] | None
    channel: str | None


def enabled_endpoints(conn: Connection, client_id: str) -> list[EndpointFilterRow]:
    """The client's enabled endpoints and what each subscribes to (ids, event types, channel)."""
    return [
        EndpointFilterRow(*row) for row in conn.execute(_ENABLED_ENDPOINTS, {"client_id": client_id})
    ]


def give_up_waiting(session: Session, endpoint_id: str, reason: DisabledReason) -> int:
    """Mark the endpoint's PENDING deliveries FAILED (the endpoint was disabled); returns how many."""
    table = deliveries_table
    result = session.execute(
        update(table)
        .where(table.c.endpoint_id == endpoint_id, table.c.status == PENDING)
        .values(status=FAILED, last_error=f"endpoint disabled ({reason.value})")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- claiming ----------------------------------------------------------------------------------------------


def anything_due(conn: Connection, now: datetime) -> bool:
    """Whether an enabled endpoint has a delivery due now."""
    return conn.execute(_statements().due_endpoints, {"now": now}).first() is not None


def anything_stale(conn: Connection, now: datetime) -> bool:
    """Whether a delivery is SENDING under an expired lock (its worker died)."""
    return conn.execute(_statements().stale, {"now": now}).first() is not None


def busy_counts(conn: Connection) -> dict[str, int]:
    """Deliveries under way (SENDING), per endpoint, across all workers."""
    return {endpoint_id: int(count) for endpoint_id, count in conn.execute(_statements().busy)}


def due_endpoints(conn: Connection, now: datetime) -> list[str]:
    """The enabled endpoints with a delivery due now."""
    return list(conn.execute(_statements().due_endpoints, {"now": now}).scalars())


def pick(conn: Connection, endpoint_id: str, now: datetime, room: int) -> list[str]:
    """Up to `room` of the endpoint's due deliveries, oldest first, skipping a session's later events
    while an earlier one is under way, and rows another worker has locked (PostgreSQL)."""
    params = {"endpoint": endpoint_id, "now": now, "room": room}
    return list(conn.execute(_statements().pick, params).scalars())


def mark_sending(conn: Connection, ids: list[str], until: datetime, worker: str, token: str) -> None:
    """These deliveries are SENDING under this claim's token until `until` (one try more each)."""
    conn.execute(_statements().mark, {"ids": ids, "until": until, "by": worker, "token": token})


class ClaimRow(NamedTuple):
    """What a claimed delivery needs to be signed and sent."""

    id: str
    event_id: str
    attempts: int
    endpoint_id: str
    client_id: str
    url: str
    signature_scheme: str
    sealed_secret: str | None
    sealed_previous_secret: str | None
    previous_secret_until: datetime | None
    body: str


def load_claimed(conn: Connection, ids: list[str]) -> list[ClaimRow]:
    """The claimed deliveries with their endpoint and event."""
    return [ClaimRow(*row) for row in conn.execute(_statements().load, {"ids": ids})]


# -- recording ---------------------------------------------------------------------------------------------


class CurrentState(NamedTuple):
    """A delivery's row as the record finds it (locked)."""

    id: str
    status: str
    lock_token: str | None
    tries: int


class EndpointRow(NamedTuple):
    id: str
    enabled: bool
    failing_since: datetime | None


def current_states(conn: Connection, ids: list[str]) -> dict[str, CurrentState]:
    """The deliveries' rows, locked for the record (FOR UPDATE on PostgreSQL)."""
    return {row.id: CurrentState(*row) for row in conn.execute(_statements().current, {"ids": ids})}


def endpoint_rows(conn: Connection, ids: list[str]) -> list[EndpointRow]:
    """The endpoints' failure bookkeeping, locked in id order (no deadlock between two records)."""
    return [EndpointRow(*row) for row in conn.execute(_statements().endpoints, {"ids": ids})]


class Move(NamedTuple):
    """A delivery moved on by its outcome; the lock is let go. None leaves next_attempt_at and
    delivered_at as they were."""

    delivery_id: str
    status: str
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    status_code: int | None
    error: str | None


def move(conn: Connection, moves: Sequence[Move]) -> None:
    conn.execute(
        _statements().move,
        [
            {
                "b_id": m.delivery_id,
                "b_status": m.status,
                "b_next": m.next_attempt_at,
                "b_delivered": m.delivered_at,
                "b_code": m.status_code,
                "b_error": m.error,
            }
            for m in moves
        ],
    )


def log_attempts(conn: Connection, attempts: list[dict[str, Any]]) -> None:
    """Rows of the attempts log (webhook_attempts' columns)."""
    conn.execute(_statements().attempt, attempts)


def save_endpoint(session: Session, endpoint_id: str, values: dict[str, Any]) -> None:
    session.execute(update(endpoints_table).where(endpoints_table.c.id == endpoint_id).values(**values))


# -- taking back, releasing, purging -----------------------------------------------------------------------


def reclaim_expired(session: Session, now: datetime, worker_lost: str, lock_seconds: float) -> int:
    """Take back rows whose worker died mid-try (their lock expired), due now, and log that try as lost;
    how many."""
    D = WebhookDelivery
    stale = session.execute(
        select(D.id, D.attempts, D.locked_by, D.locked_until)
        .where(D.status == SENDING, D.locked_until < now)
        .limit(500)
        .with_for_update(skip_locked=True)
    ).all()
    if not stale:
        return 0
    session.execute(
        update(deliveries_table)
        .where(deliveries_table.c.id.in_([row.id for row in stale]))
        .values(
            status=PENDING,
            next_attempt_at=now,
            locked_until=None,
            locked_by=None,
            lock_token=None,
            last_error=worker_lost,
        )
    )
    session.execute(
        insert(attempts_table),
        [
            {
                "delivery_id": row.id,
                "attempt": row.attempts,
                "result": "retry",
                "error": "no outcome recorded: the worker stopped mid-delivery (lock expired)",
                "worker": row.locked_by,
                "started_at": row.locked_until - timedelta(seconds=lock_seconds),
                "finished_at": now,
                "next_attempt_at": now,
                "status_code": None,
                "latency_ms": None,
            }
            for row in stale
        ],
    )
    return len(stale)


def release(
    session: Session, delivery_id: str, token: str, attempt: int, worker: str, now: datetime, why: str
) -> bool:
    """Put a claimed delivery back (PENDING, due now) if this claim still holds it, and log the try;
    whether it did."""
    D = deliveries_table.c
    released = session.execute(
        update(deliveries_table)
        .where(D.id == delivery_id, D.status == SENDING, D.lock_token == token)
        .values(
            status=PENDING,
            next_attempt_at=now,
            locked_until=None,
            locked_by=None,
            lock_token=None,
            last_error=why,
        )
    )
    if not released.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(
        insert(attempts_table).values(
            delivery_id=delivery_id,
            attempt=attempt,
            result="retry",
            error="no outcome: the worker stopped mid-delivery",
            worker=worker,
            started_at=now,
            finished_at=now,
            next_attempt_at=now,
        )
    )
    return True


def purge(session: Session, cutoff: datetime) -> int:
    """Forget finished deliveries (and events left without any) created before `cutoff`; how many
    deliveries."""
    gone = session.execute(
        delete(WebhookDelivery)
        .where(
            WebhookDelivery.status.in_([DELIVERED, FAILED]),
            WebhookDelivery.created_at < cutoff,
        )
        .execution_options(synchronize_session=False)
    )
    orphan = ~exists().where(WebhookDelivery.event_id == WebhookEvent.id)
    session.execute(
        delete(WebhookEvent)
        .where(WebhookEvent.created_at < cutoff, orphan)
        .execution_options(synchronize_session=False)
    )
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]
