"""The outbox writes made inside the transactions of status changes and decisions.

Nothing is sent here. The listeners write one event row and one delivery row per matching enabled
endpoint in the caller's transaction, so an event exists exactly when the change it reports was committed;
`delivery.WebhookDeliverer` sends them. Which endpoints want what is cached per client for a second, and
dropped at once when this process changes an endpoint (`Outbox.forget_endpoints`, `endpoints_changed`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.db.deferred import DeferredWrites
from passgate.ids import new_uuid
from passgate.policy.decisions import Decision, DecisionContext
from passgate.webhooks import queries
from passgate.webhooks.events import (
    TEST_EVENT_TYPE,
    BreakerFacts,
    EndpointFilter,
    EventType,
    SessionChange,
    breaker_payload,
    decision_payload,
    encode,
    matching,
    ping_payload,
    status_event_type,
    status_payload,
)
from passgate.webhooks.metrics import WebhookMetrics
from passgate.webhooks.models import deliveries_table, events_table
from passgate.webhooks.states import DeliveryStatus

if TYPE_CHECKING:  # what mfa's status listeners receive; webhooks do not depend on mfa at run time
    from passgate.mfa.queries import SessionSnapshot

_generation = [0]


def endpoints_changed() -> None:
    """Endpoints were disabled outside WebhookService (by the delivery worker): drop every cached view."""
    _generation[0] += 1


class Outbox:
    """The status-change and decision listeners, and `publish`, which writes an event and its fan-out."""

    def __init__(self, *, clock: Clock, metrics: WebhookMetrics) -> None:
        self.metrics = metrics
        # Which endpoints want what, per client, for `filters_ttl` seconds: publishing runs inside every
        # decision and status change, and most clients' endpoints change rarely. A change made through
        # this process is seen at once; through another, within the TTL.
        self.filters_ttl = 1.0
        self._filters: TtlCache[str, tuple[int, list[EndpointFilter]]] = TtlCache(self.filters_ttl, clock)

    def _endpoint_filters(self, session: Session, client_id: str) -> list[EndpointFilter]:
        hit = self._filters.get(client_id)
        if hit is not None and hit[0] == _generation[0]:
            return hit[1]
        generation = _generation[0]
        filters = [
            EndpointFilter(row.id, tuple(row.events or ()), row.channel)
            for row in queries.enabled_endpoints(session.connection(), client_id)
        ]
        self._filters.put(client_id, (generation, filters))
        return filters

    def forget_endpoints(self, client_id: str) -> None:
        self._filters.invalidate(client_id)

    def on_mfa_status(
        self, session: Session, mfa: SessionSnapshot, old: str | None, new: str, now: datetime
    ) -> None:
        if mfa.source == "console":
            return  # the console's own sign-in is not the business's traffic
        if not self._endpoint_filters(session, mfa.client_id):
            return  # a client without endpoints: nothing to build (publish would find no target either)
        change = SessionChange(
            client_id=mfa.client_id,
            session_id=mfa.id,
            session_event_type=mfa.event_type,
            status=str(new),
            send_attempts=mfa.send_attempts,
            verification_attempts=mfa.verification_attempts,
            channel=mfa.channel,
            sequence=mfa.sequence,
            occurred_at=now,
        )
        self.publish(
            session,
            client_id=mfa.client_id,
            event_type=status_event_type(mfa.event_type),
            channel=mfa.channel,
            session_id=mfa.id,
            sequence=mfa.sequence,
            build=lambda event_id: status_payload(event_id, change),
            now=now,
        )

    def on_decision(self, session: Session, ctx: DecisionContext, decision: Decision) -> None:
        if not self._endpoint_filters(session, ctx.client_id):
            return  # most decisions: a client without endpoints pays one cached lookup
        challenge = decision.challenge
        account_id = (ctx.body.get("account") or {}).get("id")
        self.publish(
            session,
            client_id=ctx.client_id,
            event_type=EventType.DECISION_CREATED,
            channel=challenge.channel if challenge else None,
            session_id=None,
            sequence=None,
            build=lambda event_id: decision_payload(
                event_id,
                client_id=ctx.client_id,
                decision_id=ctx.decision_id,
                request_type=ctx.event_type,
                decision=decision,
                account_id=account_id,
                occurred_at=ctx.now,
            ),
            now=ctx.now,
        )

    def on_breaker_transition(self, session: Session, change: BreakerFacts) -> None:
        if not self._endpoint_filters(session, change.client_id):
            return
        self.publish(
            session,
            client_id=change.client_id,
            event_type=EventType.SMS_BREAKER_CHANGED,
            channel="SMS",
            session_id=None,
            sequence=None,
            build=lambda event_id: breaker_payload(event_id, change),
            now=change.occurred_at,
        )

    def publish(
        self,
        session: Session,
        *,
        client_id: str,
        event_type: EventType,
        channel: str | None,
        session_id: str | None,
        sequence: int | None,
        build: Callable[[str], dict[str, Any]],
        now: datetime,
    ) -> str | None:
        """Write the event and its fan-out rows; returns the event id, or None when no endpoint wants it
        (then nothing is written: clients without webhooks pay one indexed read per change)."""
        targets = matching(self._endpoint_filters(session, client_id), event_type.value, channel)
        if not targets:
            return None
        event_id = new_uuid()
        # Append-only rows nothing reads back in this transaction: inserted at commit, many per statement
        # when requests share a transaction (db.deferred.DeferredWrites). The event goes first (the deliveries
        # reference it), and since its table is deferred first, it is inserted first.
        DeferredWrites.of(session).insert(
            events_table,
            [
                {
                    "id": event_id,
                    "client_id": client_id,
                    "event_type": event_type.value,
                    "session_id": session_id,
                    "sequence": sequence,
                    "channel": channel,
                    "body": encode(build(event_id)),
                    "created_at": now,
                }
            ],
        )
        DeferredWrites.of(session).insert(
            deliveries_table,
            [
                {
                    "id": new_uuid(),
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "client_id": client_id,
                    "session_id": session_id,
                    "sequence": sequence,
                    "status": DeliveryStatus.PENDING.value,
                    "tries": 0,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for endpoint_id in targets
            ],
        )
        self.metrics.events.labels(event_type.value).inc()
        # Read after commit to wake an in-process worker at once (bootstrap.WorkNotifier).
        session.info["work_queued"] = True
        return event_id

    def publish_test(self, session: Session, *, client_id: str, endpoint_id: str, now: datetime) -> str:
        """A `Webhook.Test` event for one endpoint, whatever it subscribes to; returns the event id."""
        event_id = new_uuid()
        session.execute(
            events_table.insert().values(
                id=event_id,
                client_id=client_id,
                event_type=TEST_EVENT_TYPE,
                session_id=None,
                sequence=None,
                channel=None,
                body=encode(
                    ping_payload(event_id, client_id=client_id, endpoint_id=endpoint_id, occurred_at=now)
                ),
                created_at=now,
            )
        )
        session.execute(
            deliveries_table.insert().values(
                id=new_uuid(),
                event_id=event_id,
                endpoint_id=endpoint_id,
                client_id=client_id,
                session_id=None,
                sequence=None,
                status=DeliveryStatus.PENDING.value,
                tries=0,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        self.metrics.events.labels(TEST_EVENT_TYPE).inc()
        session.info["work_queued"] = True
        return event_id
