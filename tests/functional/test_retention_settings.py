"""Retention periods in the management API's settings: defaults, a change, bounds refused naming the field
and nothing half-written, other clients untouched."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Tenant

SETTINGS = "/manage/v1/settings"
DEFAULTS = {"sessionsDays": 90, "decisionsDays": 365, "webhookDeliveriesDays": 30, "auditLogDays": 730}


def current(http: TestClient, tenant: Tenant) -> dict[str, Any]:
    r = http.get(SETTINGS, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_defaults_a_change_and_back(http: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    assert current(http, tenant)["retention"] == DEFAULTS
    body = {"otpLength": 8, "retention": {"sessionsDays": 30, "auditLogDays": 3650}}
    r = http.put(SETTINGS, json=body, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["retention"] == DEFAULTS | {"sessionsDays": 30, "auditLogDays": 3650}
    assert r.json()["otpLength"] == 8
    assert current(http, tenant)["retention"] == r.json()["retention"]
    assert current(http, other_tenant)["retention"] == DEFAULTS
    # Omitted, as every other setting: back to the defaults.
    r = http.put(SETTINGS, json={"otpLength": 8}, headers=tenant.admin_headers)
    assert r.status_code == 200 and r.json()["retention"] == DEFAULTS


@pytest.mark.parametrize(
    ("retention", "field"),
    [
        ({"sessionsDays": 6}, "retention.sessionsDays"),
        ({"decisionsDays": 3651}, "retention.decisionsDays"),
        ({"webhookDeliveriesDays": 366}, "retention.webhookDeliveriesDays"),
        ({"auditLogDays": 89}, "retention.auditLogDays"),
        ({"sessionsDays": "90"}, "retention.sessionsDays"),
        ({"sessionsDays": 90.5}, "retention.sessionsDays"),
        ({"forever": True}, "retention.forever"),
        ([], "retention"),
    ],
)
def test_a_bad_period_is_refused_naming_its_field(
    http: TestClient, tenant: Tenant, retention: Any, field: str
) -> None:
    r = http.put(SETTINGS, json={"otpLength": 9, "retention": retention}, headers=tenant.admin_headers)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    # Nothing half-written: neither the period nor the other setting of the same body.
    now = current(http, tenant)
    assert now["retention"] == DEFAULTS and now["otpLength"] == 6
