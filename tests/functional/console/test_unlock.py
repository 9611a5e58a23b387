"""The MFA settings page's form that unlocks a destination (as POST /manage/v1/destinations/unlock does)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant, login_body


@pytest.fixture(autouse=True)
def _lock_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    import passgate.mfa.services as services

    monkeypatch.setattr(services, "LOCK_AFTER", 3)
    monkeypatch.setattr(services, "THROTTLE_AFTER", 1000)


def challenge(http: TestClient, tenant: Tenant, address: str) -> dict[str, Any]:
    body = login_body(person={"emailAddress": address}, strategy={"mfaTemplateName": "email-code"})
    r = http.post("/login/v2", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["mfa"])


def test_an_owner_unlocks_a_destination_from_the_settings_page(
    http: TestClient, tenant: Tenant, registry: Registry, people: Any
) -> None:
    address = f"locked-{tenant.client_id[-8:]}@example.com"
    m = challenge(http, tenant, address)
    for _ in range(3):
        http.post(f"/mfa/v2/{m['ID']}/verify", json={"code": "999999"}, headers=tenant.headers)
    assert challenge(http, tenant, address)["error"] == "RATE_LIMITED"

    owner = people("owner")
    page = owner.get("/console/settings")
    assert "Unlock a destination" in page.text and 'action="/console/settings/unlock"' in page.text
    r = owner.post("/console/settings/unlock", {"destination": f"  {address}  "})
    assert r.status_code == 303 and r.headers["location"] == "/console/settings"
    shown = owner.get("/console/settings").text
    assert "unlocked: 3 consecutive failures cleared (it was locked)." in shown
    assert challenge(http, tenant, address).get("error") is None

    [entry] = [e for e in owner.get("/manage/v1/audit-log", headers=tenant.admin_headers).json()["items"]
               if e["action"] == "destination.unlocked"]  # fmt: skip
    assert entry["actor"] == f"console:{owner.email}" and "@example.com" in entry["target"]
    assert address not in entry["target"]

    again = owner.post("/console/settings/unlock", {"destination": address})
    assert again.status_code == 303
    assert "had no failures to clear" in owner.get("/console/settings").text


@pytest.mark.parametrize(("value", "message"), [("", "an email address or a phone number"), ("12", "phone")])
def test_a_bad_value_is_shown_on_the_form(people: Any, value: str, message: str) -> None:
    owner = people("owner")
    r = owner.post("/console/settings/unlock", {"destination": value})
    assert r.status_code == 400
    assert "Nothing was unlocked." in r.text and message in r.text
    assert 'id="ul-destination-error"' in r.text and 'aria-invalid="true"' in r.text


def test_only_owners_see_the_button(people: Any) -> None:
    analyst = people("analyst")
    page = analyst.get("/console/settings").text
    assert "Unlock a destination" in page and ">Unlock</button>" not in page
    r = analyst.post("/console/settings/unlock", {"destination": "jo@example.com"})
    assert r.status_code == 403 and "needs the owner role" in r.text
