"""What the MFA service answers: typed results, turned into Kount's wire shapes by `api/views.py`.

Why typed: the service decides (started or refused, verified or not, how many attempts are left); how that
is spelled on the wire (camelCase, which keys appear when) is the API's business, written in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ChallengeStarted:
    """A challenge started: its session as the decision's answer describes it."""

    session_id: str
    type: str  # OTP | NONCE_OTH
    channel: str  # EMAIL | SMS
    status: str
    expires_at: datetime
    send_attempts: int
    verification_attempts: int
    match_number: str | None
    # The request attributes the challenge used (echoed in the decision's answer).
    echoed: dict[str, Any]
    # A started challenge has no error (`policy.decisions.StartedChallenge` reads both kinds alike).
    error: None = None
    # A pending session returned instead of a new one (nothing was sent for this request).
    reused: bool = False


@dataclass(frozen=True, slots=True)
class ChallengeRefused:
    """No challenge started: `error` is Kount's code (NOT_ENOUGH_INFO, TEMPLATE_NOT_FOUND,
    INVALID_DESTINATION, RATE_LIMITED), `reason` says more where there is more to say (for RATE_LIMITED:
    TOO_MANY_SENDS, DESTINATION_LOCKED, ACCOUNT_LOCKED, COUNTRY_BREAKER_OPEN)."""

    error: str
    type: str | None = None
    channel: str | None = None
    reason: str | None = None
    echoed: dict[str, Any] | None = None
    # No session was made.
    session_id: None = None


ChallengeResult = ChallengeStarted | ChallengeRefused


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The outcome of a code verify or of a link confirm. `remaining_attempts` is given after a failed code
    (0 when it used the last); `reason` when a link confirm failed on the number picked."""

    status: str
    termination_reason: str | None = None
    remaining_attempts: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    type: str
    at: datetime
    source: str
    data: Any


@dataclass(frozen=True)
class UnlockResult:
    """What `MfaService.unlock_destination` found and cleared (the state before it)."""

    channel: str
    masked: str
    failures: int
    locked: bool
    waiting_until: datetime | None

    @property
    def cleared(self) -> bool:
        """Whether there was anything to clear."""
        return self.failures > 0 or self.locked or self.waiting_until is not None
