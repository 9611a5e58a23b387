"""SmsBreakerService without a database: what it counts, what it lets through when its store fails or is
contended, and what it writes (deferred) and announces on a state change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from passgate.auth.sms_breaker import BreakerConfig
from passgate.db.deferred import DeferredWrites
from passgate.mfa.breaker import BreakerState, BreakerStoreUnavailable, Counts, MemoryBreakerStore
from passgate.mfa.breaker_services import BreakerTransition, SmsBreakerService
from passgate.mfa.models import SmsBreaker, SmsBreakerTransition

NOW = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
GB = "+447400123456"
CONFIG = BreakerConfig(mode="enforce", min_sends=3, min_conversion=0.5, cool_down_seconds=300, probe_sends=2)


@dataclass
class FakeSession:
    """All the service touches of a session on these paths: `info`, where deferred writes are kept."""

    info: dict[Any, Any] = field(default_factory=dict)


@dataclass
class Metrics:
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def breaker_transition(self, country: str, to_state: str, mode: str) -> None:
        self.calls.append(("transition", country, to_state, mode))

    def breaker_refusal(self, country: str) -> None:
        self.calls.append(("refusal", country))

    def breaker_outage(self) -> None:
        self.calls.append(("outage",))


class DownStore(MemoryBreakerStore):
    backend = "down"

    def read(self, key: str, earliest: float, now: float) -> Any:
        raise BreakerStoreUnavailable("connection refused")


class ContendedStore(MemoryBreakerStore):
    """Another process always moves the breaker first."""

    def swap(self, key: str, old: BreakerState, new: BreakerState) -> bool:
        return False


def test_off_counts_nothing_and_refuses_nothing() -> None:
    store = MemoryBreakerStore()
    service = SmsBreakerService(store=store)
    off = BreakerConfig(mode="off", min_sends=1)
    assert all(service.admit(FakeSession(), "c1", GB, off, NOW) for _ in range(5))  # type: ignore[arg-type]
    assert store.counts("c1:GB", 0, NOW.timestamp()) == Counts()


def test_a_number_without_a_country_is_not_judged() -> None:
    store = MemoryBreakerStore()
    service = SmsBreakerService(store=store)
    assert service.admit(FakeSession(), "c1", "+80012345678", CONFIG, NOW)  # type: ignore[arg-type]
    assert store._buckets == {}


def test_a_store_outage_lets_the_send_go_and_is_counted() -> None:
    metrics = Metrics()
    service = SmsBreakerService(store=DownStore(), metrics=metrics)
    assert service.admit(FakeSession(), "c1", GB, CONFIG, NOW)  # type: ignore[arg-type]
    assert metrics.calls == [("outage",)]


def test_a_contended_breaker_lets_the_send_go() -> None:
    store = ContendedStore()
    for _ in range(3):
        store.count("c1:GB", "sent", NOW.timestamp())
    service = SmsBreakerService(store=store)
    session = FakeSession()
    assert service.admit(session, "c1", GB, CONFIG, NOW)  # type: ignore[arg-type]
    assert not DeferredWrites.of(session)  # type: ignore[arg-type]  # no change recorded: none was stored


def test_a_change_is_deferred_to_the_commit_and_announced() -> None:
    store = MemoryBreakerStore()
    metrics = Metrics()
    heard: list[BreakerTransition] = []
    service = SmsBreakerService(store=store, metrics=metrics, listeners=[lambda _s, t: heard.append(t)])
    session = FakeSession()
    for _ in range(3):
        assert service.admit(session, "c1", GB, CONFIG, NOW)  # type: ignore[arg-type]
    writes = DeferredWrites.of(session)  # type: ignore[arg-type]
    assert not writes
    assert not service.admit(session, "c1", GB, CONFIG, NOW + timedelta(seconds=5))  # type: ignore[arg-type]
    [change] = heard
    assert (change.country, change.from_state, change.to_state, change.mode) == (
        "GB",
        "closed",
        "open",
        "enforce",
    )
    assert (change.sent, change.verified, change.conversion, change.sequence) == (3, 0, 0.0, 1)
    assert change.probe_at == NOW + timedelta(seconds=305)
    [transition] = writes.inserts[SmsBreakerTransition.__table__]
    assert (transition["from_status"], transition["to_status"], transition["sent"]) == ("closed", "open", 3)
    [(key, [row])] = list(writes.upserts.items())
    assert key[0] is SmsBreaker.__table__ and row["status"] == "open" and row["probe_at"] == change.probe_at
    assert metrics.calls == [("transition", "GB", "open", "enforce"), ("refusal", "GB")]
    # Another client's breaker for the same country is its own.
    assert service.admit(session, "c2", GB, CONFIG, NOW)  # type: ignore[arg-type]
