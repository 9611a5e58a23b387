"""Recording the outcomes of webhook tries: delivered, retried later, or given up; endpoints disabled.

Outcomes of tries that finish together are written in one transaction (a group commit), which also claims
the next deliveries for the slots those tries free. A success resets the endpoint's failure run; a 410
disables the endpoint at once, and so does a run of failures that has lasted `DeliveryPolicy.disable_after`.
Only the holder of the current claim moves a delivery on. The statements are in `webhooks.queries`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db import transaction
from passgate.webhooks import queries
from passgate.webhooks.claims import Claimed, Claimer, DeliveryPolicy
from passgate.webhooks.metrics import WebhookMetrics
from passgate.webhooks.outbox import endpoints_changed
from passgate.webhooks.states import DisabledReason, is_success, parse_retry_after, retry_delay

log = logging.getLogger("passgate.webhooks")

PENDING = queries.PENDING
SENDING = queries.SENDING
DELIVERED = queries.DELIVERED
FAILED = queries.FAILED


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    started_at: datetime
    latency_ms: float
    status_code: int | None
    retry_after: str | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and is_success(self.status_code)


@dataclass
class _EndpointState:
    """An endpoint's failure bookkeeping while a batch of outcomes is applied."""

    id: str
    enabled: bool
    failing_since: datetime | None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    disabled: DisabledReason | None = None
    touched: bool = False


class OutcomeRecorder:
    """Writes a batch of outcomes (attempt log, delivery moves, endpoint state) and counts them."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        claimer: Claimer,
        metrics: WebhookMetrics,
        policy: DeliveryPolicy,
        worker_id: str,
        rng: random.Random,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.claimer = claimer
        self.metrics = metrics
        self.policy = policy
        self.worker_id = worker_id
        self.rng = rng

    def record(self, outcomes: Sequence[Outcome], claim_limit: int = 0) -> list[Claimed]:
        """Write the outcomes of finished tries, then claim up to `claim_limit` due deliveries, in one
        transaction (Core statements: this is the hot path)."""
        now = self.clock.now()
        results: list[tuple[Outcome, str]] = []
        with transaction(self.sessions) as session:
            conn = session.connection()
            current = queries.current_states(conn, [o.claimed.delivery_id for o in outcomes])
            endpoints = {
                row.id: _EndpointState(row.id, row.enabled, row.failing_since)
                for row in queries.endpoint_rows(conn, list({o.claimed.endpoint_id for o in outcomes}))
            }
            attempts: list[dict[str, Any]] = []
            moves: list[queries.Move] = []
            for o in sorted(outcomes, key=lambda o: o.started_at):
                row = current.get(o.claimed.delivery_id)
                if row is None:
                    continue  # the endpoint was deleted meanwhile
                endpoint = endpoints.get(o.claimed.endpoint_id)
                # The endpoint first: a 410 or the 5-day rule disables it, and a disabled one is not retried.
                if endpoint is not None:
                    self._track(endpoint, o, now)
                next_at = None
                if o.delivered:
                    result = "delivered"
                else:
                    delay = None
                    if o.status_code != 410 and endpoint is not None and endpoint.enabled:
                        retry_after = parse_retry_after(o.retry_after, now)
                        delay = retry_delay(row.tries, self.policy.retry_schedule, retry_after, self.rng)
                    result = "failed" if delay is None else "retry"
                    if delay is not None:
                        next_at = now + timedelta(seconds=delay)
                attempts.append(
                    {
                        "delivery_id": row.id,
                        "attempt": o.claimed.attempt,
                        "result": result,
                        "status_code": o.status_code,
                        "latency_ms": o.latency_ms,
                        "error": o.error[:500] if o.error else None,
                        "worker": self.worker_id[:64],
                        "started_at": o.started_at,
                        "finished_at": now,
                        "next_attempt_at": next_at,
                    }
                )
                results.append((o, result))
                # Only the holder of the current claim moves the delivery on (a worker whose lock expired
                # while it was still trying just logs its try).
                if row.status == SENDING and row.lock_token == o.claimed.token:
                    moves.append(
                        queries.Move(
                            delivery_id=row.id,
                            status={"delivered": DELIVERED, "retry": PENDING}.get(result, FAILED),
                            next_attempt_at=next_at,
                            delivered_at=now if o.delivered else None,
                            status_code=o.status_code,
                            error=None if o.delivered else (o.error or "")[:500],
                        )
                    )
            if moves:
                queries.move(conn, moves)
            if attempts:
                queries.log_attempts(conn, attempts)
            for endpoint in endpoints.values():
                self._save_endpoint(session, endpoint, now)
            claimed = self.claimer.claim_in(session, claim_limit, now) if claim_limit > 0 else []
        self._count(results)
        return claimed

    def _count(self, results: Sequence[tuple[Outcome, str]]) -> None:
        for o, result in results:
            c = o.claimed
            self.metrics.deliveries.labels(c.client_id, c.endpoint_id, result).inc()
            self.metrics.global_deliveries.labels(result).inc()
            if o.status_code is not None:
                self.metrics.latency.labels(c.client_id, c.endpoint_id).observe(o.latency_ms / 1000)

    def _track(self, e: _EndpointState, o: Outcome, now: datetime) -> None:
        """Success resets the failure run; 410 disables at once, and so does a run of failures that has
        lasted `disable_after` (5 days)."""
        e.touched = True
        if o.delivered:
            e.last_success_at = now
            e.failing_since = None
            return
        e.last_failure_at = now
        if e.failing_since is None:
            e.failing_since = o.started_at
        if not e.enabled:
            return
        if o.status_code == 410:
            e.disabled = DisabledReason.GONE
        elif now - e.failing_since >= self.policy.disable_after:
            e.disabled = DisabledReason.FAILING
        if e.disabled is not None:
            e.enabled = False

    def _save_endpoint(self, session: Session, e: _EndpointState, now: datetime) -> None:
        if not e.touched:
            return
        values: dict[str, Any] = {"failing_since": e.failing_since}
        if e.last_success_at is not None:
            values["last_success_at"] = e.last_success_at
        if e.last_failure_at is not None:
            values["last_failure_at"] = e.last_failure_at
        if e.disabled is not None:
            values.update(enabled=False, disabled_reason=e.disabled.value, disabled_at=now, updated_at=now)
        queries.save_endpoint(session, e.id, values)
        if e.disabled is not None:
            endpoints_changed()
            given_up = queries.give_up_waiting(session, e.id, e.disabled)
            self.metrics.disabled.labels(e.disabled.value).inc()
            log.warning(
                "webhook endpoint disabled",
                extra={"endpointId": e.id, "reason": e.disabled.value, "givenUp": given_up},
            )
