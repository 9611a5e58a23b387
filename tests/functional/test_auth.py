from __future__ import annotations

import base64

from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from tests.factories import Tenant, get_token, login_body, make_tenant


def test_token_is_a_jwt_verifiable_with_the_published_jwks(http: TestClient, tenant: Tenant) -> None:
    r = http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(tenant.client_id, tenant.api_key)
    )
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1200
    assert body["scope"] == "k1_integration_api"
    assert r.headers["cache-control"] == "no-store"
    keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
    token = jwt.decode(body["access_token"], keys, algorithms=["ES256"])
    assert token.claims["sub"] == tenant.client_id
    assert token.header["alg"] == "ES256"


def test_wrong_secret_and_unknown_client_are_refused_alike(http: TestClient, tenant: Tenant) -> None:
    for creds in (
        (tenant.client_id, tenant.api_key + "x"),
        ("cl_nobody", tenant.api_key),
        (tenant.client_id, ""),
    ):
        r = http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=creds)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["error"] == "invalid_client"
        assert tenant.api_key not in r.text


def test_token_request_validation(http: TestClient, tenant: Tenant) -> None:
    r = http.post("/oauth2/token", data={"grant_type": "password"}, auth=(tenant.client_id, tenant.api_key))
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "grant_type"
    r = http.post(
        "/oauth2/token", json={"grant_type": "client_credentials"}, auth=(tenant.client_id, tenant.api_key)
    )
    assert r.status_code == 400
    r = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    )
    assert r.status_code == 401
    r = http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic %%%"}
    )
    assert r.status_code == 401


def test_scope_rules(http: TestClient, registry: Registry) -> None:
    plain = make_tenant(http, registry, admin=False)
    r = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=(plain.client_id, plain.api_key),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"
    assert r.json()["errors"][0]["field"] == "scope"
    # An integration token cannot use the management API ...
    r = http.get("/manage/v1/policy-sets/LOGIN", headers=plain.headers)
    assert r.status_code == 403
    # ... and an admin-only token cannot post decisions.
    admin = make_tenant(http, registry, admin=True)
    r = http.post("/login/v2", json=login_body(), headers=admin.admin_headers)
    assert r.status_code == 403
    both = get_token(http, admin.client_id, admin.api_key, "k1_integration_api admin")
    assert (
        http.post("/login/v2", json=login_body(), headers={"Authorization": f"Bearer {both}"}).status_code
        == 200
    )


def test_token_expires(http: TestClient, tenant: Tenant, clock: FrozenClock) -> None:
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200
    clock.advance(1199)
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200
    clock.advance(1)
    r = http.post("/login/v2", json=login_body(), headers=tenant.headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_missing_or_garbage_bearer(http: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer abc.def.ghi"},
        {"Authorization": "Basic x"},
    ):
        r = http.post("/login/v2", json=login_body(), headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["status"] == 401


def test_at_most_two_active_keys_and_revocation(http: TestClient, tenant: Tenant) -> None:
    r = http.post("/manage/v1/api-keys", json={"name": "second"}, headers=tenant.admin_headers)
    assert r.status_code == 201
    second = r.json()
    assert second["apiKey"].startswith("pgk_")
    r = http.post("/manage/v1/api-keys", json={"name": "third"}, headers=tenant.admin_headers)
    assert r.status_code == 409
    listed = http.get("/manage/v1/api-keys", headers=tenant.admin_headers).json()["items"]
    assert len(listed) == 2
    assert all("apiKey" not in k and second["apiKey"] not in str(k) for k in listed)

    second_token = get_token(http, tenant.client_id, second["apiKey"])
    assert (
        http.post(
            "/login/v2", json=login_body(), headers={"Authorization": f"Bearer {second_token}"}
        ).status_code
        == 200
    )
    r = http.delete(f"/manage/v1/api-keys/{second['id']}", headers=tenant.admin_headers)
    assert r.status_code == 200 and r.json()["active"] is False
    # Tokens issued with the revoked key stop working, and it cannot get new ones.
    r = http.post("/login/v2", json=login_body(), headers={"Authorization": f"Bearer {second_token}"})
    assert r.status_code == 401
    r = http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(tenant.client_id, second["apiKey"])
    )
    assert r.status_code == 401
    # The slot is free again.
    assert http.post("/manage/v1/api-keys", json={}, headers=tenant.admin_headers).status_code == 201


def test_keys_are_stored_only_as_hashes(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    from sqlalchemy import select

    from passgate.auth.models import ApiKey

    with registry.sessions() as s:
        rows = s.scalars(select(ApiKey).where(ApiKey.client_id == tenant.client_id)).all()
    assert rows and all(tenant.api_key not in (r.key_hash + r.prefix + r.scopes) for r in rows)


def test_client_cannot_revoke_another_clients_key(
    http: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    r = http.delete(f"/manage/v1/api-keys/{tenant.key_id}", headers=other_tenant.admin_headers)
    assert r.status_code == 404
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200


def _from(app: object, ip: str) -> TestClient:
    """A client of the same app whose requests come from `ip`."""
    return TestClient(app, client=(ip, 50000), raise_server_exceptions=False)  # type: ignore[arg-type]


def _token(client: TestClient, client_id: str, secret: str) -> int:
    return client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).status_code


def test_wrong_secrets_from_one_address_are_limited(app: object, http: TestClient, tenant: Tenant) -> None:
    # The review's payload: 600 wrong secrets in a few seconds, never a 429.
    attacker = _from(app, "198.51.100.7")
    codes = [_token(attacker, tenant.client_id, f"pgk_guess{i}") for i in range(600)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes[:25]
    r = attacker.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(tenant.client_id, "x")
    )
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 61
    # The address is refused whatever it presents, the right key included; other addresses are not.
    assert _token(attacker, tenant.client_id, tenant.api_key) == 429
    assert _token(_from(app, "192.0.2.10"), tenant.client_id, tenant.api_key) == 200
    # Malformed or missing credentials count against the address too.
    other = _from(app, "198.51.100.8")
    bad = [
        other.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic !!"}
        ).status_code
        for _ in range(25)
    ]
    assert bad[:20] == [401] * 20 and set(bad[20:]) == {429}


def test_guessing_from_many_addresses_does_not_lock_out_the_right_key(app: object, tenant: Tenant) -> None:
    # Ten addresses, each under its own limit, together past the client's (50 a minute).
    for n in range(10):
        guesser = _from(app, f"203.0.113.{n}")
        assert [_token(guesser, tenant.client_id, f"pgk_wrong{n}{i}") for i in range(5)] == [401] * 5
    assert _token(_from(app, "203.0.113.0"), tenant.client_id, "pgk_again") == 429  # a guesser: refused
    newcomer = _from(app, "203.0.113.200")
    assert _token(newcomer, tenant.client_id, "pgk_new") == 401  # one try from a new address...
    assert _token(newcomer, tenant.client_id, "pgk_new2") == 429  # ...then refused too
    # The client's own server, which never sent a wrong secret, keeps getting tokens.
    server = _from(app, "192.0.2.20")
    assert [_token(server, tenant.client_id, tenant.api_key) for _ in range(5)] == [200] * 5
    # Another client is not affected at all.
    assert _token(_from(app, "203.0.113.1"), "cl_someone_else", "pgk_x") == 401
