"""Named rate limits over the `limits` library: in memory for one process, Redis for several."""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class LimitResult:
    allowed: bool
    retry_after: int  # seconds until the scope admits another hit (0 when allowed)


class RateLimiter:
    """`hit("send:destination", key, "5/10 minutes;20/day")` counts a hit against every limit given."""

    def __init__(self, storage_uri: str | None = None) -> None:
        uri = storage_uri or "memory://"
        self.storage = storage_from_string(uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.backend = "redis" if uri.startswith(("redis://", "rediss://")) else "memory"

    def hit(self, scope: str, key: str, rates: str) -> LimitResult:
        items = parse_many(rates)
        # Test every window before counting, so a refused hit is not charged against the others.
        for item in items:
            if not self.limiter.test(item, scope, key):
                reset, _ = self.limiter.get_window_stats(item, scope, key)
                return LimitResult(False, max(1, int(reset - time.time()) + 1))
        for item in items:
            self.limiter.hit(item, scope, key)
        return LimitResult(True, 0)

    def clear(self, scope: str, key: str, rates: str) -> None:
        for item in parse_many(rates):
            self.limiter.clear(item, scope, key)
