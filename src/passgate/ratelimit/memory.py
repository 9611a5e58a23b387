"""Moving windows kept in this process: the limiter of a single-process deployment (no Redis)."""

from __future__ import annotations

import threading
from collections import deque

from limits import RateLimitItem

from passgate.clock import Clock
from passgate.ratelimit import LimitResult, parse_rates, retry_after

_WindowKey = tuple[str, str, int, int]  # scope, key, amount, period in seconds


class MemoryRateLimiter:
    """Per scope, key and limit, the times of the hits still inside the window.

    `limits`' own memory storage rescans every key it holds on a timer thread 100 times a second; with a
    key per destination (kept for a day by the daily limits) that scan costs more than the checks. Here a
    window forgets its old hits when it is next touched, and windows nobody touched for longer than they
    last are dropped in one pass every `PRUNE_EVERY` hits.
    """

    backend = "memory"
    PRUNE_EVERY = 10_000

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._windows: dict[_WindowKey, deque[float]] = {}
        self._lock = threading.Lock()
        self._hits_since_prune = 0

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def hit(self, scope: str, key: str, rates: str) -> LimitResult:
        items = parse_rates(rates)
        now = self._now()
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

    def test(self, scope: str, key: str, rates: str) -> LimitResult:
        """What `hit` would answer, without counting a hit."""
        items = parse_rates(rates)
        with self._lock:
            refused, _ = self._look(scope, key, items, self._now())
        return refused or LimitResult(True, 0)

    def clear(self, scope: str, key: str, rates: str) -> None:
        with self._lock:
            for item in parse_rates(rates):
                self._windows.pop((scope, key, item.amount, item.get_expiry()), None)

    def _look(
        self, scope: str, key: str, items: tuple[RateLimitItem, ...], now: float
    ) -> tuple[LimitResult | None, list[tuple[_WindowKey, deque[float] | None]]]:
        """The first window that refuses a hit now (its old hits forgotten on the way), or None and every
        window (None where it has no hits yet). Called with the lock held."""
        windows: list[tuple[_WindowKey, deque[float] | None]] = []
        for item in items:
            period = item.get_expiry()
            wkey = (scope, key, item.amount, period)
            hits = self._windows.get(wkey)
            if hits:
                cutoff = now - period
                while hits and hits[0] <= cutoff:
                    hits.popleft()
                if len(hits) >= item.amount:
                    return LimitResult(False, retry_after(hits[0], period, now)), windows
            windows.append((wkey, hits))
        return None, windows

    def __len__(self) -> int:
        return len(self._windows)

    def _prune(self, now: float) -> None:
        self._hits_since_prune = 0
        stale = [k for k, hits in self._windows.items() if not hits or hits[-1] <= now - k[3]]
        for k in stale:
            del self._windows[k]
