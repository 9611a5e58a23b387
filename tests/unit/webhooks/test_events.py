import json
from datetime import UTC, datetime

from passgate.mfa.results import ChallengeStarted
from passgate.policy.decisions import Decision
from passgate.webhooks.events import (
    EndpointFilter,
    SessionChange,
    decision_payload,
    encode,
    matching,
    status_payload,
)

NOW = datetime(2026, 11, 29, 10, 0, 0, 123000, tzinfo=UTC)


def change(event_type: str = "LOGIN", channel: str = "SMS") -> SessionChange:
    return SessionChange(
        client_id="cl_1",
        session_id="s-1",
        session_event_type=event_type,
        status="VERIFIED",
        send_attempts=1,
        verification_attempts=2,
        channel=channel,
        sequence=4,
        occurred_at=NOW,
    )


def test_status_payload_is_the_kount_shape_plus_sequence() -> None:
    assert status_payload("e-1", change()) == {
        "id": "e-1",
        "eventType": "MFA.StatusUpdate",
        "apiVersion": "v1",
        "clientId": "cl_1",
        "mfaId": "s-1",
        "mfaStatus": "VERIFIED",
        "sendAttempts": 1,
        "verificationAttempts": 2,
        "channel": "SMS",
        "occurredAt": "2026-11-29T10:00:00.123000Z",
        "sequence": 4,
    }


def test_account_openings_are_verification_events() -> None:
    assert status_payload("e", change("NEW_ACCOUNT_OPENING"))["eventType"] == "Verification.StatusUpdate"


def test_decision_payload_carries_the_decision_not_the_person() -> None:
    decision = Decision(
        event_type="LOGIN",
        decision="CHALLENGE",
        inquiry_id="inq1",
        device_session_id="dev1",
        device_id="x",
        segment="default",
        set_name="login",
        version_name="v1",
        tags=["NEW_DEVICE"],
        tag_weights=[{"name": "NEW_DEVICE", "weight": 10}],
        challenge=ChallengeStarted("s-1", "NONCE_OTH", "EMAIL", "UNKNOWN", NOW, 1, 0, None, {}),
        echoed={"person": {"emailAddress": "jo@example.com"}},
    )
    payload = decision_payload(
        "e-2",
        client_id="cl_1",
        decision_id="d-1",
        request_type="LOGIN",
        decision=decision,
        account_id="acct1",
        occurred_at=NOW,
    )
    assert payload["eventType"] == "Decision.Created"
    assert (payload["decisionId"], payload["decision"], payload["mfaId"], payload["channel"]) == (
        "d-1",
        "CHALLENGE",
        "s-1",
        "EMAIL",
    )
    assert "jo@example.com" not in encode(payload)
    none = decision_payload(
        "e-3",
        client_id="cl_1",
        decision_id="d-2",
        request_type="NEW_ACCOUNT_OPENING",
        decision=Decision(
            "NEW_ACCOUNT_OPENING", "ALLOW", "inq2", "dev2", "y", "default", "nao", "v1", [], [], None, {}
        ),
        account_id=None,
        occurred_at=NOW,
    )
    assert (none["mfaId"], none["channel"], none["tags"]) == (None, None, [])


def test_encode_is_compact_json() -> None:
    body = encode({"a": 1, "b": [1, 2]})
    assert body == '{"a":1,"b":[1,2]}' and json.loads(body) == {"a": 1, "b": [1, 2]}


def test_matching_by_event_type_and_channel() -> None:
    endpoints = [
        EndpointFilter("all", ("MFA.StatusUpdate", "Decision.Created"), None),
        EndpointFilter("sms", ("MFA.StatusUpdate", "Decision.Created"), "SMS"),
        EndpointFilter("email", ("MFA.StatusUpdate",), "EMAIL"),
        EndpointFilter("decisions", ("Decision.Created",), None),
    ]
    assert matching(endpoints, "MFA.StatusUpdate", "SMS") == ["all", "sms"]
    assert matching(endpoints, "MFA.StatusUpdate", "EMAIL") == ["all", "email"]
    # A decision without a challenge has no channel: channel-filtered endpoints do not get it.
    assert matching(endpoints, "Decision.Created", None) == ["all", "decisions"]
    assert matching(endpoints, "Verification.StatusUpdate", "SMS") == []
