"""Builders for the things tests need: tenants with keys and tokens, request bodies."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from passgate.auth.services import create_api_key, create_client
from passgate.bootstrap import Registry
from passgate.db import transaction

_seq = itertools.count(1)


@dataclass
class Tenant:
    client_id: str
    api_key: str
    key_id: str
    token: str
    admin_token: str | None

    def refresh(self, http: TestClient) -> None:
        """New tokens, for tests that move the clock past their 20 minutes."""
        self.token = get_token(http, self.client_id, self.api_key)
        if self.admin_token:
            self.admin_token = get_token(http, self.client_id, self.api_key, "admin")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        assert self.admin_token, "tenant made without admin scope"
        return {"Authorization": f"Bearer {self.admin_token}"}


def get_token(http: TestClient, client_id: str, api_key: str, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    r = http.post("/oauth2/token", data=data, auth=(client_id, api_key))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def make_tenant(
    http: TestClient,
    registry: Registry,
    name: str = "Acme Shop",
    country: str = "US",
    sandbox: bool = False,
    admin: bool = True,
) -> Tenant:
    now = registry.clock.now()
    with transaction(registry.sessions) as session:
        client = create_client(session, name, country, sandbox, now)
        created = create_api_key(session, client.id, ["admin"] if admin else [], now)
        cid, secret, kid = client.id, created.secret, created.key.id
    token = get_token(http, cid, secret)
    admin_token = get_token(http, cid, secret, "admin") if admin else None
    return Tenant(cid, secret, kid, token, admin_token)


def login_body(**overrides: Any) -> dict[str, Any]:
    n = next(_seq)
    body: dict[str, Any] = {
        "inquiryId": f"inq{n}",
        "channel": "WEB",
        "deviceSessionId": f"dev{n}",
        "userIp": "203.0.113.7",
        "loginUrl": "https://shop.example.com/login",
        "person": {"name": {"first": "Jo", "last": "Doe"}, "emailAddress": f"jo{n}@example.com"},
        "account": {
            "id": f"acct{n}",
            "username": f"jo{n}",
            "userPassword": "5f4dcc3b5aa765d61d8327deb882cf99",
        },
    }
    for k, v in overrides.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def allow_all_document(name: str = "allow-all") -> dict[str, Any]:
    return {"name": name, "segments": [{"name": "default", "policies": []}], "policies": []}


def publish(
    http: TestClient, tenant: Tenant, document: dict[str, Any], event_type: str = "LOGIN"
) -> dict[str, Any]:
    r = http.put(f"/manage/v1/policy-sets/{event_type}/draft", json=document, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    r = http.post(f"/manage/v1/policy-sets/{event_type}/publish", headers=tenant.admin_headers)
    assert r.status_code == 201, r.text
    return dict(r.json())
