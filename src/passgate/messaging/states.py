"""The outbox message lifecycle and delivery statuses, as transition tables."""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "QUEUED"  # waiting for a worker (first try or a retry)
    SENDING = "SENDING"  # claimed by a worker; reclaimed if the worker dies (locked_until passes)
    SENT = "SENT"  # the provider accepted it
    FAILED = "FAILED"  # gave up: permanent refusal or retries exhausted


class DeliveryStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    UNDELIVERED = "UNDELIVERED"
    BOUNCED = "BOUNCED"


MESSAGE_TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    MessageStatus.QUEUED: frozenset({MessageStatus.SENDING, MessageStatus.FAILED}),
    MessageStatus.SENDING: frozenset(
        {MessageStatus.SENT, MessageStatus.QUEUED, MessageStatus.FAILED, MessageStatus.SENDING}
    ),
    MessageStatus.SENT: frozenset(),
    MessageStatus.FAILED: frozenset(),
}

DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.QUEUED: frozenset(
        {DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.BOUNCED}
    ),
    DeliveryStatus.SENT: frozenset(
        {DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.BOUNCED}
    ),
    # A late "undelivered" after "delivered" happens with some carriers; the later report wins.
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.UNDELIVERED, DeliveryStatus.BOUNCED}),
    DeliveryStatus.UNDELIVERED: frozenset(),
    DeliveryStatus.BOUNCED: frozenset(),
}


class IllegalMessageMove(ValueError):
    """A message row asked to change status in a way `MESSAGE_TRANSITIONS` does not allow."""

    def __init__(self, current: str, wanted: str) -> None:
        super().__init__(f"a {current} message cannot become {wanted}")
        self.current = current
        self.wanted = wanted


def can_move(current: str, wanted: str) -> bool:
    return MessageStatus(wanted) in MESSAGE_TRANSITIONS[MessageStatus(current)]


def check_move(current: str, wanted: str) -> None:
    """Refuses a status change the lifecycle does not have (`messaging.queries` asks before each write)."""
    if not can_move(current, wanted):
        raise IllegalMessageMove(current, wanted)


# Retry schedule for temporary failures (seconds after the failed try); then the message fails loudly.
RETRY_SCHEDULE = (2, 5, 15, 30, 60, 120, 300)
