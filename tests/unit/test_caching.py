"""The one TTL cache: expiry on the injected clock, invalidation, its bound, and its fast read path
answering as cachetools' own lookup does."""

from __future__ import annotations

import random
import threading
import time

from passgate.caching import TtlCache, timer_of
from passgate.clock import FrozenClock, SystemClock


def test_a_value_is_fresh_for_ttl_seconds_of_the_injected_clock() -> None:
    clock = FrozenClock()
    cache: TtlCache[str, int] = TtlCache(5, clock)
    assert cache.get("a") is None
    assert cache.put("a", 1) == 1
    clock.advance(4.9)
    assert cache.get("a") == 1
    clock.advance(0.1)
    assert cache.get("a") is None and cache.get("a", -1) == -1


def test_invalidate_forgets_one_key_and_clear_all() -> None:
    cache: TtlCache[tuple[str, str], str] = TtlCache(60, FrozenClock())
    for client in ("c1", "c2"):
        for kind in ("template", "brand"):
            cache.put((client, kind), f"{client}/{kind}")
    cache.invalidate(("c1", "brand"))
    cache.invalidate(("never", "put"))  # forgetting what is not there is no error
    assert cache.get(("c1", "brand")) is None and cache.get(("c1", "template")) == "c1/template"
    cache.invalidate_where(lambda key: key[0] == "c1")
    assert cache.get(("c1", "template")) is None and cache.get(("c2", "brand")) == "c2/brand"
    cache.clear()
    assert len(cache) == 0


def test_get_or_load_remembers_none_and_loads_once_per_ttl() -> None:
    clock = FrozenClock()
    cache: TtlCache[str, str | None] = TtlCache(1, clock)
    loads: list[str] = []

    def load() -> str | None:
        loads.append("x")
        return None

    assert cache.get_or_load("k", load) is None
    assert cache.get_or_load("k", load) is None
    assert loads == ["x"]  # a remembered None is a hit, not a miss
    clock.advance(1)
    cache.get_or_load("k", load)
    assert loads == ["x", "x"]


def test_a_zero_ttl_remembers_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(0, FrozenClock())
    cache.put("a", 1)
    assert cache.get("a") is None


def test_the_bound_evicts_instead_of_growing() -> None:
    cache: TtlCache[int, int] = TtlCache(60, FrozenClock(), maxsize=100)
    for i in range(1_000):
        cache.put(i, i)
    assert len(cache) == 100 and cache.get(999) == 999 and cache.get(0) is None


def test_the_fast_read_answers_as_cachetools_lookup_does() -> None:
    """`get` reads cachetools' structures directly; the class's `get` goes through `TTLCache.__getitem__`.
    Over a random walk of puts, invalidations and clock moves they must agree on every key."""
    clock = FrozenClock()
    cache: TtlCache[int, int] = TtlCache(10, clock, maxsize=20)
    assert cache.fast, "this cachetools has no fast path"
    rng = random.Random(7)
    for step in range(3_000):
        op, key = rng.random(), rng.randrange(30)
        if op < 0.5:
            cache.put(key, step)
        elif op < 0.6:
            cache.invalidate(key)
        elif op < 0.75:
            clock.advance(rng.choice([0.5, 2, 9.5, 10, 11]))
        for k in range(30):
            assert cache.get(k, -1) == TtlCache.get(cache, k, -1), (step, k)


def test_the_system_clock_is_read_through_the_monotonic_timer() -> None:
    assert timer_of(SystemClock()) is time.monotonic
    assert timer_of(None) is time.monotonic
    frozen = FrozenClock()
    assert timer_of(frozen)() == frozen.now().timestamp()


def test_concurrent_readers_and_writers_neither_fail_nor_see_foreign_values() -> None:
    cache: TtlCache[int, int] = TtlCache(60, SystemClock(), maxsize=50)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(5_000):
                key = rng.randrange(200)
                if rng.random() < 0.5:
                    cache.put(key, key * 2)
                elif rng.random() < 0.1:
                    cache.invalidate(key)
                else:
                    value = cache.get(key)
                    assert value is None or value == key * 2
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(cache) <= 50
