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
    SMS_BREAKER_CHANGED = "SmsBreaker.StateChanged"  # an SMS pumping breaker opened, half-opened or closed


# "Send test event" in the console and POST /manage/v1/webhooks/{id}/test: delivered to that one endpoint,
# whatever it subscribes to, signed and retried like any other event. Not an EventType: nobody subscribes to it.
TEST_EVENT_TYPE = "Webhook.Test"


def ping_payload(event_id: str, *, client_id: str, endpoint_id: str, occurred_at: datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": TEST_EVENT_TYPE,
        "apiVersion": API_VERSION,
        "clientId": client_id,
        "endpointId": endpoint_id,
        "test": True,
        "occurredAt": iso(occurred_at),
    }


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


class BreakerFacts(Protocol):
    """What a breaker event tells of a state change (`mfa.breaker_services.BreakerTransition` has it)."""

    @property
    def client_id(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def from_state(self) -> str: ...
    @property
    def to_state(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def sent(self) -> int: ...
    @property
    def verified(self) -> int: ...
    @property
    def conversion(self) -> float | None: ...
    @property
    def window_seconds(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def probe_at(self) -> datetime | None: ...
    @property
    def sequence(self) -> int: ...


def breaker_payload(event_id: str, change: BreakerFacts) -> dict[str, Any]:
    """An SMS pumping breaker's state change (docs/mfa.md, "SMS pumping breaker"). `sent`, `verified` and
    `conversion` are the counts of the window that judged it; `probeAt` is when an open breaker starts
    letting probe sends through (null for other states); `mode` says whether sends were refused
    (`enforce`) or only watched (`monitor`); `sequence` grows with every change of the one breaker
    (client and country), so a receiver can order changes that share a time."""
    return {
        "id": event_id,
        "eventType": EventType.SMS_BREAKER_CHANGED.value,
        "apiVersion": API_VERSION,
        "clientId": change.client_id,
        "country": change.country,
        "fromState": change.from_state,
        "toState": change.to_state,
        "mode": change.mode,
        "sent": change.sent,
        "verified": change.verified,
        "conversion": change.conversion,
        "windowSeconds": change.window_seconds,
        "probeAt": iso(change.probe_at) if change.probe_at is not None else None,
        "channel": "SMS",
        "occurredAt": iso(change.occurred_at),
        "sequence": change.sequence,
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
