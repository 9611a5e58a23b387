"""The limits on wrong secrets at the token endpoint, on the in-process windows and on Redis."""

from __future__ import annotations

import os
import secrets

import pytest

from passgate.auth.exceptions import TooManyFailedAttempts
from passgate.auth.services import TokenAttempts
from passgate.ratelimit.factory import make_rate_limiter

BACKENDS = ["memory"] + (["redis"] if os.environ.get("PASSGATE_TEST_REDIS_URL") else [])


@pytest.fixture(params=BACKENDS)
def attempts(request: pytest.FixtureRequest) -> TokenAttempts:
    limiter = make_rate_limiter(os.environ["PASSGATE_TEST_REDIS_URL"] if request.param == "redis" else None)
    return TokenAttempts(limiter, ip_rates="3/minute", client_rates="5/minute")


def test_an_address_past_its_limit_is_refused_and_others_are_not(attempts: TokenAttempts) -> None:
    ip, client = f"10.0.0.{secrets.randbelow(250)}-{secrets.token_hex(3)}", f"cl_{secrets.token_hex(4)}"
    for _ in range(3):
        attempts.check_address(ip)
        attempts.failed(ip, client)
    with pytest.raises(TooManyFailedAttempts) as refused:
        attempts.check_address(ip)
    assert 1 <= refused.value.retry_after <= 61
    attempts.check_address(ip + "-other")


def test_a_client_past_its_limit_refuses_only_the_addresses_that_failed_for_it(attempts: TokenAttempts) -> None:
    client, run = f"cl_{secrets.token_hex(4)}", secrets.token_hex(3)
    for n in range(5):
        attempts.check_client(client, f"guesser{n}-{run}")
        attempts.failed(f"guesser{n}-{run}", client)
    with pytest.raises(TooManyFailedAttempts):
        attempts.check_client(client, f"guesser0-{run}")
    attempts.check_client(client, f"server-{run}")  # never failed: let through to present its key
    attempts.check_client(f"cl_other_{run}", f"guesser0-{run}")
    # A success from an address forgets its failures for that client.
    attempts.succeeded(client, f"guesser1-{run}")
    attempts.check_client(client, f"guesser1-{run}")
