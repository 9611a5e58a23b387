"""Console tests: people signed in through the real flow (password, then the email link from the dev
inbox on a new device), driving the pages with a test client."""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.console.routes.common import auth_service
from passgate.db import transaction
from passgate.messaging.models import DevInboxMessage
from tests.factories import Tenant

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def make_user(registry: Registry, client_id: str, role: str, email: str | None = None) -> str:
    address = email or f"{role}{next(_seq)}-{client_id[-6:]}@example.com"
    with transaction(registry.sessions) as session:
        auth_service(registry).create_user(session, client_id, address, PASSWORD, role, registry.clock.now())
    return address


def drain(registry: Registry) -> None:
    for _ in range(10):
        if asyncio.run(registry.dispatcher.run_once()) == 0:
            break


def inbox_link(registry: Registry, email: str) -> str:
    drain(registry)
    with registry.sessions() as session:
        row = session.scalars(
            select(DevInboxMessage)
            .where(DevInboxMessage.destination == email)
            .order_by(DevInboxMessage.id.desc())
        ).first()
    assert row is not None and row.link, f"no sign-in email for {email}"
    return str(row.link)


def submit_password(http: TestClient, email: str, password: str = PASSWORD) -> Any:
    page = http.get("/console/sign-in")
    assert page.status_code == 200
    return http.post(
        "/console/sign-in",
        data={"email": email, "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )


def confirm_link(http: TestClient, link: str) -> Any:
    path = "/" + link.split("/", 3)[3]
    page = http.get(path)
    assert page.status_code == 200, page.text
    token = path.rsplit("/", 1)[1]
    return http.post(f"/v/{token}/confirm", data={"csrf": csrf_of(page.text)}, follow_redirects=False)


def sign_in(http: TestClient, registry: Registry, email: str) -> str:
    """The whole flow on a new device; returns the session's CSRF token."""
    r = submit_password(http, email)
    assert r.status_code == 303, r.text
    if r.headers["location"].endswith("/check-email"):
        waiting = http.get("/console/sign-in/check-email")
        assert "Check your email" in waiting.text
        confirmed = confirm_link(http, inbox_link(registry, email))
        assert confirmed.status_code == 303
        done = http.get("/console/sign-in/check-email", follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/console/overview", done.text
    page = http.get("/console/overview")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@dataclass
class Person:
    email: str
    role: str
    client_id: str
    http: TestClient
    csrf: str

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.http.post(path, data={"csrf": self.csrf, **(data or {})}, follow_redirects=False, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.http.get(path, **kw)


@pytest.fixture
def people(app: Any, registry: Registry, tenant: Tenant) -> Any:
    """people(role, tenant=None): a signed-in person with a browser of their own (a TestClient)."""
    clients: list[TestClient] = []

    def make(role: str, of: Tenant | None = None) -> Person:
        who = of or tenant
        email = make_user(registry, who.client_id, role)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Person(email, role, who.client_id, client, sign_in(client, registry, email))

    yield make
    for c in clients:
        c.__exit__(None, None, None)
