"""The console's settings page shows and changes the retention periods, as the API does."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Tenant

FORM = {
    "retention.sessionsDays": "45",
    "retention.decisionsDays": "",
    "retention.webhookDeliveriesDays": "60",
    "retention.auditLogDays": "",
}


def test_an_owner_changes_the_periods_and_a_bad_one_is_shown_on_its_field(
    http: TestClient, tenant: Tenant, people: Any
) -> None:
    owner = people("owner")
    page = owner.get("/console/settings").text
    assert "Retention" in page and 'name="retention.sessionsDays"' in page
    assert "90 days for sessions" in page and "730 for the audit log" in page

    r = owner.post("/console/settings", FORM)
    assert r.status_code == 303, r.text
    api = http.get("/manage/v1/settings", headers=tenant.admin_headers).json()
    assert api["retention"] == {
        "sessionsDays": 45,
        "decisionsDays": 365,
        "webhookDeliveriesDays": 60,
        "auditLogDays": 730,
    }
    page = owner.get("/console/settings").text
    assert "45 days for sessions" in page and 'value="45"' in page

    r = owner.post("/console/settings", FORM | {"retention.sessionsDays": "3"})
    assert r.status_code == 400
    assert 'id="st-retention-sessionsDays-error"' in r.text and 'value="3"' in r.text
    r = owner.post("/console/settings", FORM | {"retention.auditLogDays": "two years"})
    assert r.status_code == 400 and 'id="st-retention-auditLogDays-error"' in r.text
    # Nothing changed by the refused forms.
    assert (
        http.get("/manage/v1/settings", headers=tenant.admin_headers).json()["retention"] == api["retention"]
    )


def test_a_viewer_sees_the_periods_but_cannot_change_them(people: Any) -> None:
    viewer = people("viewer")
    page = viewer.get("/console/settings").text
    assert 'name="retention.sessionsDays"' in page and "<fieldset disabled>" in page
    r = viewer.post("/console/settings", FORM)
    assert r.status_code == 403
