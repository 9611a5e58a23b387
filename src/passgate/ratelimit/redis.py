"""Moving windows on Redis, shared by every process of a deployment, over the `limits` library's storage.

Why a script of our own rather than `limits.strategies.MovingWindowRateLimiter`: the strategy tests and
counts one window per call, so a limit of several windows ("5/10 minutes;20/day") took a test per window
and then a hit per window: two processes could both pass the tests and both count, and a hit refused by
the day window could still be charged to the ten minutes if it raced another. Here one Lua script (run with
`EVALSHA`, which Redis executes without interleaving any other command) looks at every window of the check
and counts the hit in all of them or in none.

The windows are stored exactly as `limits` stores its moving windows (`LIMITS:LIMITER/<scope>/<key>/...`,
a list of hit times, newest first, trimmed to the limit's amount and expiring with its period), so the
library's own tools read them, and counts survive the change from the strategy to this script. The hit
time is the injected clock's, passed to the script, not Redis's: both limiters then answer alike under a
test's `FrozenClock` (tests/contract/test_ratelimiter.py).

When Redis cannot be reached, each limit answers as `ON_OUTAGE` says (admit or refuse), the outage is
counted (`passgate_rate_limit_outages_total`) and logged once until Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from limits.storage import RedisStorage

from passgate.clock import Clock
from passgate.ratelimit import (
    ON_OUTAGE,
    OUTAGE_RETRY_AFTER,
    LimitResult,
    Outage,
    OutageHook,
    parse_rates,
    retry_after,
)

log = logging.getLogger("passgate.ratelimit")

# KEYS: one list per window. ARGV[1]: now (seconds, as text), ARGV[2]: "1" to count the hit, "0" to only
# look; then the amount and the period of each window, in the order of KEYS.
# Returns nil when every window admits the hit, else the first refusing window's oldest hit time and
# period (as text, so no precision is lost on the way back).
_CHECK = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[1 + 2 * i])
    local period = tonumber(ARGV[2 + 2 * i])
    local oldest = redis.call('lindex', key, amount - 1)
    if oldest and tonumber(oldest) > now - period then
        return {oldest, ARGV[2 + 2 * i]}
    end
end
if ARGV[2] == '1' then
    for i, key in ipairs(KEYS) do
        redis.call('lpush', key, ARGV[1])
        redis.call('ltrim', key, 0, tonumber(ARGV[1 + 2 * i]) - 1)
        redis.call('expire', key, tonumber(ARGV[2 + 2 * i]))
    end
end
return nil
"""


class RedisRateLimiter:
    """The limiter of a deployment with `PASSGATE_REDIS_URL`: see the module's docstring."""

    backend = "redis"

    def __init__(
        self,
        uri: str,
        clock: Clock,
        *,
        on_outage: OutageHook | None = None,
        outage_modes: Mapping[str, Outage] = ON_OUTAGE,
        timeout: float = 1.0,
    ) -> None:
        # Bounded waits: a Redis that stopped answering must not hold a request for the OS's TCP timeout.
        self.storage = RedisStorage(uri, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.clock = clock
        self.on_outage = on_outage
        self.outage_modes = outage_modes
        self._script = self.storage.get_connection().register_script(_CHECK.encode())
        self._errors = self.storage.base_exceptions
        self._down = False

    def hit(self, scope: str, key: str, rates: str) -> LimitResult:
        return self._check(scope, key, rates, count=True)

    def test(self, scope: str, key: str, rates: str) -> LimitResult:
        """What `hit` would answer, without counting a hit."""
        return self._check(scope, key, rates, count=False)

    def clear(self, scope: str, key: str, rates: str) -> None:
        keys = self._keys(scope, key, rates)
        try:
            self.storage.get_connection().delete(*keys)
        except self._errors:
            self._outage(scope, "clear-skipped")
            return
        self._up()

    def _keys(self, scope: str, key: str, rates: str) -> list[str]:
        return [self.storage.prefixed_key(item.key_for(scope, key)) for item in parse_rates(rates)]

    def _check(self, scope: str, key: str, rates: str, *, count: bool) -> LimitResult:
        items = parse_rates(rates)
        now = self.clock.now().timestamp()
        args: list[str | int] = [repr(now), "1" if count else "0"]
        for item in items:
            args += [item.amount, item.get_expiry()]
        try:
            refused = self._script(keys=self._keys(scope, key, rates), args=args)
        except self._errors:
            mode = self.outage_modes.get(scope, Outage.CLOSED)
            self._outage(scope, mode.value)
            return LimitResult(True, 0) if mode is Outage.OPEN else LimitResult(False, OUTAGE_RETRY_AFTER)
        self._up()
        if refused is None:
            return LimitResult(True, 0)
        oldest, period = refused
        return LimitResult(False, retry_after(float(oldest), int(period), now))

    def _outage(self, scope: str, outcome: str) -> None:
        if self.on_outage is not None:
            self.on_outage(scope, outcome)
        if not self._down:
            self._down = True
            log.warning(
                "rate limits cannot reach Redis; each limit admits or refuses as configured",
                extra={"scope": scope, "outcome": outcome},
            )

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("rate limits reach Redis again")
