"""Verify API verifications are MFA sessions: the console lists them and shows their page and timeline."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Tenant


def test_a_verification_has_a_console_page(people: Any, http: TestClient, tenant: Tenant) -> None:
    owner = people("owner")
    body = {"to": "console.view@example.com", "channel": "email-code", "purpose": "email_change"}
    r = http.post("/verify/v1/verifications", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    assert http.post(f"/verify/v1/verifications/{vid}/cancel", headers=tenant.headers).status_code == 200
    page = owner.get(f"/console/sessions/{vid}")
    assert page.status_code == 200
    assert "Verify API (email_change)" in page.text and "VERIFY" in page.text
    assert "CANCELLED" in page.text and "CREATED" in page.text
    assert "console.view@example.com" not in page.text  # masked, as everywhere
    assert vid in owner.get("/console/sessions").text
