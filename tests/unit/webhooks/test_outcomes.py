"""How one outcome moves an endpoint's failure bookkeeping (the record's 410 and 5-day rules)."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from passgate.clock import FrozenClock
from passgate.webhooks.claims import Claimed, DeliveryPolicy
from passgate.webhooks.outcomes import Outcome, OutcomeRecorder, _EndpointState
from passgate.webhooks.states import DisabledReason

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
CLAIMED = Claimed("d", "t", "ep", "c", "e", "https://x.example", "standard-webhooks", b"{}", 1)


def _recorder(disable_after: timedelta = timedelta(days=5)) -> OutcomeRecorder:
    nothing: Any = None  # _track reads only the policy
    return OutcomeRecorder(
        sessions=nothing,
        clock=FrozenClock(NOW),
        claimer=nothing,
        metrics=nothing,
        policy=DeliveryPolicy(disable_after=disable_after),
        worker_id="w",
        rng=random.Random(1),
    )


def _outcome(status: int | None, started: datetime = NOW) -> Outcome:
    return Outcome(CLAIMED, started, 1.0, status, None, None if status == 200 else "failed")


def test_a_success_ends_the_failure_run() -> None:
    e = _EndpointState("ep", True, NOW - timedelta(days=1))
    _recorder()._track(e, _outcome(200), NOW)
    assert (e.failing_since, e.last_success_at, e.disabled, e.touched) == (None, NOW, None, True)


def test_a_first_failure_starts_the_run_at_the_try() -> None:
    e = _EndpointState("ep", True, None)
    started = NOW - timedelta(seconds=3)
    _recorder()._track(e, _outcome(500, started), NOW)
    assert (e.failing_since, e.last_failure_at, e.enabled) == (started, NOW, True)


def test_gone_disables_at_once() -> None:
    e = _EndpointState("ep", True, None)
    _recorder()._track(e, _outcome(410), NOW)
    assert (e.enabled, e.disabled) == (False, DisabledReason.GONE)


def test_a_failure_run_as_long_as_disable_after_disables() -> None:
    e = _EndpointState("ep", True, NOW - timedelta(days=5))
    _recorder()._track(e, _outcome(None), NOW)
    assert (e.enabled, e.disabled) == (False, DisabledReason.FAILING)
    shorter = _EndpointState("ep", True, NOW - timedelta(days=5) + timedelta(seconds=1))
    _recorder()._track(shorter, _outcome(503), NOW)
    assert (shorter.enabled, shorter.disabled) == (True, None)


def test_a_disabled_endpoint_is_not_disabled_again() -> None:
    e = _EndpointState("ep", False, NOW - timedelta(days=9))
    _recorder()._track(e, _outcome(410), NOW)
    assert e.disabled is None and e.last_failure_at == NOW


def test_only_2xx_is_delivered() -> None:
    assert _outcome(204).delivered and not _outcome(None).delivered and not _outcome(301).delivered
