"""The OpenAPI document's security schemes and each operation's requirement (passgate.api.openapi)."""

from __future__ import annotations

from typing import Any

from passgate.api.openapi import SECURITY_SCHEMES, declared_security, required_scope


def _spec(*paths: str) -> dict[str, Any]:
    return {"paths": {path: {"post": {"responses": {}}} for path in paths}}


def test_scopes_by_path() -> None:
    assert required_scope("/login/v2") == "k1_integration_api"
    assert required_scope("/mfa/v2/{session_id}/verify") == "k1_integration_api"
    assert required_scope("/manage/v1/api-keys") == "admin"
    for public in ("/oauth2/token", "/healthz", "/readyz", "/.well-known/jwks.json", "/providers/twilio/status"):
        assert required_scope(public) is None, public


def test_operations_accept_client_credentials_or_a_pasted_token() -> None:
    spec = declared_security(_spec("/login/v2", "/manage/v1/settings", "/healthz", "/oauth2/token", "/metrics"))
    paths = spec["paths"]
    assert paths["/login/v2"]["post"]["security"] == [
        {"clientCredentials": ["k1_integration_api"]},
        {"bearerToken": []},
    ]
    assert paths["/manage/v1/settings"]["post"]["security"] == [{"clientCredentials": ["admin"]}, {"bearerToken": []}]
    assert "security" not in paths["/healthz"]["post"] and "security" not in paths["/oauth2/token"]["post"]
    # Open unless the operator set a metrics token.
    assert paths["/metrics"]["post"]["security"] == [{}, {"metricsToken": []}]
    assert spec["components"]["securitySchemes"] == SECURITY_SCHEMES


def test_client_credentials_flow_uses_the_token_endpoint() -> None:
    flow = SECURITY_SCHEMES["clientCredentials"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth2/token"
    assert set(flow["scopes"]) == {"k1_integration_api", "admin"}
    assert SECURITY_SCHEMES["bearerToken"]["scheme"] == "bearer"
