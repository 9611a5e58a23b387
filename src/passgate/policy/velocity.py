"""Velocity counters: how many logins, failed attempts, account openings and challenges an account, IP,
device or email had in the last hour and day. Sliding windows, in Redis when configured, else the database.

Counts are of events *before* the current request. Times come from the injected clock, so windows slide
with a frozen clock in tests exactly as with the real one. The counters a condition can read, and which of
them a set reads, are catalogued in `fields`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import delete
from sqlalchemy.orm import Session

from passgate.db.deferred import DeferredWrites
from passgate.policy import queries
from passgate.policy.fields import DIMENSIONS, METRICS, WINDOWS, Need
from passgate.policy.models import VelocityCounter


@lru_cache(maxsize=50_000)
def _hash(client_id: str, dimension: str, key: str) -> str:
    # Keys are personal data; the counters need only to tell them apart.
    return hashlib.sha256(f"{client_id}\x00{dimension}\x00{key}".encode()).hexdigest()[:32]


def empty_counts(needed: frozenset[Need] | None = None) -> dict[str, dict[str, int]]:
    """Zero counts: of every metric, or only of the (dimension, metric) pairs a set reads — the facts
    handed to CEL are converted per request, so they hold what the set reads and nothing more."""
    if needed is None:
        return {d: {f"{m}{w}": 0 for m in METRICS for w in WINDOWS} for d in DIMENSIONS}
    return _zeros(needed)


@lru_cache(maxsize=64)
def _zeros(needed: frozenset[Need]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for d, m in sorted(needed):
        for w in WINDOWS:
            out.setdefault(d, {})[f"{m}{w}"] = 0
    return out


def _fresh(needed: frozenset[Need]) -> dict[str, dict[str, int]]:
    return {d: dict(v) for d, v in _zeros(needed).items()}


class VelocityStore(Protocol):
    backend: str

    def record(
        self, session: Session, client_id: str, metrics: list[str], keys: dict[str, str], now: datetime
    ) -> None: ...

    def counts(
        self, session: Session, client_id: str, keys: dict[str, str], needed: frozenset[Need], now: datetime
    ) -> dict[str, dict[str, int]]: ...

    def purge(self, session: Session, now: datetime) -> int: ...

    def forget(self, session: Session, client_id: str, dimension: str, key: str) -> int:
        """Drop every counter of one key (an account's, on erasure); how many counters went."""
        ...


class DatabaseVelocityStore:
    """Per-minute counters in the database, incremented when the caller's transaction commits.

    Windows slide at one-minute resolution: "the last hour" is the current minute and the 59 before it.
    """

    backend = "database"

    def record(
        self, session: Session, client_id: str, metrics: list[str], keys: dict[str, str], now: datetime
    ) -> None:
        minute = int(now.timestamp()) // 60
        DeferredWrites.of(session).increment(
            VelocityCounter.__table__,
            [(client_id, d, _hash(client_id, d, k), m, minute) for d, k in keys.items() for m in metrics],
        )

    def counts(
        self, session: Session, client_id: str, keys: dict[str, str], needed: frozenset[Need], now: datetime
    ) -> dict[str, dict[str, int]]:
        out = _fresh(needed)
        dims = tuple(sorted({dim for dim, _ in needed if dim in keys}))
        if not dims:
            return out
        now_min = int(now.timestamp()) // 60
        params: dict[str, Any] = {
            "client_id": client_id,
            "day_cut": now_min - WINDOWS["24h"] // 60,
            "hour_cut": now_min - WINDOWS["1h"] // 60,
            "now_min": now_min,
        }
        for i, dim in enumerate(dims):
            params[f"key{i}"] = _hash(client_id, dim, keys[dim])
        for dim, metric, day_count, hour_count in queries.velocity_counts(session.connection(), dims, params):
            counts = out[dim]
            if f"{metric}24h" in counts:
                counts[f"{metric}24h"] = int(day_count or 0)
                counts[f"{metric}1h"] = int(hour_count or 0)
        return out

    def purge(self, session: Session, now: datetime) -> int:
        cut = int(now.timestamp()) // 60 - WINDOWS["24h"] // 60 - 1
        result = session.execute(delete(VelocityCounter).where(VelocityCounter.minute < cut))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def forget(self, session: Session, client_id: str, dimension: str, key: str) -> int:
        result = session.execute(
            delete(VelocityCounter).where(
                VelocityCounter.client_id == client_id,
                VelocityCounter.dimension == dimension,
                VelocityCounter.key_hash == _hash(client_id, dimension, key),
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class RedisVelocityStore:
    """One sorted set per (client, dimension, key, metric), scored by event time; trimmed as it is written."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = "pg:vel:") -> None:
        import redis

        self.redis = redis.Redis.from_url(url)
        self.prefix = prefix

    def _key(self, client_id: str, dim: str, key: str, metric: str) -> str:
        return f"{self.prefix}{client_id}:{dim}:{_hash(client_id, dim, key)}:{metric}"

    def record(
        self, session: Session, client_id: str, metrics: list[str], keys: dict[str, str], now: datetime
    ) -> None:
        ts = now.timestamp()
        pipe = self.redis.pipeline(transaction=True)
        for m in metrics:
            for d, k in keys.items():
                rkey = self._key(client_id, d, k, m)
                pipe.zadd(rkey, {uuid.uuid4().hex: ts})
                pipe.zremrangebyscore(rkey, "-inf", ts - WINDOWS["24h"] - 60)
                pipe.expire(rkey, WINDOWS["24h"] + 120)
        pipe.execute()

    def counts(
        self, session: Session, client_id: str, keys: dict[str, str], needed: frozenset[Need], now: datetime
    ) -> dict[str, dict[str, int]]:
        out = _fresh(needed)
        ts = now.timestamp()
        wanted = [(d, m) for d, m in sorted(needed) if d in keys]
        if not wanted:
            return out
        pipe = self.redis.pipeline(transaction=False)
        for d, m in wanted:
            rkey = self._key(client_id, d, keys[d], m)
            pipe.zcount(rkey, f"({ts - WINDOWS['24h']}", ts)
            pipe.zcount(rkey, f"({ts - WINDOWS['1h']}", ts)
        results = pipe.execute()
        for i, (d, m) in enumerate(wanted):
            out[d][f"{m}24h"] = int(results[2 * i])
            out[d][f"{m}1h"] = int(results[2 * i + 1])
        return out

    def purge(self, session: Session, now: datetime) -> int:
        return 0  # keys trim themselves on write and expire a day after their last event

    def forget(self, session: Session, client_id: str, dimension: str, key: str) -> int:
        return int(self.redis.delete(*(self._key(client_id, dimension, key, m) for m in METRICS)))
