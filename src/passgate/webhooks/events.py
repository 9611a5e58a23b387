"""Webhook event types, payloads and endpoint matching. Pure: the services hand in plain values.

Payloads follow the Kount 360 webhook and add `sequence`, the per-session order of status
changes, so a receiver can tell MESSAGE_SENT from a later VERIFIED whatever order the network delivers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

API_VERSION = "v1"


class EventType(StrEnum):
    MFA_STATUS = "MFA.StatusUpdate"  # status change of a LOGIN session
    VERIFICATION_STATUS = "Verification.StatusUpdate"  # status change of a NEW_ACCOUNT_OPENING session
    DECISION_CREATED = "Decision.Created"  # every decision (ALLOW, CHALLENGE, BLOCK)


class SignatureScheme(StrEnum):
    KOUNT = "kount-rsa-pss"
    STANDARD = "standard-webhooks"


class Channel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"


# The event type of a Verify API session (`mfa.verify`): its status changes are `Verification.StatusUpdate`
# events that carry `"source": "verify"`.
VERIFY_SESSION = "VERIFY"


def status_event_type(session_event_type: str) -> EventType:
    """LOGIN sessions are `MFA`, account openings (and Verify API sessions) `Verification` (the Kount
    split)."""
    return EventType.MFA_STATUS if session_event_type == "LOGIN" else EventType.VERIFICATION_STATUS


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, like every other time Passgate puts on the wire."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SessionChange:
    """What a status listener knows about one change of an MFA/verification session."""

    client_id: str
    session_id: str
    session_event_type: str  # LOGIN | NEW_ACCOUNT_OPENING | VERIFY
    status: str
    send_attempts: int
    verification_attempts: int
    channel: str
    sequence: int
    occurred_at: datetime


def status_payload(event_id: str, change: SessionChange) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": event_id,
        "eventType": status_event_type(change.session_event_type).value,
        "apiVersion": API_VERSION,
        "clientId": change.client_id,
        "mfaId": change.session_id,
        "mfaStatus": change.status,
        "sendAttempts": change.send_attempts,
        "verificationAttempts": change.verification_attempts,
        "channel": change.channel,
        "occurredAt": iso(change.occurred_at),
        "sequence": change.sequence,
    }
    if change.session_event_type == VERIFY_SESSION:
        # Beside the Kount fields: a receiver that serves both kinds tells a Verify API session from an
        # account opening's.
        payload["source"] = "verify"
    return payload


class ChallengeFacts(Protocol):
    """What a decision event tells of the decision's challenge (the MFA service's typed result)."""

    @property
    def session_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...


class DecisionFacts(Protocol):
    """What a decision event tells of a decision (`policy.decisions.Decision` has it)."""

    @property
    def decision(self) -> str: ...
    @property
    def inquiry_id(self) -> str: ...
    @property
    def device_session_id(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def segment(self) -> str: ...
    @property
    def set_name(self) -> str: ...
    @property
    def version_name(self) -> str: ...
    @property
    def challenge(self) -> ChallengeFacts | None: ...


def decision_payload(
    event_id: str,
    *,
    client_id: str,
    decision_id: str,
    request_type: str,
    decision: DecisionFacts,
    account_id: str | None,
    occurred_at: datetime,
) -> dict[str, Any]:
    """The decision as the API answered it, less anything personal (no email address or phone number).

    `requestType` is the Kount event type (LOGIN or NEW_ACCOUNT_OPENING); `mfaId`, `mfaType`, `channel` and
    `mfaError` describe the challenge the decision started, and are null when it started none.
    """
    challenge = decision.challenge
    return {
        "id": event_id,
        "eventType": EventType.DECISION_CREATED.value,
        "apiVersion": API_VERSION,
        "clientId": client_id,
        "decisionId": decision_id,
        "requestType": request_type,
        "inquiryId": decision.inquiry_id,
        "deviceSessionId": decision.device_session_id,
        "accountId": account_id,
        "decision": decision.decision,
        "tags": list(decision.tags),
        "userSegment": decision.segment,
        "set": {"name": decision.set_name, "versionName": decision.version_name},
        "mfaId": challenge.session_id if challenge else None,
        "mfaType": challenge.type if challenge else None,
        "channel": challenge.channel if challenge else None,
        "mfaError": challenge.error if challenge else None,
        "occurredAt": iso(occurred_at),
    }


def encode(payload: Mapping[str, Any]) -> str:
    """The exact body sent on every try: stored as text so retries and replays send the same bytes."""
    return json.dumps(payload, separators=(",", ":"))


@dataclass(frozen=True)
class EndpointFilter:
    id: str
    events: tuple[str, ...]
    channel: str | None


def matching(endpoints: Iterable[EndpointFilter], event_type: str, channel: str | None) -> list[str]:
    """Ids of the endpoints that want this event. A channel filter only passes events of that channel, so
    a decision that started no challenge (no channel) does not reach an endpoint filtered to EMAIL."""
    return [e.id for e in endpoints if event_type in e.events and (e.channel is None or e.channel == channel)]
