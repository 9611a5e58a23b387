"""The console's own sign-in (an email-link challenge of the operator's client) is not the business's
traffic: it never reaches the client's webhooks and never counts in its overview."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.config import Settings
from passgate.console.stats import PERIODS, overview
from passgate.db import transaction
from passgate.mfa.models import MfaSession
from passgate.webhooks.models import WebhookEvent
from tests.factories import Tenant


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True})  # the endpoint below is on loopback


def test_console_sign_in_is_kept_out_of_webhooks_and_statistics(
    http: TestClient, registry: Registry, tenant: Tenant, people: Any
) -> None:
    r = http.post(
        "/manage/v1/webhooks",
        json={
            "url": "http://127.0.0.1:9/hooks",
            "events": ["MFA.StatusUpdate", "Verification.StatusUpdate", "Decision.Created"],
            "signatureScheme": "kount-rsa-pss",
        },
        headers=tenant.admin_headers,
    )
    assert r.status_code == 201, r.text
    people("owner")  # signs in through the email link: a session MESSAGE_SENT, then VERIFIED
    with transaction(registry.sessions) as session:
        mine = session.scalars(select(MfaSession).where(MfaSession.client_id == tenant.client_id)).all()
        assert [m.source for m in mine] == ["console"] and mine[0].status == "VERIFIED"
        events = session.scalars(select(WebhookEvent).where(WebhookEvent.client_id == tenant.client_id)).all()
        assert events == []
        seen = overview(session, tenant.client_id, registry.clock.now(), PERIODS["24h"])
    assert all(n == 0 for by_status in seen.challenges.values() for n in by_status.values())
