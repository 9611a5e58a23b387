from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from passgate.api.schemas_decisions import DecisionResponse
from passgate.api.views import decision_view
from passgate.mfa.results import ChallengeStarted
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
STARTED = ChallengeStarted(
    "s-1", "NONCE_OTH", "EMAIL", "UNKNOWN", datetime(2026, 11, 29, 10, 10, tzinfo=UTC), 1, 0, None, {}
)


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
    body = decision_view(decision(outcome="CHALLENGE", challenge=STARTED, echoed=echoed))
    assert list(body)[-3:] == ["mfa", "strategy", "person"]
    assert body["mfa"] == MFA and body["person"] == echoed["person"] and "verification" not in body
    assert DecisionResponse.model_validate(body).mfa is not None


def test_a_started_challenge_is_under_verification_for_an_account_opening() -> None:
    body = decision_view(decision("NEW_ACCOUNT_OPENING", "CHALLENGE", challenge=STARTED))
    assert body["verification"] == MFA and "mfa" not in body


def test_a_challenge_that_did_not_start_is_not_in_the_answer() -> None:
    body = decision_view(decision(outcome="CHALLENGE"))
    assert "mfa" not in body and "verification" not in body and "person" not in body


def test_a_started_challenge_is_spelled_as_kount_spells_it() -> None:
    import dataclasses
    from datetime import UTC, datetime

    from passgate.api.views import challenge_answer
    from passgate.mfa.results import ChallengeStarted

    echoed = {"strategy": {"mfaTemplateName": "email-link"}, "person": {"emailAddress": "jo@example.com"}}
    started = ChallengeStarted(
        "s-1", "NONCE_OTH", "EMAIL", "UNKNOWN", datetime(2026, 11, 29, 10, 10, tzinfo=UTC), 1, 0, None, echoed
    )
    assert challenge_answer(started) == (MFA, echoed)
    bound = challenge_answer(dataclasses.replace(started, match_number="42"))[0]
    assert bound == {**MFA, "matchNumber": "42"}


def test_a_refused_challenge_carries_its_error_and_reason() -> None:
    from passgate.api.views import challenge_answer
    from passgate.mfa.results import ChallengeRefused

    assert challenge_answer(ChallengeRefused("NOT_ENOUGH_INFO")) == (
        {
            "ID": None,
            "type": None,
            "channel": None,
            "status": None,
            "expiresAt": None,
            "sendAttempts": 0,
            "verificationAttempts": 0,
            "error": "NOT_ENOUGH_INFO",
        },
        {},
    )
    view, echoed = challenge_answer(
        ChallengeRefused("RATE_LIMITED", "OTP", "SMS", "TOO_MANY_SENDS", {"person": {"phoneNumber": "+1"}})
    )
    assert (view["type"], view["channel"], view["error"], view["errorReason"]) == (
        "OTP",
        "SMS",
        "RATE_LIMITED",
        "TOO_MANY_SENDS",
    )
    assert echoed == {"person": {"phoneNumber": "+1"}}


def test_attempt_answers_have_only_the_keys_that_apply() -> None:
    from passgate.api.views import attempt_view
    from passgate.mfa.results import AttemptResult

    assert attempt_view(AttemptResult("VERIFIED")) == {"status": "VERIFIED"}
    assert attempt_view(AttemptResult("VERIFICATION_ATTEMPT_FAILED", remaining_attempts=4)) == {
        "status": "VERIFICATION_ATTEMPT_FAILED",
        "remainingAttempts": 4,
    }
    assert attempt_view(AttemptResult("TERMINATED", "MAX_ATTEMPTS", 0)) == {
        "status": "TERMINATED",
        "terminationReason": "MAX_ATTEMPTS",
        "remainingAttempts": 0,
    }
    assert attempt_view(AttemptResult("TERMINATED", "NOT_ME", reason="NUMBER_MISMATCH")) == {
        "status": "TERMINATED",
        "terminationReason": "NOT_ME",
        "reason": "NUMBER_MISMATCH",
    }


def test_an_unlock_says_what_it_cleared() -> None:
    from datetime import UTC, datetime

    from passgate.api.views import unlock_view
    from passgate.mfa.results import UnlockResult

    until = datetime(2026, 11, 29, 10, 10, tzinfo=UTC)
    assert unlock_view(UnlockResult("SMS", "+1•••23", 12, False, until)) == {
        "channel": "SMS",
        "destination": "+1•••23",
        "failures": 12,
        "locked": False,
        "waitingUntil": "2026-11-29T10:10:00Z",
        "cleared": True,
    }
    assert unlock_view(UnlockResult("EMAIL", "j•@example.com", 0, False, None))["cleared"] is False
