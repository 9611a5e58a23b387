"""The outbox message lifecycle (`MESSAGE_TRANSITIONS`) and its check."""

from __future__ import annotations

import itertools

import pytest

from passgate.messaging.states import (
    MESSAGE_TRANSITIONS,
    IllegalMessageMove,
    MessageStatus,
    can_move,
    check_move,
)

ALLOWED = {
    ("QUEUED", "SENDING"),  # claimed
    ("QUEUED", "FAILED"),
    ("SENDING", "SENDING"),  # a stale claim taken over
    ("SENDING", "SENT"),
    ("SENDING", "QUEUED"),  # retried, or deferred to the next round
    ("SENDING", "FAILED"),  # given up, or skipped (its session closed)
}


def test_the_lifecycle_is_exactly_this() -> None:
    got = {(str(a), str(b)) for a, targets in MESSAGE_TRANSITIONS.items() for b in targets}
    assert got == ALLOWED


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(MessageStatus, MessageStatus)))
def test_check_move_refuses_every_move_the_lifecycle_does_not_have(
    current: MessageStatus, wanted: MessageStatus
) -> None:
    if (current.value, wanted.value) in ALLOWED:
        assert can_move(current, wanted)
        check_move(current, wanted)
    else:
        assert not can_move(current, wanted)
        with pytest.raises(IllegalMessageMove) as refused:
            check_move(current, wanted)
        assert (refused.value.current, refused.value.wanted) == (current, wanted)


def test_sent_and_failed_are_final() -> None:
    assert MESSAGE_TRANSITIONS[MessageStatus.SENT] == frozenset()
    assert MESSAGE_TRANSITIONS[MessageStatus.FAILED] == frozenset()
