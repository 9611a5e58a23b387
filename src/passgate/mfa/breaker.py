"""The SMS pumping breaker: per client and destination country, sends and verifications counted over a
sliding window; when conversion (verified / sent) collapses with enough volume the country's breaker
opens, and in `enforce` mode new SMS to it are refused until a cool-down has passed and a few probe sends
have verified again.

This module is the breaker's domain: its states, the pure functions that move them (`on_send`,
`on_verified`: no clock, no I/O, every input given), and the port its counts and states are kept behind
(`BreakerStore`, with `MemoryBreakerStore` for one process; `mfa.breaker_redis.RedisBreakerStore` for
several). `mfa.breaker_services.SmsBreakerService` runs it inside challenges and verifications and records
each state change durably (docs/mfa.md, "SMS pumping breaker").

States:

```
closed --(sent >= minSends and verified/sent < minConversion in the window)--> open
open --(coolDownSeconds passed, at the next send)--> half_open
half_open --(ceil(minConversion * probeSends) verified)--> closed
half_open --(probeSends sent and PROBE_WAIT_SECONDS passed without them)--> open
```
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Protocol

import phonenumbers

from passgate.auth.sms_breaker import BreakerConfig, BreakerMode

# The width of a counting bucket: the window slides by this much.
BUCKET_SECONDS = 60
# How long a half-open breaker waits for its probes to verify once they are all sent (the default SMS
# code and link lifetime): a probe unverified by then is taken as pumped.
PROBE_WAIT_SECONDS = 600
# The reason a refused challenge carries (`mfa.error` RATE_LIMITED).
REFUSAL_REASON = "COUNTRY_BREAKER_OPEN"


class BreakerStatus(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The only moves a breaker makes (tests/unit/mfa/test_breaker.py walks them all).
TRANSITIONS: frozenset[tuple[BreakerStatus, BreakerStatus]] = frozenset(
    {
        (BreakerStatus.CLOSED, BreakerStatus.OPEN),
        (BreakerStatus.OPEN, BreakerStatus.HALF_OPEN),
        (BreakerStatus.HALF_OPEN, BreakerStatus.CLOSED),
        (BreakerStatus.HALF_OPEN, BreakerStatus.OPEN),
    }
)


@dataclass(frozen=True)
class BreakerState:
    """One country's breaker. `since` is when it entered its status (seconds since the epoch); a closed
    breaker judges only what was counted since then, so the wave that opened it is not held against it
    once it closed again. `version` moves with every change (the store's compare-and-set)."""

    status: BreakerStatus = BreakerStatus.CLOSED
    since: float = 0.0
    probes_sent: int = 0
    probes_verified: int = 0
    version: int = 0

    def encode(self) -> str:
        return json.dumps({**asdict(self), "status": self.status.value}, sort_keys=True)

    @classmethod
    def decode(cls, text: str | bytes | None) -> BreakerState:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            BreakerStatus(data["status"]),
            float(data["since"]),
            int(data["probes_sent"]),
            int(data["probes_verified"]),
            int(data["version"]),
        )

    def moved(self, status: BreakerStatus, now: float) -> BreakerState:
        return BreakerState(status, now, 0, 0, self.version + 1)


@dataclass(frozen=True)
class Counts:
    sent: int = 0
    verified: int = 0

    @property
    def conversion(self) -> float | None:
        return self.verified / self.sent if self.sent else None


@dataclass(frozen=True)
class SendVerdict:
    """What a send does to the breaker: whether it may go (`allowed`; in monitor mode always), the state
    to store (None when unchanged), the transitions it made on the way, and whether it counts as sent."""

    allowed: bool
    state: BreakerState | None
    moves: tuple[tuple[BreakerStatus, BreakerStatus], ...] = ()
    counted: bool = True


def window_start(state: BreakerState, config: BreakerConfig, now: float) -> float:
    """Where the counting window begins: `windowSeconds` ago, or when the breaker last closed if later."""
    return max(now - config.window_seconds, state.since)


def tripped(counts: Counts, config: BreakerConfig) -> bool:
    """Enough volume and too little of it verified."""
    conversion = counts.conversion
    return counts.sent >= config.min_sends and conversion is not None and conversion < config.min_conversion


def probes_needed(config: BreakerConfig) -> int:
    return max(1, math.ceil(config.min_conversion * config.probe_sends))


def on_send(state: BreakerState, counts: Counts, config: BreakerConfig, now: float) -> SendVerdict:
    """A send to the country is about to be accepted; `counts` are those of its window (`window_start`)
    before it. Monitor mode moves the breaker exactly as enforce does but refuses nothing."""
    enforce = config.mode == BreakerMode.ENFORCE
    moves: list[tuple[BreakerStatus, BreakerStatus]] = []
    current = state
    if current.status == BreakerStatus.CLOSED:
        if not tripped(counts, config):
            return SendVerdict(True, None)
        moves.append((current.status, BreakerStatus.OPEN))
        current = current.moved(BreakerStatus.OPEN, now)
        return SendVerdict(not enforce, current, tuple(moves), counted=not enforce)
    if current.status == BreakerStatus.OPEN:
        if now < current.since + config.cool_down_seconds:
            return SendVerdict(not enforce, None, counted=not enforce)
        moves.append((current.status, BreakerStatus.HALF_OPEN))
        current = current.moved(BreakerStatus.HALF_OPEN, now)
    # Half-open: a few probes go; once all are out, the breaker waits for them to verify.
    if current.probes_sent < config.probe_sends:
        current = replace(current, probes_sent=current.probes_sent + 1, version=current.version + 1)
        return SendVerdict(True, current, tuple(moves))
    if now >= current.since + PROBE_WAIT_SECONDS and current.probes_verified < probes_needed(config):
        moves.append((current.status, BreakerStatus.OPEN))
        current = current.moved(BreakerStatus.OPEN, now)
        return SendVerdict(not enforce, current, tuple(moves), counted=not enforce)
    return SendVerdict(not enforce, current if moves else None, tuple(moves), counted=not enforce)


