"""The one TTL cache of the service: what a process remembers for a few seconds to keep a query off a hot
path (a client's settings, its active policy version, its webhook endpoints, whether an API key is live).

Each of these was a dict of `(expires, value)` tuples with its own expiry test and its own way of staying
bounded (clear everything past 100,000 entries). `TtlCache` puts `cachetools.TTLCache` behind the three
operations they need, `get`, `put` and `invalidate` (plus `clear` and `invalidate_where`), with:

- the clock injected: `cachetools`' timer reads it, so a test's `FrozenClock` expires entries when it is
  moved. The system clock is read through `time.monotonic` (same rate, cheaper, and a wall-clock step
  neither expires nor prolongs an entry);
- a bound (`maxsize`) that evicts the least recently used entry instead of dropping everything;
- thread safety: writes take a lock (cachetools' structures are not thread-safe); reads take none, and a
  read that races an eviction answers "missing", as it would a moment later;
- a fast hit path (`_fast_get`): one function call more than the hand-written dicts' inline lookup, about
  a third of `TTLCache.__getitem__`'s cost (tests/unit/test_caching.py checks it answers alike).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, overload

from cachetools import TTLCache

from passgate.clock import Clock, SystemClock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_MISSING: Any = object()

DEFAULT_MAXSIZE = 100_000


def timer_of(clock: Clock | None) -> Callable[[], float]:
    """Seconds as `cachetools` wants them, from the injected clock."""
    if clock is None or type(clock) is SystemClock:
        return time.monotonic
    return lambda: clock.now().timestamp()


def _fast_get(
    links: dict[Any, Any], values: dict[Any, Any], now: Callable[[], float]
) -> Callable[..., Any]:
    """`TtlCache.get` for the hit path, which is on every request (an API key's status, a client's
    settings and policy): one dict lookup, one timer read, one compare and one more lookup, on
    cachetools' own key -> expiry links and key -> value dict, with no method call of its own, where
    `TTLCache.__getitem__` makes four. What it leaves out is moving the key to the recent end of the LRU
    order: when full, the cache evicts the entry put longest ago rather than the one read longest ago.
    tests/unit/test_caching.py checks it answers as the plain `TtlCache.get` does."""

    def get(key: Any, default: Any = None) -> Any:
        link = links.get(key)
        if link is not None and now() < link.expires:
            return values.get(key, default)
        return default

    return get


class TtlCache(Generic[K, V]):
    """Values remembered for `ttl` seconds each (from when they were put), at most `maxsize` of them."""

    def __init__(self, ttl: float, clock: Clock | None = None, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.ttl = ttl
        self._now = timer_of(clock)
        self._entries: TTLCache[K, V] = TTLCache(maxsize, ttl, timer=self._now)
        self._lock = threading.Lock()
        # The fast read path (see `_fast_get`), unless this cachetools renamed what it reads.
        links: dict[Any, Any] | None = getattr(self._entries, "_TTLCache__links", None)
        values: dict[Any, Any] | None = getattr(self._entries, "_Cache__data", None)
        self.fast = links is not None and values is not None
        if links is not None and values is not None:
            self.get = _fast_get(links, values, self._now)  # type: ignore[method-assign]

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        """The value if it is still fresh, else `default` (through cachetools' public interface; an
        instance whose cachetools allows it reads through `_fast_get` instead)."""
        try:
            return self._entries[key]
        except KeyError:
            return default

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._entries[key] = value
        return value

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The fresh value, or `load()`'s, remembered. Two threads missing together both load (no lock
        is held across a load: it may query the database)."""
        hit = self.get(key, _MISSING)
        return self.put(key, load()) if hit is _MISSING else hit

    def invalidate(self, key: K) -> None:
        """Forget one key (a change made through this process is seen at once)."""
        with self._lock:
            self._entries.pop(key, None)

    def invalidate_where(self, test: Callable[[K], bool]) -> None:
        """Forget every key `test` accepts (say, every entry of one client)."""
        with self._lock:
            for key in [k for k in self._entries if test(k)]:
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
