from __future__ import annotations

from typing import Any

from pydantic_core import to_json

from passgate.api.schemas_decisions import DecisionResponse
from passgate.api.views import decision_view
from passgate.policy.decisions import Decision

MFA = {
    "ID": "s-1",
    "type": "NONCE_OTH",
    "channel": "EMAIL",
    "status": "UNKNOWN",
    "expiresAt": "2026-11-29T10:10:00Z",
    "sendAttempts": 1,
    "verificationAttempts": 0,
    "error": None,
}


def decision(event_type: str = "LOGIN", outcome: str = "ALLOW", **kw: Any) -> Decision:
    values: dict[str, Any] = {
        "event_type": event_type,
        "decision": outcome,
        "inquiry_id": "inq1",
        "device_session_id": "ds1",
        "device_id": "5f1c",
        "segment": "default",
        "set_name": "login",
        "version_name": "v3",
        "tags": [],
        "tag_weights": [],
        "challenge": None,
        "echoed": {},
    }
    return Decision(**(values | kw))


def test_an_allow_is_the_kount_answer_in_kount_order() -> None:
    body = decision_view(decision(tags=["KNOWN"], tag_weights=[{"name": "KNOWN", "weight": -5}]))
    assert to_json(body) == (
        b'{"decision":"ALLOW","guidance":"ALLOW","inquiryId":"inq1","deviceSessionId":"ds1","deviceId":"5f1c",'
        b'"tags":["KNOWN"],"userSegment":"default","set":{"name":"login","versionName":"v3"},'
        b'"tagWeights":[{"name":"KNOWN","weight":-5}]}'
    )
    DecisionResponse.model_validate(body)


def test_a_started_challenge_is_under_mfa_for_a_login_with_what_it_used() -> None:
    echoed = {"strategy": {"mfaTemplateName": "email-link"}, "person": {"emailAddress": "jo@example.com"}}
    body = decision_view(decision(outcome="CHALLENGE", challenge=MFA, echoed=echoed))
    assert list(body)[-3:] == ["mfa", "strategy", "person"]
    assert body["mfa"] == MFA and body["person"] == echoed["person"] and "verification" not in body
    assert DecisionResponse.model_validate(body).mfa is not None


def test_a_started_challenge_is_under_verification_for_an_account_opening() -> None:
    body = decision_view(decision("NEW_ACCOUNT_OPENING", "CHALLENGE", challenge=MFA))
    assert body["verification"] == MFA and "mfa" not in body


def test_a_challenge_that_did_not_start_is_not_in_the_answer() -> None:
    body = decision_view(decision(outcome="CHALLENGE"))
    assert "mfa" not in body and "verification" not in body and "person" not in body
