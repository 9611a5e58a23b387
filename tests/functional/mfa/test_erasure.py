"""Erasing one account's personal data (DELETE /manage/v1/accounts/{id}/data): every table that holds it,
for its client only, recorded in the audit log without the data; real challenges sent through real SMTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from passgate.audit.models import AuditEntry
from passgate.bootstrap import Registry
from passgate.config import Settings
from passgate.db import transaction
from passgate.messaging.models import Message, MessageAttempt
from passgate.mfa.models import FailureCounter, MfaEvent, MfaSecret, MfaSession
from passgate.policy.models import Decision, Device, VelocityCounter
from passgate.policy.velocity import DatabaseVelocityStore, _hash
from passgate.webhooks.models import WebhookDelivery, WebhookEvent
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain

ACCOUNT = "acct-erase-1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True})


@pytest.fixture
def registry(registry: Registry) -> Registry:
    registry.signals.velocity = DatabaseVelocityStore()  # counters in the database, to be looked at
    return registry


def subscribe(http: TestClient, tenant: Tenant) -> None:
    """An endpoint wanting decision events (never reached here: its deliveries wait)."""
    body = {
        "url": "http://127.0.0.1:9/hooks",
        "events": ["Decision.Created", "MFA.StatusUpdate"],
        "signatureScheme": "standard-webhooks",
    }
    r = http.post("/manage/v1/webhooks", json=body, headers=tenant.admin_headers)
    assert r.status_code == 201, r.text


def activity(http: TestClient, tenant: Tenant, account: str, email: str) -> list[str]:
    """Two challenges (one sent, one still in the outbox), a failed code, a trusted device."""
    person = {"emailAddress": email, "name": {"first": "Jo", "last": "Doe"}}
    acct = {"id": account, "username": "jo"}
    first = challenge(http, tenant, "email-code", person=person, account=acct)["mfa"]
    r = http.post(f"/mfa/v2/{first['ID']}/verify", json={"code": "999999"}, headers=tenant.headers)
    assert r.json()["status"] == "VERIFICATION_ATTEMPT_FAILED", r.text
    r = http.post(
        "/trusted-device",
        json={"accountId": account, "deviceSessionId": "dev-erase", "trustState": "TRUSTED"},
        headers=tenant.headers,
    )
    assert r.status_code in (200, 201), r.text
    return [first["ID"]]


def rows(registry: Registry, client_id: str, account: str, email: str) -> dict[str, int]:
    """What the database holds of one account (and its address) of one client."""
    with transaction(registry.sessions) as s:
        sessions = select(MfaSession.id).where(
            MfaSession.client_id == client_id, MfaSession.account_id == account
        )
        messages = select(Message.id).where(Message.session_id.in_(sessions))
        body = '"accountId":' + json.dumps(account)

        def count(where: Any) -> int:
            return int(s.scalar(select(func.count()).where(where)) or 0)

        events = select(WebhookEvent.id).where(
            WebhookEvent.client_id == client_id, WebhookEvent.body.contains(body, autoescape=True)
        )
        return {
            "sessions": count(MfaSession.id.in_(sessions)),
            "events": count(MfaEvent.session_id.in_(sessions)),
            "secrets": count(MfaSecret.session_id.in_(sessions)),
            "messages": count(Message.id.in_(messages)),
            "attempts": count(MessageAttempt.message_id.in_(messages)),
            "decisions": count((Decision.client_id == client_id) & (Decision.account_id == account)),
            "devices": count((Device.client_id == client_id) & (Device.account_id == account)),
            "decisionEvents": count(WebhookEvent.id.in_(events)),
            "deliveries": count(WebhookDelivery.event_id.in_(events)),
            "accountCounters": count(
                (FailureCounter.client_id == client_id)
                & (FailureCounter.scope == "account")
                & FailureCounter.subject_hash.in_(registry.keyring.all_hashes("account", account))
            ),
            "velocity": count(
                (VelocityCounter.client_id == client_id)
                & (
                    (
                        (VelocityCounter.dimension == "account")
                        & (VelocityCounter.key_hash == _hash(client_id, "account", account))
                    )
                    | (
                        (VelocityCounter.dimension == "email")
                        & (VelocityCounter.key_hash == _hash(client_id, "email", email))
                    )
                )
            ),
        }


def test_erasure_removes_one_accounts_data_and_nothing_else(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry
) -> None:
    subscribe(http, tenant)
    email = "erase-me@example.com"
    activity(http, tenant, ACCOUNT, email)
    drain(registry)  # the first message goes out through SMTP: SENT, with its attempt
    person = {"emailAddress": email}
    pending = challenge(http, tenant, "email-code", person=person, account={"id": ACCOUNT, "username": "jo"})
    # Another account of the same client, and the same account id at another client.
    activity(http, tenant, "acct-keep-1", "keep-me@example.com")
    activity(http, other_tenant, ACCOUNT, email)
    drain(registry)

    before = rows(registry, tenant.client_id, ACCOUNT, email)
    assert before["sessions"] == 2 and before["decisions"] == 2 and before["devices"] >= 1
    assert before["messages"] == 2 and before["attempts"] >= 1 and before["events"] >= 4
    assert before["accountCounters"] == 1 and before["decisionEvents"] == 2 and before["deliveries"] == 2
    assert before["velocity"] >= 1
    kept_same_client = rows(registry, tenant.client_id, "acct-keep-1", "keep-me@example.com")
    kept_other_client = rows(registry, other_tenant.client_id, ACCOUNT, email)
    with transaction(registry.sessions) as s:
        pending_message = s.scalar(select(Message.status).where(Message.session_id == pending["mfa"]["ID"]))
    assert pending_message is not None  # a message in the outbox

    # A key without the admin scope may not erase.
    r = http.delete(f"/manage/v1/accounts/{ACCOUNT}/data", headers=tenant.headers)
    assert r.status_code == 403, r.text

    r = http.delete(f"/manage/v1/accounts/{ACCOUNT}/data", headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["accountId"] == ACCOUNT
    assert answer["anonymised"] == {"decisions": 2}
    deleted = answer["deleted"]
    assert deleted["mfa_sessions"] == 2 and deleted["messages"] == 2
    assert deleted["message_attempts"] == before["attempts"] and deleted["mfa_events"] == before["events"]
    assert deleted["devices"] == before["devices"] and deleted["mfa_failure_counters"] == 1
    assert deleted["webhook_events"] == 2 and deleted["webhook_deliveries"] == 2
    assert deleted["velocity_counters"] == before["velocity"]

    after = rows(registry, tenant.client_id, ACCOUNT, email)
    assert after == {k: 0 for k in after}  # velocity counters of the account and its address included
    with transaction(registry.sessions) as s:
        # Decisions stay for the statistics, with nothing that leads to the person.
        kept = s.scalars(
            select(Decision).where(Decision.client_id == tenant.client_id, Decision.account_id.is_(None))
        ).all()
        blanked = [d for d in kept if d.request == {} and d.inquiry_id == "" and d.device_session_id == ""]
        assert len(blanked) == 2 and {d.decision for d in blanked} == {"CHALLENGE"}
        assert email not in json.dumps([d.request for d in kept])
        # The pending message is gone: it is never sent.
        assert s.scalar(select(func.count()).where(Message.session_id == pending["mfa"]["ID"])) == 0

    # The other account and the other client's account of the same id are untouched.
    assert rows(registry, tenant.client_id, "acct-keep-1", "keep-me@example.com") == kept_same_client
    assert rows(registry, other_tenant.client_id, ACCOUNT, email) == kept_other_client
    assert kept_other_client["sessions"] == 1 and kept_other_client["devices"] >= 1

    # The audit log says who, when, which account and how many rows; never the data.
    r = http.get("/manage/v1/audit-log", headers=tenant.admin_headers)
    [entry] = [e for e in r.json()["items"] if e["action"] == "account.erased"]
    assert entry["actor"] == f"apikey:{tenant.key_id}" and entry["target"] == ACCOUNT
    assert entry["details"] == {"deleted": deleted, "anonymised": {"decisions": 2}}
    assert email not in json.dumps(entry) and "Doe" not in json.dumps(entry)
    r = http.get("/manage/v1/audit-log", headers=other_tenant.admin_headers)
    assert not [e for e in r.json()["items"] if e["action"] == "account.erased"]

    # Erasing again finds nothing, and says so.
    r = http.delete(f"/manage/v1/accounts/{ACCOUNT}/data", headers=tenant.admin_headers)
    assert r.status_code == 200 and not any(r.json()["deleted"].values()), r.text
    assert r.json()["anonymised"] == {"decisions": 0}
    with transaction(registry.sessions) as s:
        entries = s.scalar(
            select(func.count()).where(
                AuditEntry.client_id == tenant.client_id, AuditEntry.action == "account.erased"
            )
        )
    assert entries == 2


def test_an_account_id_too_long_is_refused_naming_it(http: TestClient, tenant: Tenant) -> None:
    r = http.delete(f"/manage/v1/accounts/{'a' * 257}/data", headers=tenant.admin_headers)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "account_id" in json.dumps(r.json()["errors"])
