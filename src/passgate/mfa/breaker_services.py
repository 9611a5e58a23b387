"""The SMS pumping breaker at work: asked before each SMS challenge is sent (`admit`), told of each SMS
verification (`on_mfa_status`, a status listener), and the one writer of the breaker's durable record.

The counts and states live in the `BreakerStore` (memory or Redis, shared by every process); each state
change is written in the caller's transaction: the breaker's row (`sms_breakers`), a transition row, and
through the transition listeners the `SmsBreaker.StateChanged` webhook event, so the event exists exactly
when the change that caused it was committed. A change is also counted in
`passgate_sms_breaker_transitions_total` and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from passgate.auth.sms_breaker import DEFAULT_BREAKER, BreakerConfig, BreakerMode
from passgate.db.deferred import DeferredWrites
from passgate.ids import new_uuid
from passgate.mfa.breaker import (
    BreakerStatus,
    BreakerStore,
    BreakerStoreUnavailable,
    Counts,
    country_of,
    counts_in,
    on_send,
    on_verified,
    window_start,
)
from passgate.mfa.models import MfaSession, SmsBreaker, SmsBreakerTransition

if TYPE_CHECKING:
    from passgate.mfa.queries import SessionSnapshot

log = logging.getLogger("passgate.mfa.breaker")

# Tries of a compare-and-set before a send is let go uncounted (other processes kept moving the breaker).
_SWAP_TRIES = 5


@dataclass(frozen=True)
class BreakerTransition:
    """One state change of one client's breaker for one country, as recorded and announced."""

    client_id: str
    country: str
    from_state: str
    to_state: str
    mode: str
    sent: int
    verified: int
    window_seconds: int
    occurred_at: datetime
    probe_at: datetime | None  # when an open breaker starts probing
    # The breaker's version after the change: orders the changes of one breaker (times may be equal).
    sequence: int

    @property
    def conversion(self) -> float | None:
        return round(self.verified / self.sent, 4) if self.sent else None


class BreakerMetrics(Protocol):
    def breaker_transition(self, country: str, to_state: str, mode: str) -> None: ...
    def breaker_refusal(self, country: str) -> None: ...
    def breaker_outage(self) -> None: ...


TransitionListener = Callable[[Session, BreakerTransition], None]

_DESTINATION = select(MfaSession.destination, MfaSession.sandbox).where(MfaSession.id == bindparam("id"))


