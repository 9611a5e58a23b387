"""The BreakerStore port (mfa/breaker.py): the in-process store and the Redis one give the same answers to
the same calls, and the breaker driven over each moves through the same states.

Each test uses keys of its own, so runs sharing a Redis database do not meet. A Redis that cannot be
reached is the port's `BreakerStoreUnavailable`, which the service turns into a send let through.
"""

from __future__ import annotations

import os
import random
import secrets
import threading

import pytest

from passgate.auth.sms_breaker import BreakerConfig
from passgate.mfa.breaker import (
    BUCKET_SECONDS,
    BreakerState,
    BreakerStatus,
    BreakerStore,
    BreakerStoreUnavailable,
    MemoryBreakerStore,
    counts_in,
    on_send,
    on_verified,
    window_start,
)
from passgate.mfa.breaker_redis import RedisBreakerStore, make_breaker_store

REDIS_URL = os.environ.get("PASSGATE_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="PASSGATE_TEST_REDIS_URL is unset")
T0 = 1_800_000_000.25
CONFIG = BreakerConfig(
    mode="enforce", window_seconds=600, min_sends=8, min_conversion=0.4, cool_down_seconds=120, probe_sends=3
)


def _key() -> str:
    return f"contract-{secrets.token_hex(6)}:GB"


@pytest.fixture(params=["memory"] + (["redis"] if REDIS_URL else []))
def store(request: pytest.FixtureRequest) -> BreakerStore:
    return make_breaker_store(REDIS_URL if request.param == "redis" else None)


def test_counts_are_per_key_and_per_window(store: BreakerStore) -> None:
    key, other = _key(), _key()
    for i in range(20):
        store.count(key, "sent", T0 + i * 45)
        if i % 4 == 0:
            store.count(key, "verified", T0 + i * 45)
    store.count(other, "sent", T0)
    now = T0 + 19 * 45
    whole = store.counts(key, T0 - 1, now)
    assert (whole.sent, whole.verified) == (20, 5)
    assert store.counts(other, T0 - 1, now).sent == 1
    recent = store.counts(key, now - 300, now)
    assert 0 < recent.sent < 20


def test_swap_stores_only_over_the_state_read(store: BreakerStore) -> None:
    key = _key()
    start = store.state(key)
    assert start == BreakerState()
    opened = start.moved(BreakerStatus.OPEN, T0)
    assert store.swap(key, start, opened)
    assert not store.swap(key, start, start.moved(BreakerStatus.OPEN, T0 + 1))
    assert store.state(key) == opened
    half = opened.moved(BreakerStatus.HALF_OPEN, T0 + 200)
    assert not store.swap(key, start, half)
    assert store.swap(key, opened, half) and store.state(key) == half


def test_concurrent_swaps_let_exactly_one_win(store: BreakerStore) -> None:
    key = _key()
    start = store.state(key)
    wins: list[bool] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        won = store.swap(key, start, start.moved(BreakerStatus.OPEN, T0 + n))
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(wins) == [False] * 7 + [True]


@needs_redis
def test_memory_and_redis_agree_on_a_random_run() -> None:
    """The same random traffic through both stores: the same counts at every step, the same verdicts."""
    memory = MemoryBreakerStore()
    assert REDIS_URL is not None
    redis_store = RedisBreakerStore(REDIS_URL)
    key = _key()
    rng = random.Random(20261207)
    now = T0
    for step in range(300):
        now += rng.choice([0.5, 3, 20, 61, BUCKET_SECONDS * 3])
        verify = rng.random() < 0.3
        answers = []
        for store in (memory, redis_store):
            state = store.state(key)
            if verify:
                store.count(key, "verified", now)
                moved = on_verified(state, CONFIG, now)
                if moved is not None:
                    assert store.swap(key, state, moved)
                answers.append((moved, store.counts(key, window_start(state, CONFIG, now), now)))
            else:
                # What the service reads: the state and the window's buckets in one call.
                read_state, buckets = store.read(key, now - CONFIG.window_seconds, now)
                assert read_state == state
                counts = counts_in(buckets, window_start(state, CONFIG, now), now)
                assert counts == store.counts(key, window_start(state, CONFIG, now), now)
                answers.append(buckets)
                verdict = on_send(state, counts, CONFIG, now)
                if verdict.state is not None:
                    assert store.swap(key, state, verdict.state)
                if verdict.counted:
                    store.count(key, "sent", now)
                answers.append((verdict, counts))
        half = len(answers) // 2
        assert answers[:half] == answers[half:], step
        assert memory.state(key) == redis_store.state(key)


def test_read_gives_the_state_and_the_buckets_at_once(store: BreakerStore) -> None:
    key = _key()
    for i in range(5):
        store.count(key, "sent", T0 + i * BUCKET_SECONDS)
    store.count(key, "verified", T0 + 4 * BUCKET_SECONDS)
    opened = BreakerState().moved(BreakerStatus.OPEN, T0)
    assert store.swap(key, BreakerState(), opened)
    now = T0 + 4 * BUCKET_SECONDS + 1
    state, buckets = store.read(key, now - 2 * BUCKET_SECONDS, now)
    assert state == opened
    b = int(T0 // BUCKET_SECONDS)
    assert buckets == {b + 2: (1, 0), b + 3: (1, 0), b + 4: (1, 1)}
    assert counts_in(buckets, now - 2 * BUCKET_SECONDS, now) == store.counts(key, now - 120, now)
    assert store.read(_key(), T0, T0) == (BreakerState(), {})


def test_an_unreachable_redis_is_the_ports_error() -> None:
    store = RedisBreakerStore("redis://127.0.0.1:1/0", timeout=0.2)
    with pytest.raises(BreakerStoreUnavailable):
        store.count(_key(), "sent", T0)
    with pytest.raises(BreakerStoreUnavailable):
        store.state(_key())


def test_the_factory_picks_by_url() -> None:
    assert make_breaker_store(None).backend == "memory"
    assert make_breaker_store("redis://127.0.0.1:1/0").backend == "redis"
