"""Claiming due webhook deliveries: which rows a worker may send now, marked SENDING under a token.

A claim respects each endpoint's concurrency, counted from the database's SENDING rows so the limit holds
across worker processes, and the order of a session's events (a later one waits while an earlier one is
under way). Rows whose worker died mid-try are taken back once their lock expires; a worker that stops
hands its rows back at once (`Claimer.release`). The statements are in `webhooks.queries`.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db import read_only, transaction
from passgate.webhooks import queries
from passgate.webhooks.credentials import DeliveryCredentials
from passgate.webhooks.events import SignatureScheme
from passgate.webhooks.states import RETRY_SCHEDULE

log = logging.getLogger("passgate.webhooks")


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    lock_seconds: int = 60
    endpoint_concurrency: int = 8
    max_in_flight: int = 64
    disable_after: timedelta = timedelta(days=5)
    retention: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    token: str
    endpoint_id: str
    client_id: str
    event_id: str
    url: str
    scheme: str
    body: bytes
    attempt: int  # every try ever made, this one included
    secrets: tuple[str, ...] = field(repr=False, default=())
    key_id: str | None = None


class Claimer:
    """Claims due deliveries for one worker process, with what each needs to be signed and sent."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        credentials: DeliveryCredentials,
        policy: DeliveryPolicy,
        worker_id: str,
        rng: random.Random,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.credentials = credentials
        self.policy = policy
        self.worker_id = worker_id
        self.rng = rng
        self._next_reclaim = 0.0

    def claim(self, limit: int) -> list[Claimed]:
        """Mark up to `limit` due deliveries SENDING (within each endpoint's free slots) and return what is
        needed to send them."""
        now = self.clock.now()
        if not self._anything_to_claim(now):
            return []
        with transaction(self.sessions) as session:
            return self.claim_in(session, limit, now)

    def _anything_to_claim(self, now: datetime) -> bool:
        """Whether a claim would find anything (a due delivery, or, when it is time to look, one whose
        worker died), read without SQLite's write lock: the worker asks on every round, and on SQLite a
        claim that finds nothing would still hold the lock the API's decisions wait for (on a thread of
        its own, for as long as that thread waits for the GIL)."""
        with read_only(self.sessions) as session:
            conn = session.connection()
            if queries.anything_due(conn, now):
                return True
            if time.monotonic() < self._next_reclaim:
                return False
            if queries.anything_stale(conn, now):
                return True
        self._next_reclaim = time.monotonic() + min(1.0, self.policy.lock_seconds / 4)
        return False

    def claim_in(self, session: Session, limit: int, now: datetime) -> list[Claimed]:
        """The claim, inside the caller's transaction (the record's group commit claims this way too)."""
        # Prepared Core statements (webhooks.queries), not the ORM: this runs for every few deliveries.
        conn = session.connection()
        if time.monotonic() >= self._next_reclaim:
            # Expired locks are rare (a worker died): look for them now and then, not on every claim.
            self._next_reclaim = time.monotonic() + min(1.0, self.policy.lock_seconds / 4)
            self._reclaim_expired(session, now)
        busy = queries.busy_counts(conn)
        endpoint_ids = queries.due_endpoints(conn, now)
        # Shuffled so that, when the process limit cuts a round short, no endpoint always goes last.
        self.rng.shuffle(endpoint_ids)
        ids: list[str] = []
        for endpoint_id in endpoint_ids:
            room = min(self.policy.endpoint_concurrency - busy.get(endpoint_id, 0), limit - len(ids))
            if room <= 0:
                if len(ids) >= limit:
                    break
                continue
            ids.extend(queries.pick(conn, endpoint_id, now, room))
        if not ids:
            return []
        token = secrets.token_hex(16)  # this claim's: only its holder may record the outcomes
        until = now + timedelta(seconds=self.policy.lock_seconds)
        queries.mark_sending(conn, ids, until, self.worker_id[:64], token)
        return [self._claimed(session, row, token, now) for row in queries.load_claimed(conn, ids)]

    def _claimed(self, session: Session, row: queries.ClaimRow, token: str, now: datetime) -> Claimed:
        key_id = None
        signing_secrets: tuple[str, ...] = ()
        if row.signature_scheme == SignatureScheme.KOUNT:
            key_id = self.credentials.active_key(session, row.client_id)
        else:
            signing_secrets = self.credentials.secrets(
                row.endpoint_id,
                row.sealed_secret,
                row.sealed_previous_secret,
                row.previous_secret_until,
                now,
            )
        return Claimed(
            delivery_id=row.id,
            token=token,
            endpoint_id=row.endpoint_id,
            client_id=row.client_id,
            event_id=row.event_id,
            url=row.url,
            scheme=row.signature_scheme,
            body=row.body.encode(),
            attempt=row.attempts,
            secrets=signing_secrets,
            key_id=key_id,
        )

    def _reclaim_expired(self, session: Session, now: datetime) -> None:
        """Take back rows whose worker died mid-try (their lock expired) and log that try as lost."""
        count = queries.reclaim_expired(
            session, now, "the worker stopped mid-delivery", self.policy.lock_seconds
        )
        if count:
            log.warning("webhook deliveries taken back from a stopped worker", extra={"count": count})

    def release(self, c: Claimed) -> None:
        """Put a claimed delivery back (PENDING, due now) if this claim still holds it."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            queries.release(
                session,
                c.delivery_id,
                c.token,
                c.attempt,
                self.worker_id[:64],
                now,
                "the worker stopped mid-delivery",
            )