@dataclass
class SmsBreakerService:
    store: BreakerStore
    metrics: BreakerMetrics | None = None
    listeners: list[TransitionListener] = field(default_factory=list)
    # A client's breaker settings, as the challenge path reads them (`MfaService`'s cached config).
    config_of: Callable[[Session, str], BreakerConfig] = lambda _session, _client_id: DEFAULT_BREAKER

    def admit(
        self, session: Session, client_id: str, destination: str, config: BreakerConfig, now: datetime
    ) -> bool:
        """Whether an SMS challenge to `destination` may be sent (always, but in enforce mode with the
        country's breaker open); counts it as sent when it goes, and records any state change."""
        if config.mode == BreakerMode.OFF:
            return True
        country = country_of(destination)
        if country is None:
            return True
        key, ts = f"{client_id}:{country}", now.timestamp()
        try:
            for _ in range(_SWAP_TRIES):
                state, buckets = self.store.read(key, ts - config.window_seconds, ts)
                counts = counts_in(buckets, window_start(state, config, ts), ts)
                verdict = on_send(state, counts, config, ts)
                if verdict.state is None or self.store.swap(key, state, verdict.state):
                    break
            else:
                log.warning("sms breaker busy; send let through", extra={"country": country})
                return True
            if verdict.counted:
                self.store.count(key, "sent", ts)
        except BreakerStoreUnavailable:
            self._outage()
            return True
        for old, new in verdict.moves:
            assert verdict.state is not None  # a move always comes with the state it made
            probe = ts + config.cool_down_seconds if new == BreakerStatus.OPEN else None
            self._record(
                session, client_id, country, old, new, config, counts, now, probe, verdict.state.version
            )
        if not verdict.allowed:
            log.info("challenge refused: COUNTRY_BREAKER_OPEN", extra={"country": country})
            if self.metrics is not None:
                self.metrics.breaker_refusal(country)
        return verdict.allowed

    def on_mfa_status(
        self, session: Session, mfa: SessionSnapshot, old: str | None, new: str, now: datetime
    ) -> None:
        """A status listener: an SMS session verified counts for its country."""
        if new != "VERIFIED" or mfa.channel != "SMS":
            return
        config = self.config_of(session, mfa.client_id)
        if config.mode == BreakerMode.OFF:
            return
        row = session.connection().execute(_DESTINATION, {"id": mfa.id}).first()
        if row is None or row.sandbox:
            return
        country = country_of(row.destination)
        if country is None:
            return
        key, ts = f"{mfa.client_id}:{country}", now.timestamp()
        try:
            self.store.count(key, "verified", ts)
            for _ in range(_SWAP_TRIES):
                state = self.store.state(key)
                moved = on_verified(state, config, ts)
                if moved is None:
                    return
                if self.store.swap(key, state, moved):
                    break
            else:
                return
            counts = self.store.counts(key, window_start(state, config, ts), ts)
        except BreakerStoreUnavailable:
            self._outage()
            return
        if moved.status != state.status:
            self._record(
                session,
                mfa.client_id,
                country,
                state.status,
                moved.status,
                config,
                counts,
                now,
                None,
                moved.version,
            )

    def _outage(self) -> None:
        log.warning("sms breaker store unreachable; send let through uncounted")
        if self.metrics is not None:
            self.metrics.breaker_outage()

    def _record(
        self,
        session: Session,
        client_id: str,
        country: str,
        old: BreakerStatus,
        new: BreakerStatus,
        config: BreakerConfig,
        counts: Counts,
        now: datetime,
        probe_ts: float | None,
        sequence: int,
    ) -> None:
        probe_at = datetime.fromtimestamp(probe_ts, UTC) if probe_ts is not None else None
        change = BreakerTransition(
            client_id=client_id,
            country=country,
            from_state=old.value,
            to_state=new.value,
            mode=config.mode,
            sent=counts.sent,
            verified=counts.verified,
            window_seconds=config.window_seconds,
            occurred_at=now,
            probe_at=probe_at,
            sequence=sequence,
        )
        writes = DeferredWrites.of(session)
        row: dict[str, Any] = {
            "client_id": client_id,
            "country": country,
            "status": new.value,
            "mode": config.mode,
            "sent": counts.sent,
            "verified": counts.verified,
            "changed_at": now,
            "probe_at": probe_at,
        }
        writes.upsert(
            SmsBreaker.__table__,
            row,
            ("client_id", "country"),
            ("status", "mode", "sent", "verified", "changed_at", "probe_at"),
        )
        writes.insert(
            SmsBreakerTransition.__table__,
            [
                {
                    "id": new_uuid(),
                    "client_id": client_id,
                    "country": country,
                    "from_status": old.value,
                    "to_status": new.value,
                    "mode": config.mode,
                    "sent": counts.sent,
                    "verified": counts.verified,
                    "occurred_at": now,
                }
            ],
        )
        log.warning(
            "sms breaker %s -> %s",
            old.value,
            new.value,
            extra={"country": country, "mode": config.mode, "sent": counts.sent, "verified": counts.verified},
        )
        if self.metrics is not None:
            self.metrics.breaker_transition(country, new.value, config.mode)
        for listener in self.listeners:
            listener(session, change)


# -- what the console shows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerRow:
    country: str
    status: str
    mode: str
    sent: int
    verified: int
    changed_at: datetime
    probe_at: datetime | None


def tripped_breakers(session: Session, client_id: str) -> list[BreakerRow]:
    """The client's breakers last recorded open or half-open, most recent first (the overview's banner)."""
    rows = session.execute(
        select(SmsBreaker)
        .where(SmsBreaker.client_id == client_id, SmsBreaker.status != BreakerStatus.CLOSED.value)
        .order_by(SmsBreaker.changed_at.desc())
    ).scalars()
    return [
        BreakerRow(r.country, r.status, r.mode, r.sent, r.verified, r.changed_at, r.probe_at) for r in rows
    ]


def recent_transitions(session: Session, client_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The client's latest breaker state changes, newest first (the settings page's history)."""
    rows = session.execute(
        select(SmsBreakerTransition)
        .where(SmsBreakerTransition.client_id == client_id)
        .order_by(SmsBreakerTransition.occurred_at.desc(), SmsBreakerTransition.id)
        .limit(limit)
    ).scalars()
    return [
        {
            "country": r.country,
            "from": r.from_status,
            "to": r.to_status,
            "mode": r.mode,
            "sent": r.sent,
            "verified": r.verified,
            "at": r.occurred_at,
        }
        for r in rows
    ]
