"""The in-process moving windows behind the send limits (one process, no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from passgate.clock import FrozenClock
from passgate.ratelimit.factory import make_rate_limiter
from passgate.ratelimit.memory import MemoryRateLimiter


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.fromtimestamp(1_000_000, UTC))


def test_without_a_redis_url_the_limiter_is_this_process_memory(clock: FrozenClock) -> None:
    assert isinstance(make_rate_limiter(None, clock), MemoryRateLimiter)
    assert isinstance(make_rate_limiter("memory://", clock), MemoryRateLimiter)


def test_moving_window_admits_the_limit_then_refuses_until_the_oldest_hit_leaves(clock: FrozenClock) -> None:
    limiter = MemoryRateLimiter(clock)
    assert limiter.backend == "memory"
    for i in range(5):
        assert limiter.hit("send:destination", "h1", "5/10 minutes").allowed
        clock.advance(10)
    refused = limiter.hit("send:destination", "h1", "5/10 minutes")
    assert not refused.allowed
    # The first hit was 50 s ago: it leaves the 600 s window in 550 s.
    assert refused.retry_after == 551
    # Other keys and other scopes have windows of their own.
    assert limiter.hit("send:destination", "h2", "5/10 minutes").allowed
    assert limiter.hit("send:prefix", "h1", "5/10 minutes").allowed
    clock.advance(550)
    assert limiter.hit("send:destination", "h1", "5/10 minutes").allowed
    assert not limiter.hit("send:destination", "h1", "5/10 minutes").allowed


def test_a_refused_hit_is_not_charged_to_the_other_windows(clock: FrozenClock) -> None:
    limiter = MemoryRateLimiter(clock)
    rates = "2/minute;3/hour"
    assert limiter.hit("s", "k", rates).allowed
    assert limiter.hit("s", "k", rates).allowed
    for _ in range(5):
        assert not limiter.hit("s", "k", rates).allowed  # the minute refuses; the hour is not charged
    clock.advance(61)
    assert limiter.hit("s", "k", rates).allowed  # the hour has 3 now
    clock.advance(61)
    refused = limiter.hit("s", "k", rates)
    assert not refused.allowed
    assert refused.retry_after == 3600 - 122 + 1


def test_clear_forgets_the_hits(clock: FrozenClock) -> None:
    limiter = MemoryRateLimiter(clock)
    for _ in range(3):
        limiter.hit("console-sign-in:email", "a@b.example", "3/hour")
    assert not limiter.hit("console-sign-in:email", "a@b.example", "3/hour").allowed
    limiter.clear("console-sign-in:email", "a@b.example", "3/hour")
    assert limiter.hit("console-sign-in:email", "a@b.example", "3/hour").allowed


def test_windows_nobody_touched_for_longer_than_they_last_are_dropped(
    clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MemoryRateLimiter, "PRUNE_EVERY", 10)
    limiter = MemoryRateLimiter(clock)
    for i in range(9):
        limiter.hit("send:destination", f"old{i}", "5/minute;20/day")
    assert len(limiter) == 18
    clock.advance(120)  # the minute windows are over; the day windows still hold their hit
    limiter.hit("send:destination", "new", "5/minute")  # the 10th hit prunes
    assert len(limiter) == 9 + 1
    clock.advance(86_400)
    for i in range(10):
        limiter.hit("send:destination", "new", "5/minute")
        clock.advance(13)
    assert len(limiter) == 1
    # A pruned key starts from nothing, as its hits were all outside the window anyway.
    assert limiter.hit("send:destination", "old0", "1/day").allowed


def test_test_answers_as_hit_would_without_counting(clock: FrozenClock) -> None:
    limiter = MemoryRateLimiter(clock)
    for _ in range(3):
        assert limiter.test("s", "k", "3/minute").allowed
    for _ in range(3):
        limiter.hit("s", "k", "3/minute")
    refused = limiter.test("s", "k", "3/minute")
    assert not refused.allowed and refused.retry_after == 61
    clock.advance(61)
    assert limiter.test("s", "k", "3/minute").allowed
    assert limiter.test("s", "never-hit", "1/minute").allowed and len(limiter) == 1
