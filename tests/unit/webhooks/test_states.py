import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from passgate.webhooks.states import (
    DELIVERY_TRANSITIONS,
    JITTER,
    MAX_RETRY_AFTER,
    RETRY_SCHEDULE,
    DeliveryStatus,
    InvalidDeliveryTransition,
    can_move,
    check_move,
    is_success,
    parse_retry_after,
    parse_schedule,
    retry_delay,
)

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
S = DeliveryStatus


def test_every_status_has_a_row_in_the_table() -> None:
    assert set(DELIVERY_TRANSITIONS) == set(DeliveryStatus)


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (S.PENDING, S.SENDING),
        (S.PENDING, S.FAILED),  # endpoint disabled while waiting
        (S.SENDING, S.DELIVERED),
        (S.SENDING, S.PENDING),  # retry, or taken back from a dead worker
        (S.SENDING, S.FAILED),
        (S.DELIVERED, S.PENDING),  # replay
        (S.FAILED, S.PENDING),  # replay
    ],
)
def test_allowed_moves(current: S, wanted: S) -> None:
    assert can_move(current, wanted)
    check_move(current, wanted)


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (S.PENDING, S.DELIVERED),  # only a try delivers
        (S.DELIVERED, S.FAILED),
        (S.FAILED, S.DELIVERED),
        (S.DELIVERED, S.SENDING),
        (S.FAILED, S.SENDING),
    ],
)
def test_forbidden_moves(current: S, wanted: S) -> None:
    assert not can_move(current, wanted)
    with pytest.raises(InvalidDeliveryTransition):
        check_move(current, wanted)


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    # now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: ten tries in all.
    assert RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


@pytest.mark.parametrize("tries", range(1, len(RETRY_SCHEDULE) + 1))
def test_retry_delay_follows_the_schedule_with_jitter(tries: int) -> None:
    rng = random.Random(tries)
    for _ in range(50):
        delay = retry_delay(tries, RETRY_SCHEDULE, rng=rng)
        assert delay is not None
        assert RETRY_SCHEDULE[tries - 1] <= delay <= RETRY_SCHEDULE[tries - 1] * (1 + JITTER)


def test_jitter_spreads_the_retries() -> None:
    rng = random.Random(7)
    assert len({retry_delay(3, RETRY_SCHEDULE, rng=rng) for _ in range(20)}) > 10


def test_give_up_after_the_last_delay() -> None:
    assert retry_delay(len(RETRY_SCHEDULE) + 1, RETRY_SCHEDULE) is None
    assert retry_delay(1, ()) is None
    with pytest.raises(ValueError):
        retry_delay(0, RETRY_SCHEDULE)


def test_retry_after_longer_than_the_schedule_wins_shorter_does_not() -> None:
    rng = random.Random(1)
    assert retry_delay(1, RETRY_SCHEDULE, retry_after=120, rng=rng) == 120
    assert retry_delay(2, RETRY_SCHEDULE, retry_after=10, rng=rng) >= 300  # type: ignore[operator]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 30 ", 30.0),
        (format_datetime(NOW + timedelta(minutes=2), usegmt=True), 120.0),
        (format_datetime(NOW - timedelta(minutes=2), usegmt=True), 0.0),
        ("99999999999999999999", MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 99 Foo 2026 25:00:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_only_2xx_is_success() -> None:
    assert [c for c in (199, 200, 204, 299, 300, 301, 302, 307, 308, 400, 410, 500) if is_success(c)] == [
        200,
        204,
        299,
    ]


def test_parse_schedule() -> None:
    assert parse_schedule("5, 300,1800") == (5.0, 300.0, 1800.0)
    assert parse_schedule("") == ()
    with pytest.raises(ValueError):
        parse_schedule("5,-1")
