"""Unlocking a destination after its consecutive failures locked it: the management API and the command
line (the console's form is in tests/functional/console/test_unlock.py), each recorded in the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.config import Settings
from tests.cli import passgate, passgate_json
from tests.conftest import TEST_SECRET
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge

UNLOCK = "/manage/v1/destinations/unlock"


@pytest.fixture(autouse=True)
def _lock_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    import passgate.mfa.services as services

    monkeypatch.setattr(services, "LOCK_AFTER", 3)  # instead of 100; no waits before it
    monkeypatch.setattr(services, "THROTTLE_AFTER", 1000)


def lock(http: TestClient, tenant: Tenant, person: dict[str, str]) -> None:
    """Three wrong codes lock the destination: new challenges to it answer RATE_LIMITED."""
    template = "sms-code" if "phoneNumber" in person else "email-code"
    m = challenge(http, tenant, template, person=person)["mfa"]
    for _ in range(3):
        r = http.post(f"/mfa/v2/{m['ID']}/verify", json={"code": "999999"}, headers=tenant.headers)
        assert r.json()["status"] == "VERIFICATION_ATTEMPT_FAILED", r.text
    assert challenged(http, tenant, person).get("error") == "RATE_LIMITED"


def challenged(http: TestClient, tenant: Tenant, person: dict[str, str]) -> dict[str, Any]:
    template = "sms-code" if "phoneNumber" in person else "email-code"
    return dict(challenge(http, tenant, template, person=person)["mfa"])


def audit(http: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = http.get("/manage/v1/audit-log", headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["action"] == "destination.unlocked"]


def test_the_api_unlocks_a_phone_number_for_its_client_only(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry
) -> None:
    phone = "+12015550166"
    lock(http, tenant, {"phoneNumber": phone})
    # Another client's unlock finds nothing of this client's.
    r = http.post(UNLOCK, json={"phoneNumber": phone}, headers=other_tenant.admin_headers)
    assert r.status_code == 200 and r.json()["cleared"] is False
    assert challenged(http, tenant, {"phoneNumber": phone}).get("error") == "RATE_LIMITED"

    # Written as a person would; normalised to E.164 and hashed as the challenge did.
    r = http.post(UNLOCK, json={"phoneNumber": "+1 (201) 555-0166"}, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "channel": "SMS",
        "destination": "+12•••••••66",
        "failures": 3,
        "locked": True,
        "waitingUntil": None,
        "cleared": True,
    }
    again = challenged(http, tenant, {"phoneNumber": phone})
    assert again.get("error") is None and again["ID"]
    r = http.post(UNLOCK, json={"phoneNumber": phone}, headers=tenant.admin_headers)
    assert (r.json()["cleared"], r.json()["failures"]) == (False, 0)
    [first, _] = sorted(audit(http, tenant), key=lambda e: e["id"])
    assert first["actor"] == f"apikey:{tenant.key_id}" and first["target"] == "+12•••••••66"
    assert first["details"] == {"channel": "SMS", "failures": 3, "locked": True}
    assert phone not in str(audit(http, tenant))  # the audit log keeps the masked form only


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"phoneNumber": "+12015550166", "emailAddress": "jo@example.com"}, "body"),
        ({"phoneNumber": "12"}, "phoneNumber"),
        ({"phoneNumber": "call me"}, "phoneNumber"),
        ({"emailAddress": "not an address"}, "emailAddress"),
        ({"emailAddress": "jo@example.com", "extra": 1}, "extra"),
        ({"emailAddress": 5}, "emailAddress"),
    ],
)
def test_bad_bodies_are_problems_naming_the_field(
    http: TestClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    r = http.post(UNLOCK, json=body, headers=tenant.admin_headers)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert audit(http, tenant) == []


def test_the_api_needs_the_admin_scope(http: TestClient, tenant: Tenant) -> None:
    r = http.post(UNLOCK, json={"emailAddress": "jo@example.com"}, headers=tenant.headers)
    assert r.status_code == 403
    assert http.post(UNLOCK, json={"emailAddress": "jo@example.com"}).status_code == 401


def test_the_command_line_unlocks_an_email_address(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    address = f"locked-{tenant.client_id[-8:]}@example.com"
    lock(http, tenant, {"emailAddress": address})
    local, _, domain = address.partition("@")
    done = passgate_json(
        settings,
        "destination",
        "unlock",
        "--client",
        tenant.client_id,
        "--email",
        f"{local}@{domain.upper()}",
    )
    assert (done["channel"], done["failures"], done["locked"], done["cleared"]) == ("EMAIL", 3, True, True)
    assert done["clientId"] == tenant.client_id and address not in str(done)
    assert challenged(http, tenant, {"emailAddress": address}).get("error") is None
    [entry] = audit(http, tenant)
    assert entry["actor"].startswith("cli:") and entry["target"] == done["destination"]

    text = passgate(settings, "destination", "unlock", "--client", tenant.client_id, "--email", address)
    assert text.returncode == 0 and text.stdout.endswith(
        f"had no failures to clear for client {tenant.client_id}.\n"
    )
    bad = passgate(settings, "destination", "unlock", "--client", tenant.client_id, "--phone", "12")
    assert bad.returncode == 1 and bad.stderr.startswith("passgate: --phone: ")
    nobody = passgate(settings, "destination", "unlock", "--client", "cl_nope", "--email", address)
    assert nobody.returncode == 1 and "no client 'cl_nope'" in nobody.stderr
    neither = passgate(settings, "destination", "unlock", "--client", tenant.client_id)
    assert neither.returncode == 2 and "one of the arguments --email --phone is required" in neither.stderr


def test_counters_kept_before_a_key_rotation_are_found(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    phone = "+12015550177"
    lock(http, tenant, {"phoneNumber": phone})
    rotated = settings.model_copy(update={"secret_keys": "n" * 40 + "," + TEST_SECRET})
    done = passgate_json(rotated, "destination", "unlock", "--client", tenant.client_id, "--phone", phone)
    assert done["cleared"] is True and done["failures"] == 3
    assert challenged(http, tenant, {"phoneNumber": phone}).get("error") is None
