"""The MFA session lifecycle (Kount's status enum) as a transition table."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    UNKNOWN = "UNKNOWN"
    MESSAGE_SENT = "MESSAGE_SENT"
    VERIFIED = "VERIFIED"
    VERIFICATION_ATTEMPT_FAILED = "VERIFICATION_ATTEMPT_FAILED"
    TERMINATED = "TERMINATED"
    FAILED_AUTHORIZATION = "FAILED_AUTHORIZATION"
    INVALID = "INVALID"


class TerminationReason(StrEnum):
    EXPIRED = "EXPIRED"
    MAX_ATTEMPTS = "MAX_ATTEMPTS"
    CANCELLED = "CANCELLED"
    NOT_ME = "NOT_ME"
    LOCKED = "LOCKED"
    BOUNCED = "BOUNCED"  # an INVALID session's: its email bounced (docs/operations.md, "Bounces")


TERMINAL = frozenset({Status.VERIFIED, Status.TERMINATED, Status.FAILED_AUTHORIZATION, Status.INVALID})
OPEN = frozenset(set(Status) - TERMINAL)

# Which status may follow which. UNKNOWN -> VERIFIED covers a person faster than the worker's commit.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.UNKNOWN: frozenset(
        {
            Status.MESSAGE_SENT,
            Status.VERIFIED,
            Status.VERIFICATION_ATTEMPT_FAILED,
            Status.TERMINATED,
            Status.FAILED_AUTHORIZATION,
            Status.INVALID,
        }
    ),
    Status.MESSAGE_SENT: frozenset(
        {
            Status.VERIFIED,
            Status.VERIFICATION_ATTEMPT_FAILED,
            Status.TERMINATED,
            Status.FAILED_AUTHORIZATION,
            Status.INVALID,
        }
    ),
    Status.VERIFICATION_ATTEMPT_FAILED: frozenset(
        {
            Status.VERIFIED,
            Status.VERIFICATION_ATTEMPT_FAILED,
            Status.MESSAGE_SENT,
            Status.TERMINATED,
            Status.FAILED_AUTHORIZATION,
            Status.INVALID,
        }
    ),
    Status.VERIFIED: frozenset(),
    Status.TERMINATED: frozenset(),
    Status.FAILED_AUTHORIZATION: frozenset(),
    Status.INVALID: frozenset(),
}


class InvalidTransition(Exception):
    def __init__(self, current: str, wanted: str) -> None:
        super().__init__(f"a {current} session cannot become {wanted}")
        self.current = current
        self.wanted = wanted


def can_move(current: str, wanted: str) -> bool:
    return Status(wanted) in TRANSITIONS[Status(current)]


def check_move(current: str, wanted: str) -> None:
    if not can_move(current, wanted):
        raise InvalidTransition(current, wanted)


def is_terminal(status: str) -> bool:
    return Status(status) in TERMINAL
