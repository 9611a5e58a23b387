"""Named rate limits: moving windows in memory for one process, over the `limits` library on Redis for
several."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class LimitResult:
    allowed: bool
    retry_after: int  # seconds until the scope admits another hit (0 when allowed)


@lru_cache(maxsize=256)
def _items(rates: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(rates))


class MemoryWindows:
    """Moving windows kept in this process: per scope, key and limit, the times of the hits still inside.

    `limits`' own memory storage rescans every key it holds on a timer thread 100 times a second; with a
    key per destination (kept for a day by the daily limits) that scan costs more than the checks. Here a
    window forgets its old hits when it is next touched, and windows nobody touched for longer than they
    last are dropped in one pass every `PRUNE_EVERY` hits.
    """

    PRUNE_EVERY = 10_000

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, int, int], deque[float]] = {}
        self._lock = threading.Lock()
        self._hits_since_prune = 0

    def hit(self, scope: str, key: str, items: tuple[RateLimitItem, ...]) -> LimitResult:
        now = time.time()
        with self._lock:
            # Test every window before counting, so a refused hit is not charged against the others.
            refused, windows = self._look(scope, key, items, now)
            if refused is not None:
                return refused
            for wkey, hits in windows:
                if hits is None:
                    hits = self._windows[wkey] = deque()
                hits.append(now)
            self._hits_since_prune += 1
            if self._hits_since_prune >= self.PRUNE_EVERY:
                self._prune(now)
        return LimitResult(True, 0)

    def test(self, scope: str, key: str, items: tuple[RateLimitItem, ...]) -> LimitResult:
        """What `hit` would answer, without counting a hit."""
        with self._lock:
            refused, _ = self._look(scope, key, items, time.time())
        return refused or LimitResult(True, 0)

    def _look(
        self, scope: str, key: str, items: tuple[RateLimitItem, ...], now: float
    ) -> tuple[LimitResult | None, list[tuple[tuple[str, str, int, int], deque[float] | None]]]:
        """The first window that refuses a hit now (its old hits forgotten on the way), or None and every
        window (None where it has no hits yet). Called with the lock held."""
        windows: list[tuple[tuple[str, str, int, int], deque[float] | None]] = []
        for item in items:
            period = item.get_expiry()
            wkey = (scope, key, item.amount, period)
            hits = self._windows.get(wkey)
            if hits:
                cutoff = now - period
                while hits and hits[0] <= cutoff:
                    hits.popleft()
                if len(hits) >= item.amount:
                    return LimitResult(False, max(1, int(hits[0] + period - now) + 1)), windows
            windows.append((wkey, hits))
        return None, windows

    def clear(self, scope: str, key: str, items: tuple[RateLimitItem, ...]) -> None:
        with self._lock:
            for item in items:
                self._windows.pop((scope, key, item.amount, item.get_expiry()), None)

    def __len__(self) -> int:
        return len(self._windows)

    def _prune(self, now: float) -> None:
        self._hits_since_prune = 0
        stale = [k for k, hits in self._windows.items() if not hits or hits[-1] <= now - k[3]]
        for k in stale:
            del self._windows[k]


class RateLimiter:
    """`hit("send:destination", key, "5/10 minutes;20/day")` counts a hit against every limit given."""

    def __init__(self, storage_uri: str | None = None) -> None:
        uri = storage_uri or "memory://"
        self.backend = "redis" if uri.startswith(("redis://", "rediss://")) else "memory"
        self.memory: MemoryWindows | None = None
        if uri == "memory://":
            self.memory = MemoryWindows()
        else:
            self.storage = storage_from_string(uri)
            self.limiter = MovingWindowRateLimiter(self.storage)

    def hit(self, scope: str, key: str, rates: str) -> LimitResult:
        items = _items(rates)
        if self.memory is not None:
            return self.memory.hit(scope, key, items)
        # Test every window before counting, so a refused hit is not charged against the others.
        for item in items:
            if not self.limiter.test(item, scope, key):
                reset, _ = self.limiter.get_window_stats(item, scope, key)
                return LimitResult(False, max(1, int(reset - time.time()) + 1))
        for item in items:
            self.limiter.hit(item, scope, key)
        return LimitResult(True, 0)

    def test(self, scope: str, key: str, rates: str) -> LimitResult:
        """Whether a hit would be admitted now, without counting one."""
        items = _items(rates)
        if self.memory is not None:
            return self.memory.test(scope, key, items)
        for item in items:
            if not self.limiter.test(item, scope, key):
                reset, _ = self.limiter.get_window_stats(item, scope, key)
                return LimitResult(False, max(1, int(reset - time.time()) + 1))
        return LimitResult(True, 0)

    def clear(self, scope: str, key: str, rates: str) -> None:
        items = _items(rates)
        if self.memory is not None:
            self.memory.clear(scope, key, items)
            return
        for item in items:
            self.limiter.clear(item, scope, key)
