"""Console sign-in: the password, the email link on a new device, trusted devices, lockouts, CSRF,
cookies, sign-out and expiry."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.auth.models import ApiKey
from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.console.models import ConsoleSession, ConsoleUser
from passgate.console.routes.common import auth_service
from passgate.db import transaction
from tests.factories import Tenant
from tests.functional.console.conftest import (
    PASSWORD,
    confirm_link,
    csrf_of,
    inbox_link,
    make_user,
    submit_password,
)


def test_new_device_needs_the_email_link_then_is_trusted(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    email = make_user(registry, tenant.client_id, "owner")
    r = submit_password(http, email)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in/check-email"
    # Not signed in yet: the pages still send you to sign in.
    assert (
        http.get("/console/overview", follow_redirects=False)
        .headers["location"]
        .startswith("/console/sign-in")
    )
    waiting = http.get("/console/sign-in/check-email")
    assert "Check your email" in waiting.text and 'http-equiv="refresh"' in waiting.text
    # The challenge is a real Passgate MFA session of the user's client, email link, to the user's address.
    link = inbox_link(registry, email)
    assert "/v/" in link
    assert confirm_link(http, link).headers["location"].endswith("/console/sign-in/check-email")
    assert http.get("/console/sign-in/check-email", follow_redirects=False).headers["location"] == (
        "/console/overview"
    )
    assert http.get("/console/overview").status_code == 200
    assert (
        http.post("/console/sign-out", data={"csrf": csrf_of(http.get("/console/account").text)}).status_code
        == 200
    )
    # Same browser again: the device cookie makes the password enough.
    r = submit_password(http, email)
    assert r.status_code == 303 and r.headers["location"] == "/console/overview"


def test_this_was_not_me_stops_the_sign_in(http: TestClient, registry: Registry, tenant: Tenant) -> None:
    email = make_user(registry, tenant.client_id, "analyst")
    submit_password(http, email)
    link = inbox_link(registry, email)
    path = "/" + link.split("/", 3)[3]
    page = http.get(path)
    http.post(f"{path}/deny", data={"csrf": csrf_of(page.text)})
    stopped = http.get("/console/sign-in/check-email")
    assert stopped.status_code == 401 and "refused from the email" in stopped.text
    assert http.get("/console/overview", follow_redirects=False).status_code == 303


def test_wrong_password_and_unknown_email_get_the_same_answer(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    email = make_user(registry, tenant.client_id, "viewer")
    wrong = submit_password(http, email, "not the password at all")
    unknown = submit_password(http, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text


def test_sign_in_is_locked_per_email_after_five_tries(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    email = make_user(registry, tenant.client_id, "viewer")
    other = make_user(registry, tenant.client_id, "viewer")
    for _ in range(5):
        assert submit_password(http, email, "guess guess guess").status_code == 401
    locked = submit_password(http, email, PASSWORD)
    assert locked.status_code == 429 and "Sign-in is locked" in locked.text and "this account" in locked.text
    # Another person from the same address is not locked out with them.
    assert submit_password(http, other, PASSWORD).status_code == 303


def test_sign_in_is_locked_per_ip(settings: Settings, engine: Any, clock: FrozenClock) -> None:
    from passgate.bootstrap import build_registry
    from passgate.main import create_app

    tight = settings.model_copy(update={"console_sign_in_rates_ip": "3/minute"})
    reg = build_registry(tight, clock=clock, engine=engine)
    with TestClient(create_app(registry=reg), raise_server_exceptions=False) as client:
        for n in range(3):
            assert submit_password(client, f"someone{n}@example.com").status_code == 401
        locked = submit_password(client, "fourth@example.com")
        assert locked.status_code == 429 and "your network" in locked.text


def test_forms_without_the_csrf_token_are_refused(people: Any, registry: Registry, http: TestClient) -> None:
    owner = people("owner")
    for data in ({}, {"csrf": "forged"}, {"csrf": owner.csrf[:-1] + "x"}):
        r = owner.http.post("/console/keys", data={"name": "x", **data}, follow_redirects=False)
        assert r.status_code == 403 and "The form expired" in r.text
    with registry.sessions() as session:
        made = session.scalars(
            select(ApiKey).where(ApiKey.client_id == owner.client_id, ApiKey.name == "x")
        ).all()
    assert made == []  # nothing was created by the refused forms
    # The sign-in form has its own token, bound to a cookie.
    r = http.post("/console/sign-in", data={"email": owner.email, "password": PASSWORD})
    assert r.status_code == 403 and "expired" in r.text
    # The JSON preview takes the token in a header; without it, no preview.
    r = owner.http.post("/console/api/templates/preview", data={"channel": "SMS", "sms": "{{ code }}"})
    assert r.status_code == 403


def test_cookies_are_http_only_same_site_and_scoped(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    email = make_user(registry, tenant.client_id, "owner")
    r = submit_password(http, email)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # PASSGATE_PUBLIC_URL is http here
    confirm_link(http, inbox_link(registry, email))
    done = http.get("/console/sign-in/check-email", follow_redirects=False)
    assert "HttpOnly" in done.headers["set-cookie"] and done.headers["location"] == "/console/overview"
    with registry.sessions() as session:
        rows = session.scalars(select(ConsoleSession)).all()
    # Only a keyed hash of the token is stored; the cookie's token is nowhere in the database.
    token = http.cookies.get("pg_console", path="/console") or ""
    assert token and all(token.split(".")[0] not in r.token_hash for r in rows)


def test_cookies_are_secure_behind_https(settings: Settings, engine: Any, clock: FrozenClock) -> None:
    from passgate.bootstrap import build_registry
    from passgate.main import create_app

    reg = build_registry(
        settings.model_copy(update={"public_url": "https://passgate.example"}), clock=clock, engine=engine
    )
    with TestClient(create_app(registry=reg)) as client:
        assert "Secure" in client.get("/console/sign-in").headers["set-cookie"]


def test_sign_out_revokes_the_session_everywhere(people: Any, app: Any) -> None:
    owner = people("owner")
    stolen = TestClient(app)
    stolen.cookies.set("pg_console", owner.http.cookies.get("pg_console", path="/console"), path="/console")
    assert stolen.get("/console/overview", follow_redirects=False).status_code == 200
    assert owner.post("/console/sign-out").status_code == 303
    assert stolen.get("/console/overview", follow_redirects=False).status_code == 303
    assert owner.get("/console/overview", follow_redirects=False).status_code == 303


def test_sign_out_everywhere_else_and_forget_devices(people: Any, app: Any, registry: Registry) -> None:
    owner = people("owner")
    second = TestClient(app)
    second.cookies.set("pg_console", owner.http.cookies.get("pg_console", path="/console"), path="/console")
    # A second session of the same person, then "sign out everywhere else" from the first.
    submit = owner.post("/console/account/sign-out-others")
    assert submit.status_code == 303
    assert owner.get("/console/overview", follow_redirects=False).status_code == 200
    assert owner.post("/console/account/forget-devices").status_code == 303
    owner.post("/console/sign-out")
    # The browser is no longer remembered: the email link again.
    assert submit_password(owner.http, owner.email).headers["location"].endswith("/check-email")


def test_sessions_expire_when_idle_and_after_twelve_hours(people: Any, clock: FrozenClock) -> None:
    owner = people("owner")
    clock.advance(hours=1, minutes=59)
    assert owner.get("/console/overview", follow_redirects=False).status_code == 200
    clock.advance(hours=2, seconds=1)
    assert owner.get("/console/overview", follow_redirects=False).status_code == 303  # idle too long

    other = people("viewer")
    for _ in range(11):
        clock.advance(hours=1)
        assert other.get("/console/overview", follow_redirects=False).status_code == 200
    clock.advance(hours=1)
    assert other.get("/console/overview", follow_redirects=False).status_code == 303  # 12 h in all


def test_a_tampered_cookie_is_ignored(people: Any) -> None:
    owner = people("owner")
    value = owner.http.cookies.get("pg_console", path="/console")
    owner.http.cookies.set("pg_console", value[:-2] + "zz", path="/console")
    assert owner.get("/console/overview", follow_redirects=False).status_code == 303


def test_disabled_users_are_signed_out(people: Any, registry: Registry, clock: FrozenClock) -> None:
    owner = people("owner")
    with transaction(registry.sessions) as session:
        user = session.scalars(select(ConsoleUser).where(ConsoleUser.email == owner.email)).one()
        user.disabled_at = clock.now()
    assert owner.get("/console/overview", follow_redirects=False).status_code == 303


def test_passwords_are_argon2id_and_rules_hold(registry: Registry, tenant: Tenant) -> None:
    from passgate.console.exceptions import InvalidUser, UserExists

    email = make_user(registry, tenant.client_id, "viewer")
    with registry.sessions() as session:
        stored = session.scalars(select(ConsoleUser.password_hash).where(ConsoleUser.email == email)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    auth = auth_service(registry)
    with transaction(registry.sessions) as session:
        for bad in ("short", "x" * 1025):
            with pytest.raises(InvalidUser):
                auth.create_user(
                    session, tenant.client_id, "new@example.com", bad, "viewer", registry.clock.now()
                )
        with pytest.raises(InvalidUser):
            auth.create_user(
                session, tenant.client_id, "new@example.com", PASSWORD, "admin", registry.clock.now()
            )
        with pytest.raises(UserExists):
            auth.create_user(
                session, tenant.client_id, email.upper(), PASSWORD, "viewer", registry.clock.now()
            )


def test_cli_user_create(
    settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from passgate.cli import main

    monkeypatch.setenv("PASSGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PASSGATE_SECRET_KEYS", settings.secret_keys or "")
    monkeypatch.setenv("PASSGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    email = f"cli-{tenant.client_id}@example.com"
    code = main(
        [
            "user",
            "create",
            "--client",
            tenant.client_id,
            "--email",
            email,
            "--role",
            "owner",
            "--password-stdin",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["userId"].startswith("cu_") and out["role"] == "owner"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert (
        main(
            [
                "user",
                "create",
                "--client",
                tenant.client_id,
                "--email",
                "b" + email,
                "--role",
                "viewer",
                "--password-stdin",
            ]
        )
        == 1
    )
    assert "at least 12" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(
            [
                "user",
                "create",
                "--client",
                "cl_nope",
                "--email",
                "c" + email,
                "--role",
                "viewer",
                "--password-stdin",
            ]
        )
        == 1
    )
    assert "no client" in capsys.readouterr().err
