"""The one simulation the management API and the console share: what it explains, that it names a
missing version, and that the API answers with exactly what it computes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.policy.exceptions import VersionNotFound
from passgate.policy.requests import LoginRequest
from passgate.policy.simulation import SIGNAL_GROUPS, Simulation, simulate
from tests.factories import Tenant, login_body


def _simulate(registry: Registry, tenant: Tenant, body: dict[str, object], version: str) -> Simulation:
    request = LoginRequest.model_validate(body).model_dump(mode="json", exclude_none=True)
    return simulate(
        registry.sessions,
        registry.policy_cache,
        registry.signals,
        tenant.client_id,
        "LOGIN",
        request,
        version,
        registry.clock.now(),
    )


def test_the_api_answers_with_the_shared_simulation(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    body = login_body()
    found = _simulate(registry, tenant, body, "draft")
    assert found.version == "draft"
    assert set(found.signals) <= set(SIGNAL_GROUPS)
    assert "decision" in found.explanation
    r = http.post(
        "/manage/v1/policy-sets/LOGIN/simulate", json={"request": body}, headers=tenant.admin_headers
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "version": found.version,
        "set": found.set_name,
        **found.explanation,
        "signals": found.signals,
    }


def test_an_unknown_version_is_named(registry: Registry, tenant: Tenant) -> None:
    with pytest.raises(VersionNotFound):
        _simulate(registry, tenant, login_body(), "v99")
