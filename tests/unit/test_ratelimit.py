"""The in-process moving windows behind the send limits (one process, no Redis)."""

from __future__ import annotations

import pytest

from passgate import ratelimit
from passgate.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(ratelimit.time, "time", fake.time)
    return fake


def test_moving_window_admits_the_limit_then_refuses_until_the_oldest_hit_leaves(clock: FakeTime) -> None:
    limiter = RateLimiter()
    assert limiter.backend == "memory"
    for i in range(5):
        assert limiter.hit("send:destination", "h1", "5/10 minutes").allowed
        clock.now += 10
    refused = limiter.hit("send:destination", "h1", "5/10 minutes")
    assert not refused.allowed
    # The first hit was 50 s ago: it leaves the 600 s window in 550 s.
    assert refused.retry_after == 551
    # Other keys and other scopes have windows of their own.
    assert limiter.hit("send:destination", "h2", "5/10 minutes").allowed
    assert limiter.hit("send:prefix", "h1", "5/10 minutes").allowed
    clock.now += 550
    assert limiter.hit("send:destination", "h1", "5/10 minutes").allowed
    assert not limiter.hit("send:destination", "h1", "5/10 minutes").allowed


def test_a_refused_hit_is_not_charged_to_the_other_windows(clock: FakeTime) -> None:
    limiter = RateLimiter()
    rates = "2/minute;3/hour"
    assert limiter.hit("s", "k", rates).allowed
    assert limiter.hit("s", "k", rates).allowed
    for _ in range(5):
        assert not limiter.hit("s", "k", rates).allowed  # the minute refuses; the hour is not charged
    clock.now += 61
    assert limiter.hit("s", "k", rates).allowed  # the hour has 3 now
    clock.now += 61
    refused = limiter.hit("s", "k", rates)
    assert not refused.allowed
    assert refused.retry_after == 3600 - 122 + 1


def test_clear_forgets_the_hits(clock: FakeTime) -> None:
    limiter = RateLimiter()
    for _ in range(3):
        limiter.hit("console-sign-in:email", "a@b.example", "3/hour")
    assert not limiter.hit("console-sign-in:email", "a@b.example", "3/hour").allowed
    limiter.clear("console-sign-in:email", "a@b.example", "3/hour")
    assert limiter.hit("console-sign-in:email", "a@b.example", "3/hour").allowed


def test_windows_nobody_touched_for_longer_than_they_last_are_dropped(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit.MemoryWindows, "PRUNE_EVERY", 10)
    limiter = RateLimiter()
    assert limiter.memory is not None
    for i in range(9):
        limiter.hit("send:destination", f"old{i}", "5/minute;20/day")
    assert len(limiter.memory) == 18
    clock.now += 120  # the minute windows are over; the day windows still hold their hit
    limiter.hit("send:destination", "new", "5/minute")  # the 10th hit prunes
    assert len(limiter.memory) == 9 + 1
    clock.now += 86_400
    for i in range(10):
        limiter.hit("send:destination", "new", "5/minute")
        clock.now += 13
    assert len(limiter.memory) == 1
    # A pruned key starts from nothing, as its hits were all outside the window anyway.
    assert limiter.hit("send:destination", "old0", "1/day").allowed


def test_test_answers_as_hit_would_without_counting(clock: FakeTime) -> None:
    limiter = RateLimiter()
    for _ in range(3):
        assert limiter.test("s", "k", "3/minute").allowed
    for _ in range(3):
        limiter.hit("s", "k", "3/minute")
    refused = limiter.test("s", "k", "3/minute")
    assert not refused.allowed and refused.retry_after == 61
    clock.now += 61
    assert limiter.test("s", "k", "3/minute").allowed
    assert limiter.test("s", "never-hit", "1/minute").allowed and len(limiter.memory or ()) == 1
