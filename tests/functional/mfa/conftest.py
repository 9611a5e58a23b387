"""MFA tests run against a real SMTP server and a real HTTP SMS gateway on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.config import Settings
from tests.factories import Tenant, login_body
from tests.servers import HttpReceiver, SmtpSink

# The HTTP SMS gateway's Standard Webhooks secret: Passgate signs its requests with it and checks it on
# the gateway's delivery reports.
GATEWAY_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink, gateway: HttpReceiver) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": smtp.url,
            "mail_from": "Acme <no-reply@acme.example>",
            "sms_provider": "http",
            "sms_http_url": f"{gateway.url}/sms",
            "sms_http_secret": GATEWAY_SECRET,
            "message_retry_seconds": "2,2,2",
        }
    )


def drain(registry: Registry, rounds: int = 20) -> int:
    """Run the dispatcher until nothing is due; returns how many messages it handled."""
    total = 0
    for _ in range(rounds):
        n = asyncio.run(registry.dispatcher.run_once())
        total += n
        if n == 0:
            break
    return total


def sweep(registry: Registry) -> int:
    from passgate.db import transaction

    with transaction(registry.sessions) as session:
        return registry.mfa.expire_due(session)


def challenge(
    http: TestClient, tenant: Tenant, template: str, *, event: str = "LOGIN", **body: Any
) -> dict[str, Any]:
    strategy_key = "mfaTemplateName" if event == "LOGIN" else "verificationTemplateName"
    strategy = {strategy_key: template, **body.pop("strategy", {})}
    payload = login_body(strategy=strategy, **body)
    path = "/login/v2" if event == "LOGIN" else "/newaccountopening/v2"
    r = http.post(path, json=payload, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def session_of(http: TestClient, tenant: Tenant, session_id: str) -> dict[str, Any]:
    r = http.get(f"/mfa/v2/{session_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def timeline(http: TestClient, tenant: Tenant, session_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/mfa/v2/{session_id}/timeline", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])
