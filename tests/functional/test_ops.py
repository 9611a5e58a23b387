from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import Tenant, login_body


def test_health_and_readiness(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ok", "database": "ok"}


def test_metrics_count_decisions(http: TestClient, tenant: Tenant) -> None:
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    text = http.get("/metrics").text
    assert 'passgate_decisions_total{decision="CHALLENGE",event_type="LOGIN"} 1.0' in text
    assert 'route="/login/v2"' in text


def test_openapi_has_an_example_for_every_request_body(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    missing = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody")
            if not body:
                continue
            for media in body["content"].values():
                ref = media.get("schema", {}).get("$ref", "")
                schema = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else media.get("schema", {})
                if not (media.get("example") or media.get("examples") or schema.get("examples")):
                    missing.append(f"{method.upper()} {path}")
    assert not missing, missing
    assert "/login/v2" in spec["paths"] and "/newaccountopening/v2" in spec["paths"]


def test_unknown_path_and_method_are_problems(http: TestClient) -> None:
    r = http.get("/nope")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = http.get("/login/v2")
    assert r.status_code == 405 and r.json()["status"] == 405


def test_secrets_never_reach_logs(http: TestClient, tenant: Tenant, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    caplog.set_level(logging.DEBUG)
    http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(tenant.client_id, tenant.api_key)
    )
    http.post("/login/v2", json=login_body(), headers=tenant.headers)
    joined = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert tenant.api_key not in joined
    assert tenant.token not in joined
