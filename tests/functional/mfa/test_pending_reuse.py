"""A CHALLENGE for a person who has one pending returns that one (as Twilio Verify does): one message, the
same mfa.ID. `strategy.forceNewChallenge` asks for a new one; another device never gets it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant, login_body
from tests.functional.mfa.conftest import challenge, drain, timeline
from tests.servers import SmtpSink


def _login(http: TestClient, tenant: Tenant, device: str = "devreuse1", **strategy: Any) -> dict[str, Any]:
    return challenge(
        http,
        tenant,
        "email-code",
        person={"emailAddress": "pending.reuse@example.com"},
        account={"id": "acct-reuse", "username": "reuse"},
        deviceSessionId=device,
        strategy=strategy,
    )


def _mails(smtp: SmtpSink) -> list[object]:
    # Only this test's address: the outbox is shared by the tests of a run.
    return [m for m in smtp.received if m.rcpt_tos == ["pending.reuse@example.com"]]


def test_two_challenges_one_message_then_force_new(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    first = _login(http, tenant)["mfa"]
    second = _login(http, tenant)
    assert second["decision"] == "CHALLENGE"
    assert second["mfa"]["ID"] == first["ID"]
    assert (second["mfa"]["sendAttempts"], second["mfa"]["error"]) == (1, None)
    assert second["person"] == {"emailAddress": "pending.reuse@example.com"}
    drain(registry)
    assert len(_mails(smtp)) == 1
    # The second decision is on the session's timeline (and sent nothing).
    reused = [e for e in timeline(http, tenant, first["ID"]) if e["type"] == "REUSED"]
    assert len(reused) == 1 and reused[0]["data"]["decisionId"]

    forced = _login(http, tenant, forceNewChallenge=True)["mfa"]
    assert forced["ID"] != first["ID"]
    # Another device of the same account is another login: its own session, its own message.
    elsewhere = _login(http, tenant, device="devreuse2")["mfa"]
    assert elsewhere["ID"] not in (first["ID"], forced["ID"])
    drain(registry)
    assert len(_mails(smtp)) == 3
    # After a forced new one, the newest pending session is the one returned.
    assert _login(http, tenant)["mfa"]["ID"] == forced["ID"]


def test_a_closed_session_is_not_returned(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    first = _login(http, tenant, device="devreuse3")["mfa"]
    assert http.post(f"/mfa/v2/{first['ID']}/cancel", headers=tenant.headers).status_code == 200
    assert _login(http, tenant, device="devreuse3")["mfa"]["ID"] != first["ID"]


def test_force_new_challenge_must_be_a_boolean(http: TestClient, tenant: Tenant) -> None:
    body = login_body(strategy={"mfaTemplateName": "email-code", "forceNewChallenge": "yes"})
    r = http.post("/login/v2", json=body, headers=tenant.headers)
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == ["strategy.forceNewChallenge"]
