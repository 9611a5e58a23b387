"""The operator commands, run as subprocesses on the tests' database (SQLite, and PostgreSQL when set up),
checked by what the API and the console then do."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.audit.services import entries
from passgate.bootstrap import Registry
from passgate.config import Settings
from passgate.console.exceptions import BadCredentials
from passgate.console.routes.common import auth_service
from passgate.db import transaction
from tests.cli import passgate, passgate_json
from tests.factories import Tenant, login_body

PASSWORD = "correct horse battery staple"


def audit_actions(registry: Registry, client_id: str) -> list[tuple[str, str, str]]:
    with registry.sessions() as session:
        return [(e["actor"], e["action"], e["target"]) for e in entries(session, client_id)]


def token_status(http: TestClient, tenant: Tenant) -> int:
    return http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(tenant.client_id, tenant.api_key)
    ).status_code


def test_client_list_show_disable_enable(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    listed = {c["clientId"]: c for c in passgate_json(settings, "client", "list")["items"]}
    assert {tenant.client_id, other_tenant.client_id} <= set(listed)
    assert listed[tenant.client_id]["activeKeys"] == 1 and listed[tenant.client_id]["disabledAt"] is None

    shown = passgate_json(settings, "client", "show", tenant.client_id)
    assert [k["keyId"] for k in shown["apiKeys"]] == [tenant.key_id]
    assert "apiKey" not in shown["apiKeys"][0] and tenant.api_key not in str(shown)
    assert shown["messages"] == {"QUEUED": 0, "SENDING": 0, "SENT": 0, "FAILED": 0}
    text = passgate(settings, "client", "show", tenant.client_id).stdout
    assert f"Acme Shop ({tenant.client_id}): active" in text and tenant.key_id in text

    assert http.get("/manage/v1/settings", headers=tenant.admin_headers).status_code == 200
    disabled = passgate_json(settings, "client", "disable", tenant.client_id)
    assert disabled["disabledAt"] is not None
    # Its tokens are refused (the tests keep no key cache), it gets no new ones; the other client is untouched.
    assert http.get("/manage/v1/settings", headers=tenant.admin_headers).status_code == 401
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 401
    assert token_status(http, tenant) == 401
    assert http.get("/manage/v1/settings", headers=other_tenant.admin_headers).status_code == 200
    assert passgate_json(settings, "client", "show", tenant.client_id)["disabledAt"] == disabled["disabledAt"]

    passgate_json(settings, "client", "enable", tenant.client_id)
    assert token_status(http, tenant) == 200
    assert http.get("/manage/v1/settings", headers=tenant.admin_headers).status_code == 200
    actions = [(a, t) for actor, a, t in audit_actions(registry, tenant.client_id) if actor.startswith("cli")]
    assert actions == [("client.enabled", tenant.client_id), ("client.disabled", tenant.client_id)]

    missing = passgate(settings, "client", "show", "cl_nope")
    assert missing.returncode == 1
    assert missing.stderr == "passgate: no client 'cl_nope' (passgate client list shows them)\n"


def test_a_disabled_client_cannot_use_the_console(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    auth = auth_service(registry)
    email = f"ops-{tenant.client_id}@example.com"
    with transaction(registry.sessions) as session:
        user = auth.create_user(session, tenant.client_id, email, PASSWORD, "owner", registry.clock.now())
        cookie = auth.open_session(session, user, "127.0.0.1", "test", registry.clock.now())
    with transaction(registry.sessions) as session:
        assert auth.resolve(session, cookie, registry.clock.now()) is not None
    passgate_json(settings, "client", "disable", tenant.client_id)
    with transaction(registry.sessions) as session:
        assert auth.resolve(session, cookie, registry.clock.now()) is None
        with pytest.raises(BadCredentials):
            auth.check_password(session, email, PASSWORD, "127.0.0.1")


def test_apikey_list_and_revoke(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    [key] = passgate_json(settings, "apikey", "list", "--client", tenant.client_id)["items"]
    assert (key["keyId"], key["active"], key["scopes"]) == (
        tenant.key_id,
        True,
        ["admin", "k1_integration_api"],
    )
    assert tenant.api_key not in str(key) and key["prefix"] == tenant.api_key[:10]

    revoked = passgate_json(settings, "apikey", "revoke", tenant.key_id)
    assert revoked["active"] is False and revoked["revokedAt"]
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 401
    assert token_status(http, tenant) == 401
    again = passgate(settings, "apikey", "revoke", tenant.key_id)
    assert again.returncode == 0 and "was already revoked" in again.stdout
    cli = [(a, t) for actor, a, t in audit_actions(registry, tenant.client_id) if actor.startswith("cli:")]
    assert cli == [("apikey.revoked", tenant.key_id)]
    assert passgate(settings, "apikey", "revoke", "key_0000000000000000").returncode == 1


def test_console_users_from_the_command_line(tenant: Tenant, registry: Registry, settings: Settings) -> None:
    email = f"ana-{tenant.client_id}@example.com"
    created = passgate_json(
        settings,
        "user", "create", "--client", tenant.client_id, "--email", email, "--role", "viewer", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    [listed] = passgate_json(settings, "user", "list", "--client", tenant.client_id)["items"]
    assert (listed["userId"], listed["email"], listed["role"]) == (created["userId"], email, "viewer")

    auth = auth_service(registry)

    def sign_in(password: str) -> Any:
        with transaction(registry.sessions) as session:
            user = auth.check_password(session, email, password, "127.0.0.1")
            return auth.open_session(session, user, "127.0.0.1", "test", registry.clock.now())

    def signed_in(cookie: str) -> bool:
        with transaction(registry.sessions) as session:
            return auth.resolve(session, cookie, registry.clock.now()) is not None

    browser = sign_in(PASSWORD)
    assert passgate_json(settings, "user", "role", email, "owner")["role"] == "owner"
    with transaction(registry.sessions) as session:
        current = auth.resolve(session, browser, registry.clock.now())
        assert current is not None and current.role == "owner"  # on the next page already

    new_password = "another long passphrase"
    reset = passgate_json(
        settings, "user", "reset-password", email, "--password-stdin", stdin=new_password + "\n"
    )
    assert reset["note"] == "1 signed-in session ended" and not signed_in(browser)
    with pytest.raises(BadCredentials):
        sign_in(PASSWORD)
    browser = sign_in(new_password)

    assert passgate_json(settings, "user", "disable", email)["disabledAt"] is not None
    assert not signed_in(browser)
    with pytest.raises(BadCredentials):
        sign_in(new_password)
    passgate_json(settings, "user", "enable", email)
    assert signed_in(sign_in(new_password))

    short = passgate(settings, "user", "reset-password", email, "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    nobody = passgate(settings, "user", "disable", "nobody@example.com")
    assert nobody.returncode == 1 and nobody.stderr == "passgate: no console user 'nobody@example.com'\n"
    actions = [a for actor, a, _ in audit_actions(registry, tenant.client_id) if actor.startswith("cli")]
    assert actions == [
        "console_user.enabled",
        "console_user.disabled",
        "console_user.password_reset",
        "console_user.role_changed",
    ]


def test_messages_list_by_status(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    address = f"jo-{tenant.client_id}@example.com"

    def challenge() -> None:
        body = login_body(person={"emailAddress": address}, strategy={"mfaTemplateName": "email-code"})
        r = http.post("/login/v2", json=body, headers=tenant.headers)
        assert r.status_code == 200 and r.json()["mfa"]["status"] == "UNKNOWN", r.text

    challenge()
    while asyncio.run(registry.dispatcher.run_once()):
        pass
    challenge()  # left queued
    listed = passgate_json(settings, "messages", "list", "--client", tenant.client_id)["items"]
    assert [m["status"] for m in listed] == ["QUEUED", "SENT"]
    [sent] = passgate_json(settings, "messages", "list", "--client", tenant.client_id, "--status", "sent")[
        "items"
    ]
    assert sent["channel"] == "EMAIL" and sent["attempts"] == 1 and sent["template"] == "email-code"
    assert sent["destination"].endswith("@example.com") and address not in str(listed)  # masked
    [queued] = passgate_json(
        settings, "messages", "list", "--client", tenant.client_id, "--status", "QUEUED"
    )["items"]
    assert queued["nextAttemptAt"] is not None
    assert passgate(settings, "messages", "list", "--status", "LOST").returncode == 2  # refused by the parser
    table = passgate(settings, "messages", "list", "--client", tenant.client_id).stdout
    assert table.splitlines()[0].split()[:3] == ["MESSAGE", "ID", "CLIENT"] and address not in table


def test_every_list_reads_as_a_table_and_as_json(tenant: Tenant, settings: Settings) -> None:
    for args in (["client", "list"], ["apikey", "list"], ["user", "list"], ["messages", "list"]):
        table = passgate(settings, *args)
        assert table.returncode == 0 and table.stderr == "", table.stderr
        assert table.stdout.strip(), args
        assert isinstance(passgate_json(settings, *args)["items"], list)
