"""Kount 360 wire shapes of the domain's results: the JSON bodies the API answers with.

The services return typed results; the camelCase names and the nesting of Kount's API are written here
and nowhere else on the HTTP side.
"""

from __future__ import annotations

from typing import Any

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
        body[CHALLENGE_KEYS[decision.event_type]] = decision.challenge
        body.update(decision.echoed)
    return body
