"""With private targets not allowed (the production default), loopback, private and plain-http URLs are
refused when registered, naming `url`, and again at send time if an endpoint's address changes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.config import Settings
from passgate.ids import new_uuid
from passgate.webhooks.models import WebhookEndpoint
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import ALL_EVENTS, deliver, deliveries

BASE = "/manage/v1/webhooks"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": False})


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://[::1]/hooks",
        "https://localhost/hooks",
        "https://app.localhost/hooks",
        "https://2130706433/hooks",  # 127.0.0.1 spelled as one number
        "https://0x7f.1/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://10.0.0.8/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/hooks",
        "https://0.0.0.0/hooks",
        "http://127.0.0.1:8080/hooks",
        "http://hooks.example.com/passgate",  # plain http: refused before anything is resolved
    ],
)
def test_private_loopback_and_plain_http_targets_are_refused(
    http: TestClient, tenant: Tenant, url: str
) -> None:
    r = http.post(BASE, json={"url": url, "events": ALL_EVENTS}, headers=tenant.admin_headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["field"] == "url"
    assert "127.0.0.1" not in problem["detail"] and "169.254" not in problem["detail"]
    assert http.get(BASE, headers=tenant.admin_headers).json()["items"] == []


def _endpoint_row(registry: Registry, tenant: Tenant, url: str) -> str:
    """An endpoint as if registered while private targets were allowed (written directly: tests never
    register a non-loopback address)."""
    now = registry.clock.now()
    eid = new_uuid()
    with registry.sessions() as s, s.begin():
        s.add(
            WebhookEndpoint(
                id=eid,
                client_id=tenant.client_id,
                url=url,
                events=ALL_EVENTS,
                signature_scheme="kount-rsa-pss",
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
    return eid


def test_changing_the_url_to_a_private_target_is_refused_too(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    eid = _endpoint_row(registry, tenant, "https://127.0.0.1:9/hooks")
    r = http.patch(f"{BASE}/{eid}", json={"url": "https://[::1]/x"}, headers=tenant.admin_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"
    assert (
        http.get(f"{BASE}/{eid}", headers=tenant.admin_headers).json()["url"] == "https://127.0.0.1:9/hooks"
    )


def test_an_endpoint_that_points_inside_is_refused_at_send_time(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    """Every try checks the target again (a name may have been re-pointed since it was registered):
    the try fails without any connection being opened."""
    eid = _endpoint_row(registry, tenant, "https://127.0.0.1:9/hooks")
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    deliver(registry)
    [d] = deliveries(http, tenant, eid)
    assert d["status"] == "PENDING"
    assert d["attempts"][0]["error"].startswith("target refused")
    assert d["attempts"][0]["statusCode"] is None
