"""Kount 360 wire shapes of the domain's results: the JSON bodies the API answers with.

The services return typed results; the camelCase names and the nesting of Kount's API are written here
and nowhere else on the HTTP side.
"""

from __future__ import annotations

from typing import Any

from passgate.contacts import mask
from passgate.mfa.queries import SessionRow
from passgate.mfa.results import (
    AttemptResult,
    ChallengeRefused,
    ChallengeResult,
    ChallengeStarted,
    TimelineEntry,
    UnlockResult,
)
from passgate.mfa.verify import channel_name
from passgate.mfa.views import iso
from passgate.policy.decisions import Decision

# Where the answer carries a started challenge: a login's is MFA, an account opening's a verification.
CHALLENGE_KEYS = {"LOGIN": "mfa", "NEW_ACCOUNT_OPENING": "verification"}


def decision_view(decision: Decision) -> dict[str, Any]:
    """The body of POST /login/v2 and /newaccountopening/v2 (`schemas_decisions.DecisionResponse`)."""
    body: dict[str, Any] = {
        "decision": decision.decision,
        "guidance": decision.decision,
        "inquiryId": decision.inquiry_id,
        "deviceSessionId": decision.device_session_id,
        "deviceId": decision.device_id,
        "tags": decision.tags,
        "userSegment": decision.segment,
        "set": {"name": decision.set_name, "versionName": decision.version_name},
        "tagWeights": decision.tag_weights,
    }
    if decision.challenge is not None:
        body[CHALLENGE_KEYS[decision.event_type]] = challenge_object(decision.challenge)
        body.update(decision.echoed)
    return body


def challenge_view(started: ChallengeStarted) -> dict[str, Any]:
    """The `mfa` / `verification` object of a decision that started a challenge."""
    out: dict[str, Any] = {
        "ID": started.session_id,
        "type": started.type,
        "channel": started.channel,
        "status": started.status,
        "expiresAt": iso(started.expires_at),
        "sendAttempts": started.send_attempts,
        "verificationAttempts": started.verification_attempts,
        "error": None,
    }
    if started.match_number:
        out["matchNumber"] = started.match_number
    return out


def refused_view(refused: ChallengeRefused) -> dict[str, Any]:
    """The `mfa` / `verification` object of a decision whose challenge did not start."""
    out: dict[str, Any] = {
        "ID": None,
        "type": refused.type,
        "channel": refused.channel,
        "status": None,
        "expiresAt": None,
        "sendAttempts": 0,
        "verificationAttempts": 0,
        "error": refused.error,
    }
    if refused.reason is not None:
        out["errorReason"] = refused.reason
    return out


def challenge_object(result: object) -> dict[str, Any]:
    """The `mfa` / `verification` object of a decision's challenge (`Decision.challenge`, the MFA service's
    typed result)."""
    if isinstance(result, ChallengeStarted):
        return challenge_view(result)
    assert isinstance(result, ChallengeRefused), result
    return refused_view(result)


def challenge_answer(result: ChallengeResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """A started or refused challenge as the decision's answer carries it, and the request attributes it
    echoes (`policy.decisions.ChallengeStarter`)."""
    if isinstance(result, ChallengeStarted):
        return challenge_view(result), result.echoed
    return refused_view(result), result.echoed or {}


def verification_view(row: SessionRow, result: AttemptResult | None = None) -> dict[str, Any]:
    """A Verify API verification (`/verify/v1/verifications…`): its session, named as the Verify API
    names things (`to`, `channel` email-code…, `valid`); after a check, `remainingAttempts` as the check
    counted them."""
    remaining = max(0, row.max_attempts - row.verification_attempts)
    if result is not None and result.remaining_attempts is not None:
        remaining = result.remaining_attempts
    return {
        "id": row.id,
        "status": row.status,
        "valid": row.status == "VERIFIED",
        "to": mask(row.channel, row.destination),
        "channel": channel_name(row.channel, row.type),
        "purpose": row.purpose,
        "templateName": row.template_name,
        "locale": row.locale,
        "expiresAt": iso(row.expires_at),
        "sendAttempts": row.send_attempts,
        "verificationAttempts": row.verification_attempts,
        "remainingAttempts": remaining,
        "maxSends": row.max_sends,
        "deliveryStatus": row.delivery_status,
        "terminationReason": row.termination_reason,
        "redirectUrl": row.target_url,
        "sandbox": row.sandbox,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "verifiedAt": iso(row.verified_at) if row.verified_at else None,
    }


def attempt_view(result: AttemptResult) -> dict[str, Any]:
    """The answer of a code verify (and what a link confirm found): the status, and the termination
    reason, remaining attempts and reason where the result has them."""
    out: dict[str, Any] = {"status": result.status}
    if result.termination_reason is not None:
        out["terminationReason"] = result.termination_reason
    if result.remaining_attempts is not None:
        out["remainingAttempts"] = result.remaining_attempts
    if result.reason is not None:
        out["reason"] = result.reason
    return out


def timeline_view(session_id: str, entries: list[TimelineEntry]) -> dict[str, Any]:
    """GET /mfa/v2/{id}/timeline."""
    return {
        "sessionId": session_id,
        "items": [{"type": e.type, "at": iso(e.at), "source": e.source, "data": e.data} for e in entries],
    }


def unlock_view(result: UnlockResult) -> dict[str, Any]:
    """POST /manage/v1/destinations/unlock (and `passgate unlock-destination`)."""
    return {
        "channel": result.channel,
        "destination": result.masked,
        "failures": result.failures,
        "locked": result.locked,
        "waitingUntil": iso(result.waiting_until) if result.waiting_until else None,
        "cleared": result.cleared,
    }
