"""The rate limiter a deployment uses, from its settings (kept apart from the protocol in __init__, which
the implementations import)."""

from __future__ import annotations

from passgate.clock import Clock, SystemClock
from passgate.ratelimit import OutageHook, RateLimiter
from passgate.ratelimit.memory import MemoryRateLimiter
from passgate.ratelimit.redis import RedisRateLimiter


def make_rate_limiter(
    storage_uri: str | None, clock: Clock | None = None, on_outage: OutageHook | None = None
) -> RateLimiter:
    """The limiter for a deployment: Redis when a Redis URL is configured (limits shared by every
    process), otherwise this process's memory."""
    clock = clock or SystemClock()
    uri = storage_uri or "memory://"
    if uri == "memory://":
        return MemoryRateLimiter(clock)
    return RedisRateLimiter(uri, clock, on_outage=on_outage)
