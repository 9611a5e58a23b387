"""The MFA session lifecycle: which status may follow which, and that an illegal move is refused."""

from __future__ import annotations

import pytest

from passgate.mfa.states import (
    OPEN,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    Status,
    can_move,
    check_move,
    is_terminal,
)


def test_every_status_has_a_row_and_open_and_terminal_split_them() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert OPEN | TERMINAL == set(Status) and not OPEN & TERMINAL


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_a_terminal_status_never_changes(status: Status) -> None:
    assert is_terminal(status)
    for wanted in Status:
        assert not can_move(status, wanted)
        with pytest.raises(InvalidTransition) as refused:
            check_move(status, wanted)
        assert (refused.value.current, refused.value.wanted) == (status, wanted)


@pytest.mark.parametrize("status", sorted(OPEN))
def test_an_open_status_can_end_every_way(status: Status) -> None:
    assert not is_terminal(status)
    for wanted in TERMINAL:
        check_move(status, wanted)  # no exception


def test_nothing_goes_back_to_unknown_and_a_sent_session_stays_sent() -> None:
    for status in Status:
        assert not can_move(status, Status.UNKNOWN)
    with pytest.raises(InvalidTransition):
        check_move(Status.MESSAGE_SENT, Status.MESSAGE_SENT)
    check_move(Status.VERIFICATION_ATTEMPT_FAILED, Status.VERIFICATION_ATTEMPT_FAILED)
    check_move(Status.UNKNOWN, Status.VERIFIED)  # a person faster than the worker's commit


def test_an_unknown_status_name_is_an_error() -> None:
    with pytest.raises(ValueError):
        check_move("SENT", Status.VERIFIED)
