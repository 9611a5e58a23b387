"""The SMS pumping breaker's part of the console's MFA settings page: the same settings as
`PUT /manage/v1/settings` (`smsBreaker`), a bad value shown beside its field with nothing saved."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Tenant

FORM = {
    "smsAllowedCountries": "US, GB",
    "smsBreaker.mode": "enforce",
    "smsBreaker.windowSeconds": "1800",
    "smsBreaker.minSends": "20",
    "smsBreaker.minConversion": "0.35",
    "smsBreaker.coolDownSeconds": "",
    "smsBreaker.probeSends": "",
}


def breaker_of(http: TestClient, tenant: Tenant) -> dict[str, Any]:
    return dict(http.get("/manage/v1/settings", headers=tenant.admin_headers).json()["smsBreaker"])


def test_an_owner_sets_the_breaker_from_the_settings_page(
    http: TestClient, tenant: Tenant, people: Any
) -> None:
    owner = people("owner")
    page = owner.get("/console/settings").text
    assert 'id="sms-breaker"' in page and "No breaker has tripped." in page
    assert "In force now: monitor" in page
    r = owner.post("/console/settings", FORM)
    assert r.status_code == 303, r.text
    assert breaker_of(http, tenant) == {
        "mode": "enforce",
        "windowSeconds": 1800,
        "minSends": 20,
        "minConversion": 0.35,
        "coolDownSeconds": 1800,  # empty: the default
        "probeSends": 5,
    }
    shown = owner.get("/console/settings").text
    assert 'value="enforce" selected' in shown and 'name="smsBreaker.minSends"' in shown
    assert 'value="20"' in shown
    # Back to the defaults: every field empty.
    r = owner.post("/console/settings", {k: "" for k in FORM})
    assert r.status_code == 303
    assert breaker_of(http, tenant)["mode"] == "monitor"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("smsBreaker.minConversion", "lots", "a number from 0 to 1"),
        ("smsBreaker.minConversion", "1.5", "Enter a number of at most 1."),
        ("smsBreaker.windowSeconds", "120", "Enter a number of at least 600."),
        ("smsBreaker.windowSeconds", "650", "Enter a multiple of 60."),
        ("smsBreaker.mode", "loud", "off"),
        ("smsBreaker.probeSends", "-1", "a whole number"),
    ],
)
def test_a_bad_breaker_value_is_shown_and_nothing_is_saved(
    http: TestClient, tenant: Tenant, people: Any, field: str, value: str, message: str
) -> None:
    owner = people("owner")
    before = http.get("/manage/v1/settings", headers=tenant.admin_headers).json()
    r = owner.post("/console/settings", {**FORM, field: value})
    assert r.status_code == 400
    assert message in r.text and 'aria-invalid="true"' in r.text
    assert (
        f'value="{value}"' in r.text or f'<option value="{value}"' not in r.text
    )  # the value posted is kept
    assert http.get("/manage/v1/settings", headers=tenant.admin_headers).json() == before
