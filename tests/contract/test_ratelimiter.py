"""The RateLimiter port: the in-process and the Redis limiter give the same answers to the same calls.

Both read the injected clock, so one `FrozenClock` drives both; each test uses keys of its own, so runs
sharing a Redis database do not meet.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from passgate.clock import FrozenClock
from passgate.ratelimit import LimitResult, RateLimiter, RateLimitExceeded
from passgate.ratelimit.factory import make_rate_limiter
from passgate.ratelimit.memory import MemoryRateLimiter

REDIS_URL = os.environ.get("PASSGATE_TEST_REDIS_URL")
IMPLEMENTATIONS = ["memory"] + (["redis"] if REDIS_URL else [])


def _make(kind: str, clock: FrozenClock) -> RateLimiter:
    return make_rate_limiter(REDIS_URL if kind == "redis" else None, clock)


@pytest.fixture
def clock() -> FrozenClock:
    # A fraction of a second in the start, so windows end between whole seconds as they do in real use.
    return FrozenClock(datetime.fromtimestamp(1_800_000_000.25, UTC))


@pytest.fixture(params=IMPLEMENTATIONS)
def limiter(request: pytest.FixtureRequest, clock: FrozenClock) -> Iterator[RateLimiter]:
    yield _make(request.param, clock)


def _key() -> str:
    return f"contract-{secrets.token_hex(6)}"


def test_admits_the_amount_then_refuses_until_the_oldest_hit_leaves(
    limiter: RateLimiter, clock: FrozenClock
) -> None:
    key = _key()
    for _ in range(5):
        assert limiter.hit("send:destination", key, "5/10 minutes") == LimitResult(True, 0)
        clock.advance(10)
    assert limiter.hit("send:destination", key, "5/10 minutes") == LimitResult(False, 551)
    assert limiter.hit("send:prefix", key, "5/10 minutes").allowed  # another scope, another window
    clock.advance(550)
    assert limiter.hit("send:destination", key, "5/10 minutes").allowed
    assert not limiter.hit("send:destination", key, "5/10 minutes").allowed


def test_a_hit_refused_by_one_window_is_charged_to_none(limiter: RateLimiter, clock: FrozenClock) -> None:
    key, rates = _key(), "2/minute;3/hour"
    assert limiter.hit("s", key, rates).allowed
    assert limiter.hit("s", key, rates).allowed
    for _ in range(5):
        assert not limiter.hit("s", key, rates).allowed  # the minute refuses; the hour is not charged
    clock.advance(61)
    assert limiter.hit("s", key, rates).allowed  # the hour has its 3rd hit only now
    clock.advance(61)
    assert limiter.hit("s", key, rates) == LimitResult(False, 3600 - 122 + 1)


def test_test_answers_as_hit_would_without_counting(limiter: RateLimiter, clock: FrozenClock) -> None:
    key = _key()
    for _ in range(3):
        assert limiter.test("s", key, "3/minute").allowed
    for _ in range(3):
        limiter.hit("s", key, "3/minute")
    assert limiter.test("s", key, "3/minute") == LimitResult(False, 61)
    clock.advance(61)
    assert limiter.test("s", key, "3/minute").allowed


def test_clear_forgets_the_hits(limiter: RateLimiter) -> None:
    key = _key()
    for _ in range(3):
        limiter.hit("console-sign-in:email", key, "3/hour")
    refused = limiter.hit("console-sign-in:email", key, "3/hour")
    with pytest.raises(RateLimitExceeded) as exc:
        refused.check()
    assert exc.value.retry_after == refused.retry_after == 3601
    limiter.clear("console-sign-in:email", key, "3/hour")
    assert limiter.hit("console-sign-in:email", key, "3/hour").allowed


@pytest.mark.skipif(not REDIS_URL, reason="PASSGATE_TEST_REDIS_URL is unset")
def test_the_same_random_calls_get_the_same_answers_from_both() -> None:
    """A seeded walk of hits, tests, clears and clock moves over a few keys and rate strings, played on
    both limiters with one clock: every answer (allowed and retry_after) must match."""
    rng = random.Random(20261207)
    clock = FrozenClock(datetime.fromtimestamp(1_800_000_000.5, UTC))
    memory, redis_ = _make("memory", clock), _make("redis", clock)
    assert isinstance(memory, MemoryRateLimiter) and redis_.backend == "redis"
    prefix = _key()
    keys = [f"{prefix}-{i}" for i in range(3)]
    rates = ["3/minute", "2/10 seconds;5/minute", "4/minute;6/hour", "1/30 seconds"]
    for step in range(600):
        op = rng.random()
        key, rate = rng.choice(keys), rng.choice(rates)
        if op < 0.6:
            answers = memory.hit("s", key, rate), redis_.hit("s", key, rate)
        elif op < 0.8:
            answers = memory.test("s", key, rate), redis_.test("s", key, rate)
        elif op < 0.85:
            memory.clear("s", key, rate)
            redis_.clear("s", key, rate)
            continue
        else:
            clock.advance(rng.choice([0.5, 3, 11, 29.75, 61, 400]))
            continue
        assert answers[0] == answers[1], (step, key, rate)
