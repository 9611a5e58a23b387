"""The breaker's counts and states on Redis, shared by every API process and worker of a deployment
(`PASSGATE_REDIS_URL`), and the factory that picks it or this process's memory.

Counts: one hash per (client, country, minute bucket) with fields `sent` and `verified`, expiring a day
after it was last written (no window is longer). A window's counts are one pipelined round trip of
`HMGET`s. States: one string per (client, country), the state's JSON; a change is stored by a
compare-and-set script (Redis runs a script without interleaving another command), so when two processes
both see a breaker trip, one of them records the change and the other re-reads it.

When Redis cannot be reached the breaker fails open (the send goes, nothing is counted): the rate limits
per destination and per prefix still bound what can be sent, and an outage of the counter store must not
stop every SMS login. Each such failure is counted in `passgate_sms_breaker_outages_total` and logged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from passgate.mfa.breaker import (
    BUCKET_SECONDS,
    BreakerState,
    BreakerStore,
    BreakerStoreUnavailable,
    Counts,
    MemoryBreakerStore,
    bucket_of,
    buckets_between,
)

# KEYS[1]: the state; KEYS[2..]: the buckets in order. Returns the state's text (or false) and each
# bucket's sent and verified (or false), in one round trip.
_READ = """
local out = {redis.call('get', KEYS[1])}
for i = 2, #KEYS do
    local pair = redis.call('hmget', KEYS[i], 'sent', 'verified')
    out[#out + 1] = pair[1]
    out[#out + 1] = pair[2]
end
return out
"""

_SWAP = """
local current = redis.call('get', KEYS[1])
if (current or '') ~= ARGV[1] then
    return 0
end
redis.call('set', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# A state unchanged for a week is forgotten (the breaker is closed again, with nothing against it).
STATE_TTL_SECONDS = 7 * 86400
COUNT_TTL_SECONDS = 86400 + 2 * BUCKET_SECONDS


_F = TypeVar("_F", bound=Callable[..., Any])


def _translated(method: _F) -> _F:
    """Redis's errors as the port's (`BreakerStoreUnavailable`)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except RedisError as e:
            raise BreakerStoreUnavailable(str(e)) from e

    return wrapper  # type: ignore[return-value]


class RedisBreakerStore:
    backend = "redis"

    def __init__(self, url: str, prefix: str = "pg:smsbrk:", timeout: float = 1.0) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix
        self._swap = self.redis.register_script(_SWAP)
        self._read = self.redis.register_script(_READ)

    def _bucket_key(self, key: str, bucket: int) -> str:
        return f"{self.prefix}c:{key}:{bucket}"

    @_translated
    def count(self, key: str, kind: str, now: float) -> None:
        rkey = self._bucket_key(key, bucket_of(now))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(rkey, kind, 1)
        pipe.expire(rkey, COUNT_TTL_SECONDS)
        pipe.execute()

    @_translated
    def counts(self, key: str, start: float, now: float) -> Counts:
        pipe = self.redis.pipeline(transaction=False)
        for b in buckets_between(start, now):
            pipe.hmget(self._bucket_key(key, b), "sent", "verified")
        sent = verified = 0
        for s, v in pipe.execute():
            sent += int(s or 0)
            verified += int(v or 0)
        return Counts(sent, verified)

    @_translated
    def state(self, key: str) -> BreakerState:
        raw = self.redis.get(f"{self.prefix}s:{key}")
        return BreakerState.decode(raw if isinstance(raw, (str, bytes)) else None)

    @_translated
    def read(self, key: str, earliest: float, now: float) -> tuple[BreakerState, dict[int, tuple[int, int]]]:
        first, last = bucket_of(earliest), bucket_of(now)
        buckets = list(range(first, last + 1))
        keys = [f"{self.prefix}s:{key}"] + [self._bucket_key(key, b) for b in buckets]
        reply = self._read(keys=keys, args=[])
        raw = reply[0] if reply and isinstance(reply[0], (str, bytes)) else None
        values = reply[1:]
        window = {}
        for i, b in enumerate(buckets):
            s = values[2 * i] if 2 * i < len(values) else None
            v = values[2 * i + 1] if 2 * i + 1 < len(values) else None
            if s or v:
                window[b] = (int(s or 0), int(v or 0))
        return BreakerState.decode(raw), window

    @_translated
    def swap(self, key: str, old: BreakerState, new: BreakerState) -> bool:
        # A breaker never stored reads as the initial state, whose text is then "" on Redis's side.
        old_text = "" if old == BreakerState() else old.encode()
        done = self._swap(keys=[f"{self.prefix}s:{key}"], args=[old_text, new.encode(), STATE_TTL_SECONDS])
        return bool(done)

    def clear(self) -> None:
        """Forget every breaker under this prefix (tests)."""
        for rkey in self.redis.scan_iter(f"{self.prefix}*"):
            self.redis.delete(rkey)


def make_breaker_store(redis_url: str | None) -> BreakerStore:
    """Redis when the deployment has it (every process sees the same breakers), else this process's memory."""
    return RedisBreakerStore(redis_url) if redis_url else MemoryBreakerStore()
