"""/manage/v1/webhooks: endpoints, validation, tenant isolation, secret and key rotation, the CLI."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.webhooks.models import WebhookEndpoint, WebhookSigningKey
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import (
    ALL_EVENTS,
    Hooks,
    create_endpoint,
    deliver,
    deliveries,
    fresh_tokens,
    kount_valid,
    public_keys,
    standard_valid,
)
from tests.servers import HttpReceiver

BASE = "/manage/v1/webhooks"


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


def test_endpoint_lifecycle(http: TestClient, tenant: Tenant, hooks_server: HttpReceiver) -> None:
    h = tenant.admin_headers
    url = f"{hooks_server.url}/hooks"
    created = create_endpoint(
        http, tenant, url, "standard-webhooks", events=["MFA.StatusUpdate", "MFA.StatusUpdate"], channel="SMS"
    )
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["MFA.StatusUpdate"]  # duplicates dropped
    assert (created["channel"], created["enabled"], created["disabledReason"]) == ("SMS", True, None)
    eid = created["id"]

    got = http.get(f"{BASE}/{eid}", headers=h).json()
    assert "secret" not in got and got["url"] == url and got["signatureScheme"] == "standard-webhooks"
    assert [e["id"] for e in http.get(BASE, headers=h).json()["items"]] == [eid]
    assert "whsec_" not in http.get(BASE, headers=h).text

    r = http.patch(f"{BASE}/{eid}", json={"channel": None, "events": ALL_EVENTS}, headers=h)
    assert r.status_code == 200 and (r.json()["channel"], r.json()["events"]) == (None, ALL_EVENTS)
    assert "secret" not in r.json()
    r = http.patch(
        f"{BASE}/{eid}", json={"signatureScheme": "kount-rsa-pss", "description": "ops"}, headers=h
    )
    assert (r.json()["signatureScheme"], r.json()["description"]) == ("kount-rsa-pss", "ops")
    r = http.patch(f"{BASE}/{eid}", json={"signatureScheme": "standard-webhooks"}, headers=h)
    assert r.json()["secret"].startswith("whsec_") and r.json()["secret"] != created["secret"]

    r = http.post(f"{BASE}/{eid}/disable", headers=h)
    assert (r.json()["enabled"], r.json()["disabledReason"]) == (False, "MANUAL") and r.json()["disabledAt"]
    r = http.patch(f"{BASE}/{eid}", json={"enabled": True}, headers=h)
    assert (r.json()["enabled"], r.json()["disabledAt"]) == (True, None)

    assert http.delete(f"{BASE}/{eid}", headers=h).status_code == 204
    assert http.get(f"{BASE}/{eid}", headers=h).status_code == 404
    assert http.delete(f"{BASE}/{eid}", headers=h).status_code == 404
    assert http.get(BASE, headers=h).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "", "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": 42, "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "https://h.example/" + "a" * 2048, "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "HOOK", "events": []}, "events"),
        ({"url": "HOOK", "events": "MFA.StatusUpdate"}, "events"),
        ({"url": "HOOK", "events": ["MFA.Status"]}, "events[0]"),
        ({"url": "HOOK", "events": ["MFA.StatusUpdate"], "channel": "FAX"}, "channel"),
        ({"url": "HOOK", "events": ["MFA.StatusUpdate"], "signatureScheme": "hmac"}, "signatureScheme"),
        ({"url": "HOOK", "events": ["MFA.StatusUpdate"], "enabled": "yes"}, "enabled"),
        ({"url": "HOOK", "events": ["MFA.StatusUpdate"], "secret": "whsec_x"}, "secret"),
        ({"url": "ftp://127.0.0.1/hooks", "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/hooks", "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "http://127.0.0.1:99999/hooks", "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "http://127.0.0.1/a b", "events": ["MFA.StatusUpdate"]}, "url"),
        ({"url": "http://[fe80::1%25eth0]/", "events": ["MFA.StatusUpdate"]}, "url"),
    ],
)
def test_bad_bodies_are_4xx_problems_naming_the_field(
    http: TestClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    if body.get("url") == "HOOK":
        body["url"] = "http://127.0.0.1:9/hooks"  # refused for another field before anything is called
    r = http.post(BASE, json=body, headers=tenant.admin_headers)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert http.get(BASE, headers=tenant.admin_headers).json()["items"] == []  # nothing half-written


def test_other_bad_input_never_gives_a_5xx(
    http: TestClient, tenant: Tenant, hooks_server: HttpReceiver
) -> None:
    h = tenant.admin_headers
    eid = create_endpoint(http, tenant, f"{hooks_server.url}/hooks")["id"]
    attempts = [
        http.post(BASE, content=b"{not json", headers={**h, "Content-Type": "application/json"}),
        http.post(BASE, json=[], headers=h),
        http.patch(f"{BASE}/{eid}", json={"url": None}, headers=h),
        http.patch(f"{BASE}/{eid}", json={"events": None}, headers=h),
        http.patch(f"{BASE}/{eid}", json={"enabled": None}, headers=h),
        http.patch(f"{BASE}/{eid}", json={"url": "gopher://127.0.0.1/"}, headers=h),
        http.patch(f"{BASE}/{eid}", json={"nope": 1}, headers=h),
        http.get(f"{BASE}/{eid}/deliveries", params={"status": "LOST"}, headers=h),
        http.get(f"{BASE}/{eid}/deliveries", params={"limit": 0}, headers=h),
        http.get(f"{BASE}/{eid}/deliveries", params={"limit": "many"}, headers=h),
        http.get(f"{BASE}/{eid}/deliveries", params={"offset": -1}, headers=h),
        http.post(f"{BASE}/{eid}/rotate-secret", json={"overlapSeconds": -1}, headers=h),
        http.post(f"{BASE}/public-key/rotate", json={"overlapSeconds": 10**9}, headers=h),
        http.post(f"{BASE}/{eid}/replay", json={"eventId": "x" * 100}, headers=h),
        http.get(f"{BASE}/{'x' * 100}", headers=h),
        http.get(f"{BASE}/%00", headers=h),
        http.get(f"{BASE}/{eid}/deliveries", params={"eventId": "a\x00b"}, headers=h),
        http.post(f"{BASE}/{eid}/replay", json={"eventId": "a\x00b"}, headers=h),
        http.patch(f"{BASE}/{eid}", json={"description": "nul\x00inside"}, headers=h),
        http.post(BASE, json={"url": "http://127.0.0.1:9/x\x00", "events": ALL_EVENTS}, headers=h),
        http.post(f"{BASE}/{eid}/enable", headers=tenant.headers),  # no admin scope
    ]
    for r in attempts:
        assert 400 <= r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in r.text
    named = [r.json().get("errors", [{}])[0].get("field") for r in attempts[2:6]]
    assert named == ["url", "events", "enabled", "url"]


def test_a_client_cannot_see_or_touch_another_clients_endpoints(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    eid = kount_hooks.endpoint["id"]
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    deliver(registry)
    [d] = deliveries(http, tenant, eid)
    h = other_tenant.admin_headers
    assert http.get(BASE, headers=h).json()["items"] == []
    for r in (
        http.get(f"{BASE}/{eid}", headers=h),
        http.patch(f"{BASE}/{eid}", json={"enabled": False}, headers=h),
        http.post(f"{BASE}/{eid}/disable", headers=h),
        http.post(f"{BASE}/{eid}/enable", headers=h),
        http.get(f"{BASE}/{eid}/deliveries", headers=h),
        http.post(f"{BASE}/{eid}/replay", json={"eventId": d["eventId"]}, headers=h),
        http.post(f"{BASE}/{eid}/replay", json={"failed": True}, headers=h),
        http.post(f"{BASE}/{eid}/rotate-secret", headers=h),
        http.delete(f"{BASE}/{eid}", headers=h),
    ):
        assert r.status_code == 404, r.text
        assert eid not in r.text or "not found" in r.text
    # Each client has its own signing key, and B's events never reach A's endpoint.
    assert public_keys(http, other_tenant)[0] != public_keys(http, tenant)[0]
    http.post("/login/v2", json=login_body(), headers=other_tenant.headers)
    deliver(registry)
    assert len(kount_hooks.accepted) == 1 and kount_hooks.accepted[0]["clientId"] == tenant.client_id
    assert http.get(f"{BASE}/{eid}", headers=tenant.admin_headers).json()["enabled"] is True


def test_public_key_and_its_rotation(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    h = tenant.admin_headers
    before = http.get(f"{BASE}/public-key", headers=h).json()
    assert before["previous"] == []
    # No end is scheduled for the signing key: its planned year is published (docs/webhooks.md).
    assert parse(before["validUntil"]) - parse(before["createdAt"]) == timedelta(days=365)
    der = base64.b64decode(before["publicKey"])
    key = serialization.load_der_public_key(der)
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048

    rotated = http.post(f"{BASE}/public-key/rotate", json={"overlapSeconds": 3600}, headers=h).json()
    assert rotated["overlapSeconds"] == 3600
    assert rotated["publicKey"] != before["publicKey"]
    [old] = rotated["previous"]
    assert old["publicKey"] == before["publicKey"]
    assert (parse(old["validUntil"]) - clock.now()).total_seconds() == 3600
    assert http.get(f"{BASE}/public-key", headers=h).json() == {
        k: v for k, v in rotated.items() if k != "overlapSeconds"
    }

    # From now on the new key signs: a receiver holding only the old key fails, the new one verifies.
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    kount_hooks.public_keys = [rotated["publicKey"], old["publicKey"]]
    deliver(registry)
    req = kount_hooks.receiver.requests[-1]
    assert kount_valid([rotated["publicKey"]], req.headers, req.body)
    assert not kount_valid([old["publicKey"]], req.headers, req.body)

    clock.advance(3601)
    fresh_tokens(http, tenant)
    after = http.get(f"{BASE}/public-key", headers=tenant.admin_headers).json()
    assert after["publicKey"] == rotated["publicKey"] and after["previous"] == []


def test_rotate_key_from_the_cli(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    settings: Settings,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from passgate import cli

    first = public_keys(http, tenant)[0]
    monkeypatch.setenv("PASSGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PASSGATE_SECRET_KEYS", settings.secret_keys or "")
    monkeypatch.setenv("PASSGATE_DATA_DIR", str(settings.data_dir))
    assert (
        cli.main(["webhooks", "rotate-key", "--client", tenant.client_id, "--overlap", "600", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["overlapSeconds"] == 600 and out["clientId"] == tenant.client_id
    assert out["previous"][0]["publicKey"] == first and out["publicKey"] != first
    assert "PRIVATE" not in json.dumps(out)
    clock.advance(60)  # the CLI ran on the system clock, a little ahead of the test's frozen one
    assert public_keys(http, tenant)[:2] == [out["publicKey"], first]
    assert cli.main(["webhooks", "rotate-key", "--client", "cl_missing", "--json"]) == 1
    assert "no client 'cl_missing'" in capsys.readouterr().err


def test_standard_secret_rotation_signs_with_both_during_the_overlap(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, hooks_server: HttpReceiver
) -> None:
    hooks = Hooks(hooks_server, "standard-webhooks")
    created = create_endpoint(http, tenant, hooks.url, "standard-webhooks")
    old_secret = created["secret"]
    r = http.post(f"{BASE}/{created['id']}/rotate-secret", headers=tenant.admin_headers)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    new_secret = r.json()["secret"]
    assert new_secret != old_secret
    assert (parse(r.json()["previousSecretValidUntil"]) - clock.now()).total_seconds() == 86400
    hooks.secret = new_secret
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    deliver(registry)
    req = hooks.receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split()) == 2
    assert standard_valid(old_secret, req.headers, req.body)  # receivers not yet updated still verify
    assert standard_valid(new_secret, req.headers, req.body)
    assert hooks.accepted and not hooks.bad_signatures

    clock.advance(86401)
    fresh_tokens(http, tenant)
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    deliver(registry)
    req = hooks.receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split()) == 1
    assert standard_valid(new_secret, req.headers, req.body, check_time=False)
    assert not standard_valid(old_secret, req.headers, req.body, check_time=False)
    got = http.get(f"{BASE}/{created['id']}", headers=tenant.admin_headers).json()
    assert got["previousSecretValidUntil"] is None


def test_rotate_secret_of_a_kount_endpoint_is_a_conflict(
    http: TestClient, tenant: Tenant, kount_hooks: Hooks
) -> None:
    r = http.post(f"{BASE}/{kount_hooks.endpoint['id']}/rotate-secret", headers=tenant.admin_headers)
    assert r.status_code == 409 and "public-key/rotate" in r.json()["detail"]


def test_secrets_are_stored_sealed(
    http: TestClient, tenant: Tenant, registry: Registry, hooks_server: HttpReceiver
) -> None:
    created = create_endpoint(http, tenant, f"{hooks_server.url}/hooks", "standard-webhooks")
    public_keys(http, tenant)
    with registry.sessions() as s:
        row = s.get(WebhookEndpoint, created["id"])
        keys = list(
            s.scalars(select(WebhookSigningKey).where(WebhookSigningKey.client_id == tenant.client_id))
        )
    assert row is not None and row.sealed_secret and created["secret"] not in row.sealed_secret
    assert keys and all("PRIVATE KEY" not in k.sealed_private_pem for k in keys)


def test_endpoint_limit(
    http: TestClient, tenant: Tenant, registry: Registry, hooks_server: HttpReceiver
) -> None:
    service = registry.webhooks
    for _ in range(service.max_endpoints):
        create_endpoint(http, tenant, f"{hooks_server.url}/hooks", enabled=False)
    r = http.post(
        BASE, json={"url": f"{hooks_server.url}/hooks", "events": ALL_EVENTS}, headers=tenant.admin_headers
    )
    assert r.status_code == 409 and r.json()["type"].endswith("too-many-endpoints")


def test_http_receivers_on_loopback_are_fine_when_private_targets_are_allowed(
    http: TestClient, tenant: Tenant
) -> None:
    for url in ("http://127.0.0.1:9/hooks", "http://[::1]:9/hooks", "http://localhost:9/hooks"):
        r = http.post(BASE, json={"url": url, "events": ALL_EVENTS}, headers=tenant.admin_headers)
        assert r.status_code == 201, r.text