def on_verified(state: BreakerState, config: BreakerConfig, now: float) -> BreakerState | None:
    """An SMS challenge to the country was verified: the new state, or None when unchanged. While half-open
    every verification counts as a probe's (a session sent before the breaker opened proves the route
    works as well as a probe does)."""
    if state.status != BreakerStatus.HALF_OPEN:
        return None
    verified = state.probes_verified + 1
    if verified >= probes_needed(config):
        return state.moved(BreakerStatus.CLOSED, now)
    return replace(state, probes_verified=verified, version=state.version + 1)


def country_of(e164: str) -> str | None:
    """The ISO country of a normalised phone number (None when it has none, e.g. a non-geographic one)."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None
    # "ZZ": unknown; "001": non-geographic (international freephone, satellite): no country to judge.
    return region if region and region not in {"ZZ", "001"} else None


def bucket_of(moment: float) -> int:
    return int(moment // BUCKET_SECONDS)


def buckets_between(start: float, now: float) -> Iterator[int]:
    """The buckets the window [start, now] covers: a bucket that began before `start` is left out unless
    `now` is in it, so a count is never older than the window (it may be up to a bucket younger)."""
    first, last = bucket_of(start), bucket_of(now)
    if first * BUCKET_SECONDS < start and first < last:
        first += 1
    return iter(range(first, last + 1))


def counts_in(buckets: Mapping[int, tuple[int, int]], start: float, now: float) -> Counts:
    """The sums of the buckets (sent, verified per bucket) that the window [start, now] covers."""
    sent = verified = 0
    for b in buckets_between(start, now):
        pair = buckets.get(b)
        if pair:
            sent += pair[0]
            verified += pair[1]
    return Counts(sent, verified)


class BreakerStoreUnavailable(Exception):
    """The store could not be reached (the breaker then lets the send go, uncounted)."""


class BreakerStore(Protocol):
    """Where the counts and the states are kept, shared by every process that should see the same
    breaker. Keys are `client_id:country`."""

    backend: str

    def count(self, key: str, kind: str, now: float) -> None:
        """One more `sent` or `verified` in the bucket of `now`."""
        ...

    def counts(self, key: str, start: float, now: float) -> Counts:
        """What was counted in the buckets from `start` to `now` (`buckets_between`)."""
        ...

    def state(self, key: str) -> BreakerState: ...

    def read(self, key: str, earliest: float, now: float) -> tuple[BreakerState, dict[int, tuple[int, int]]]:
        """The state and the buckets from `earliest` to `now` at once (one round trip where that
        matters): what a send is judged on, the window chosen from the state with `counts_in`."""
        ...

    def swap(self, key: str, old: BreakerState, new: BreakerState) -> bool:
        """Store `new` only if the state is still `old` (False when another process moved it first)."""
        ...


class MemoryBreakerStore:
    """This process's breakers (the embedded deployment, or one without Redis)."""

    backend = "memory"
    # Buckets older than this are dropped as keys are written: no window is longer.
    keep_seconds = 86400 + BUCKET_SECONDS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._states: dict[str, str] = {}

    def count(self, key: str, kind: str, now: float) -> None:
        index = 0 if kind == "sent" else 1
        with self._lock:
            buckets = self._buckets.setdefault(key, {})
            buckets.setdefault(bucket_of(now), [0, 0])[index] += 1
            oldest = bucket_of(now - self.keep_seconds)
            for b in [b for b in buckets if b < oldest]:
                del buckets[b]

    def counts(self, key: str, start: float, now: float) -> Counts:
        with self._lock:
            buckets = self._buckets.get(key, {})
            return counts_in({b: (p[0], p[1]) for b, p in buckets.items()}, start, now)

    def read(self, key: str, earliest: float, now: float) -> tuple[BreakerState, dict[int, tuple[int, int]]]:
        with self._lock:
            buckets = self._buckets.get(key, {})
            first, last = bucket_of(earliest), bucket_of(now)
            window = {b: (p[0], p[1]) for b, p in buckets.items() if first <= b <= last}
            return BreakerState.decode(self._states.get(key)), window

    def state(self, key: str) -> BreakerState:
        with self._lock:
            return BreakerState.decode(self._states.get(key))

    def swap(self, key: str, old: BreakerState, new: BreakerState) -> bool:
        with self._lock:
            if BreakerState.decode(self._states.get(key)) != old:
                return False
            self._states[key] = new.encode()
            return True
