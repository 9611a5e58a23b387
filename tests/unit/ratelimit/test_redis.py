"""The Redis limiter: one check is atomic over all its windows, its windows are `limits`' own, and each
limit admits or refuses as docs/operations.md says while Redis is down (counted in a metric)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from limits import parse
from limits.strategies import MovingWindowRateLimiter

from passgate.clock import FrozenClock, SystemClock
from passgate.observability import Metrics
from passgate.ratelimit import ON_OUTAGE, OUTAGE_RETRY_AFTER, LimitResult, Outage
from passgate.ratelimit.redis import RedisRateLimiter

REDIS_URL = os.environ.get("PASSGATE_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="PASSGATE_TEST_REDIS_URL is unset")
OWN_PORT = 6391


def _key() -> str:
    return f"unit-{secrets.token_hex(6)}"


@needs_redis
def test_a_hit_refused_by_the_second_window_leaves_the_first_uncharged() -> None:
    assert REDIS_URL
    limiter = RedisRateLimiter(REDIS_URL, FrozenClock(datetime.fromtimestamp(1_800_000_000, UTC)))
    key, rates = _key(), "5/minute;2/hour"
    minute, hour = limiter._keys("s", key, rates)
    conn = redis.Redis.from_url(REDIS_URL)
    assert limiter.hit("s", key, rates).allowed and limiter.hit("s", key, rates).allowed
    for _ in range(4):
        assert not limiter.hit("s", key, rates).allowed  # the hour refuses
    assert conn.llen(minute) == 2 and conn.llen(hour) == 2  # ...and the minute was not charged


@needs_redis
def test_concurrent_hits_from_several_limiters_admit_exactly_the_amount() -> None:
    """Two processes' limiters (one here per thread) racing on one key: the script admits 5, not more."""
    assert REDIS_URL
    url = REDIS_URL
    key, rates = _key(), "5/minute;7/hour"
    admitted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = RedisRateLimiter(url, SystemClock())
        for _ in range(10):
            allowed = limiter.hit("s", key, rates).allowed
            with lock:
                admitted.append(allowed)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(admitted) == 40 and admitted.count(True) == 5


@needs_redis
def test_the_windows_are_those_limits_itself_reads() -> None:
    """Stored as `limits`' moving windows: the library's strategy sees the same counts (and so would
    counts written by it before, for the same limit)."""
    assert REDIS_URL
    limiter = RedisRateLimiter(REDIS_URL, SystemClock())
    key = _key()
    for _ in range(3):
        limiter.hit("send:destination", key, "5/10 minutes")
    strategy = MovingWindowRateLimiter(limiter.storage)
    item = parse("5/10 minutes")
    assert strategy.get_window_stats(item, "send:destination", key).remaining == 2
    strategy.hit(item, "send:destination", key)
    strategy.hit(item, "send:destination", key)
    refused = limiter.test("send:destination", key, "5/10 minutes")
    assert not refused.allowed and 590 <= refused.retry_after <= 601


# -- Redis down -------------------------------------------------------------------------------------------


def _ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis() -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of this test's own on port 6391, which the test stops; killed (by its pid) at the end
    whatever happens."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", OWN_PORT)) == 0:
            pytest.skip(f"port {OWN_PORT} is taken")
    proc = subprocess.Popen(
        [server, "--port", str(OWN_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping(OWN_PORT):
            assert time.monotonic() < deadline, "the test's Redis did not start within 10 s"
            assert proc.poll() is None, "the test's Redis exited"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _outages(metrics: Metrics, scope: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "passgate_rate_limit_outages_total", {"scope": scope, "outcome": outcome}
    )
    return value or 0.0


def test_with_redis_stopped_each_limit_fails_open_or_closed_as_documented(
    own_redis: subprocess.Popen[bytes],
) -> None:
    metrics = Metrics()
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{OWN_PORT}/0", SystemClock(), on_outage=metrics.rate_limit_outage
    )
    assert limiter.hit("send:destination", "k", "1/minute").allowed  # Redis up: counted there
    assert not limiter.hit("send:destination", "k", "1/minute").allowed

    own_redis.kill()
    own_redis.wait(timeout=10)
    assert not _ping(OWN_PORT)

    docs = open(os.path.join(os.path.dirname(__file__), "../../../docs/operations.md")).read()
    for scope, mode in ON_OUTAGE.items():
        assert f"`{scope}`" in docs  # every limit's choice is written down
        expected = LimitResult(True, 0) if mode is Outage.OPEN else LimitResult(False, OUTAGE_RETRY_AFTER)
        before = _outages(metrics, scope, mode.value)
        started = time.monotonic()
        assert limiter.hit(scope, "k", "1/minute") == expected, scope
        assert limiter.test(scope, "k", "1/minute") == expected, scope
        assert time.monotonic() - started < 2.5  # a stopped Redis costs a refused connection, no wait
        assert _outages(metrics, scope, mode.value) == before + 2
    assert {mode for mode in ON_OUTAGE.values()} == {Outage.OPEN, Outage.CLOSED}

    # A limit nobody listed is not waved through.
    assert limiter.hit("unlisted", "k", "1/minute") == LimitResult(False, OUTAGE_RETRY_AFTER)
    assert _outages(metrics, "unlisted", "closed") == 1
    limiter.clear("console-sign-in:email", "k", "3/hour")  # nothing to clear: skipped, counted
    assert _outages(metrics, "console-sign-in:email", "clear-skipped") == 1
