"""The webhook delivery lifecycle as a transition table, and the retry arithmetic. Pure: no I/O, no clock.

One delivery is one event on its way to one endpoint. Its attempts are logged separately (WebhookAttempt).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # waiting for its first try or a retry (next_attempt_at), or for an earlier sequence
    SENDING = "SENDING"  # claimed by a worker; reclaimed when the worker dies (locked_until passes)
    DELIVERED = "DELIVERED"  # the endpoint answered 2xx
    FAILED = "FAILED"  # given up: retries exhausted, 410 Gone, or the endpoint was disabled


class DisabledReason(StrEnum):
    MANUAL = "MANUAL"  # an operator disabled it
    GONE = "GONE"  # the endpoint answered 410 Gone
    FAILING = "FAILING"  # every attempt failed for the configured period (5 days by default)


DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    # FAILED straight from PENDING: the endpoint was disabled while the delivery waited.
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.SENDING, DeliveryStatus.FAILED}),
    # SENDING -> PENDING also when a worker died mid-try: its lock expired and the row is taken back.
    DeliveryStatus.SENDING: frozenset(
        {DeliveryStatus.DELIVERED, DeliveryStatus.PENDING, DeliveryStatus.FAILED}
    ),
    # Replay: a delivered event can be sent again on request (receivers dedupe by the event id).
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
}

# Standard Webhooks schedule: the first try at once, then these delays after each failed try (5 s, 5 min,
# 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h): ten tries over about three days.
RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.2  # up to 20 % later, so endpoints that failed together do not retry in lockstep
MAX_RETRY_AFTER = 86400.0  # a Retry-After beyond a day is read as a day


class InvalidDeliveryTransition(Exception):
    def __init__(self, current: str, wanted: str) -> None:
        super().__init__(f"a {current} delivery cannot become {wanted}")
        self.current = current
        self.wanted = wanted


def can_move(current: str, wanted: str) -> bool:
    return DeliveryStatus(wanted) in DELIVERY_TRANSITIONS[DeliveryStatus(current)]


def check_move(current: str, wanted: str) -> None:
    if not can_move(current, wanted):
        raise InvalidDeliveryTransition(current, wanted)


def is_success(status_code: int) -> bool:
    """Only 2xx counts. 3xx is a failure: redirects are never followed (the target would be unchecked)."""
    return 200 <= status_code < 300


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value[:12]), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, min((when - now).total_seconds(), MAX_RETRY_AFTER))


def retry_delay(
    tries: int,
    schedule: Sequence[float],
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next try after the `tries`-th try of this round failed; None when it is time to
    give up. A Retry-After longer than the schedule's delay wins: never sooner than the receiver asked."""
    if tries < 1:
        raise ValueError("tries counts from 1")
    if tries > len(schedule):
        return None
    delay = schedule[tries - 1] * (1.0 + (rng or random).uniform(0.0, JITTER))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def next_attempt_at(now: datetime, delay: float) -> datetime:
    return now + timedelta(seconds=delay)


def parse_schedule(value: str) -> tuple[float, ...]:
    """`"5,300,1800"` -> (5.0, 300.0, 1800.0); the setting PASSGATE_WEBHOOK_RETRY_SECONDS uses this form."""
    out = tuple(float(part) for part in value.split(",") if part.strip())
    if any(d < 0 for d in out):
        raise ValueError("retry delays cannot be negative")
    return out
