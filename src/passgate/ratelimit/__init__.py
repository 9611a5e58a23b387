"""Named rate limits behind one interface: moving windows in this process (`memory.MemoryRateLimiter`) or
on Redis for several processes (`redis.RedisRateLimiter`, over the `limits` library).

A limit is named by its scope ("send:destination") and counted per key (a destination hash); its rates are
`limits`' notation ("5/10 minutes;20/day"), every window of which must admit a hit for it to count. Both
implementations read the injected clock, so a test that moves a `FrozenClock` moves the windows too.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from limits import RateLimitItem, parse_many


@dataclass(frozen=True)
class LimitResult:
    allowed: bool
    retry_after: int  # seconds until the scope admits another hit (0 when allowed)

    def check(self) -> None:
        """Raise `RateLimitExceeded` when the hit was refused (for callers with no error of their own)."""
        if not self.allowed:
            raise RateLimitExceeded(self.retry_after)


class RateLimitExceeded(Exception):
    """A limit refused a hit; `retry_after` is the number of seconds until it admits one."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after} s")
        self.retry_after = retry_after


class RateLimiter(Protocol):
    """`hit("send:destination", key, "5/10 minutes;20/day")` counts a hit against every window given, or
    against none when one of them refuses it (a refused hit is never charged)."""

    backend: str

    def hit(self, scope: str, key: str, rates: str) -> LimitResult: ...

    def test(self, scope: str, key: str, rates: str) -> LimitResult:
        """What `hit` would answer now, without counting a hit."""
        ...

    def clear(self, scope: str, key: str, rates: str) -> None:
        """Forget the hits counted for this key in these windows."""
        ...


class Outage(enum.Enum):
    """What a limit answers while its storage cannot be reached (docs/operations.md says why for each)."""

    OPEN = "open"  # admit: the limit guards cost or abuse that other checks also bound
    CLOSED = "closed"  # refuse: the limit is the only guard, and what it guards can wait


# Every scope the service uses. A scope missing here fails closed: an unknown limit is not waved through.
ON_OUTAGE: Mapping[str, Outage] = {
    # Challenge sends: refusing them would stop every login that needs a code; the per-session send and
    # resend caps (in the database) still bound what one session can send.
    "send:destination": Outage.OPEN,
    "send:prefix": Outage.OPEN,
    # Wrong client secrets: the secrets are 256 random bits, out of reach of guessing; refusing would stop
    # every client from getting a token.
    "token-failures:ip": Outage.OPEN,
    "token-failures:client": Outage.OPEN,
    "token-failures:pair": Outage.OPEN,
    # Console passwords can be guessed and this limit is the only brake; signed-in users stay signed in.
    "console-sign-in:ip": Outage.CLOSED,
    "console-sign-in:email": Outage.CLOSED,
    # Test sends from the template editor cost a message each and nothing depends on them.
    "test-send:client": Outage.CLOSED,
}

# What a limit that fails closed tells the caller to wait.
OUTAGE_RETRY_AFTER = 60

# Called with (scope, outcome) when a check could not reach its storage; outcome is "open", "closed" or
# "clear-skipped". `Metrics.rate_limit_outage` is the one the service passes.
OutageHook = Callable[[str, str], None]


@lru_cache(maxsize=256)
def parse_rates(rates: str) -> tuple[RateLimitItem, ...]:
    """`limits`' items for a rates string, parsed once per distinct string."""
    return tuple(parse_many(rates))


def retry_after(oldest: float, period: int, now: float) -> int:
    """Whole seconds (at least 1) until the oldest hit still inside a window leaves it: both
    implementations answer with this, so they agree to the second."""
    return max(1, int(oldest + period - now) + 1)
