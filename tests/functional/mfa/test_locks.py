"""A locked person gets no new challenge: after the consecutive failures that lock an account (or a
destination), a challenge for it, to any address, answers RATE_LIMITED with the reason and sends
nothing, and a resend of one of its open sessions is refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from passgate.bootstrap import Registry
from passgate.messaging.models import Message
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain
from tests.servers import SmtpSink

PHONE = "+12015550166"


def _lock_account(http: TestClient, tenant: Tenant, account: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import passgate.mfa.services as services

    monkeypatch.setattr(services, "LOCK_AFTER", 3)  # instead of 100; no waits before it
    monkeypatch.setattr(services, "THROTTLE_AFTER", 1000)
    m = challenge(
        http, tenant, "sms-code", person={"phoneNumber": PHONE}, account={"id": account, "username": "a"}
    )
    for _ in range(3):
        r = http.post(f"/mfa/v2/{m['mfa']['ID']}/verify", json={"code": "999999"}, headers=tenant.headers)
        assert r.json()["status"] == "VERIFICATION_ATTEMPT_FAILED"


def _messages(registry: Registry, tenant: Tenant) -> int:
    with registry.sessions() as s:
        count = s.scalar(
            select(func.count()).select_from(Message).where(Message.client_id == tenant.client_id)
        )
        return int(count or 0)


def test_a_locked_account_gets_no_challenge_at_another_address(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An email challenge for the same account, opened before the lock, to resend later.
    before = challenge(
        http,
        tenant,
        "email-code",
        person={"emailAddress": "early@example.com"},
        account={"id": "acct-l", "username": "a"},
    )["mfa"]
    _lock_account(http, tenant, "acct-l", monkeypatch)
    queued = _messages(registry, tenant)
    out = challenge(
        http,
        tenant,
        "email-link",
        person={"emailAddress": "elsewhere@example.com"},
        account={"id": "acct-l", "username": "a"},
    )
    assert _messages(registry, tenant) == queued  # nothing queued, so nothing sent
    assert (out["mfa"]["error"], out["mfa"].get("errorReason"), out["mfa"]["ID"]) == (
        "RATE_LIMITED",
        "ACCOUNT_LOCKED",
        None,
    )
    r = http.post(f"/mfa/v2/{before['ID']}/resend", headers=tenant.headers)
    assert r.status_code == 429 and r.json()["locked"] is True
    drain(registry)
    assert [m.rcpt_tos for m in smtp.received] == [["early@example.com"]]  # only the message sent before
    # Another account at another address is not affected.
    other = challenge(
        http,
        tenant,
        "email-link",
        person={"emailAddress": "other@example.com"},
        account={"id": "acct-m", "username": "b"},
    )
    assert other["mfa"]["error"] is None and "errorReason" not in other["mfa"]


def test_a_locked_destination_says_so(
    http: TestClient, tenant: Tenant, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lock_account(http, tenant, "acct-d", monkeypatch)
    out = challenge(
        http, tenant, "sms-code", person={"phoneNumber": PHONE}, account={"id": "acct-new", "username": "c"}
    )
    assert (out["mfa"]["error"], out["mfa"].get("errorReason")) == ("RATE_LIMITED", "DESTINATION_LOCKED")
