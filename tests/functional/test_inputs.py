"""Inputs that used to reach a 500 (found by fuzzing the OpenAPI document): each is now a 4xx problem
document naming what is wrong, on SQLite and PostgreSQL, with nothing written; and a database that cannot
be reached is a 503 with Retry-After, from which the service recovers by itself."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from passgate.bootstrap import Registry, build_registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.db import make_engine
from passgate.main import create_app
from passgate.migrate import upgrade
from passgate.policy.models import Decision
from tests.factories import Tenant, login_body, make_tenant
from tests.servers import TcpProxy

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = dict(r.json())
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def decisions_of(registry: Registry, tenant: Tenant) -> int:
    with registry.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Decision).where(Decision.client_id == tenant.client_id)
            )
            or 0
        )


# -- non-finite numbers -------------------------------------------------------------------------------------

NON_FINITE = ["1e999999", "-1e999999", "NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("path", ["/login/v2", "/newaccountopening/v2"])
@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_in_a_decision_body_is_refused_naming_the_field(
    http: TestClient, registry: Registry, tenant: Tenant, path: str, number: str
) -> None:
    raw = f'{{"inquiryId":"x","deviceSessionId":"y","customFields":{{"n":{number}}}}}'
    r = http.post(path, content=raw, headers={**tenant.headers, "content-type": "application/json"})
    body = assert_problem(r, 400, "customFields.n")
    assert body["errors"][0]["message"] == "must be a finite number"
    assert decisions_of(registry, tenant) == 0


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_anywhere_in_any_json_body_is_refused(
    http: TestClient, tenant: Tenant, number: str
) -> None:
    # Not only where a number is expected: also in a field the route ignores, on any JSON route.
    raw = f'{{"inquiryId":"x","deviceSessionId":"y","unknown":{{"deep":[1,{number}]}}}}'
    r = http.post("/login/v2", content=raw, headers={**tenant.headers, "content-type": "application/json"})
    assert_problem(r, 400, "unknown.deep[1]")
    raw = f'{{"name":"x","segments":[{{"name":"default","policies":[]}}],"policies":[],"weight":{number}}}'
    r = http.put(
        "/manage/v1/policy-sets/LOGIN/draft",
        content=raw,
        headers={**tenant.admin_headers, "content-type": "application/json"},
    )
    assert_problem(r, 400, "weight")
    r = http.post(
        "/events/challenge-outcome",
        content=f'{{"eventId": {number}}}',
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert_problem(r, 400, "eventId")


def test_large_finite_numbers_are_still_accepted(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    raw = '{"inquiryId":"x","deviceSessionId":"y","customFields":{"n":1e308,"m":-9223372036854775808}}'
    r = http.post("/login/v2", content=raw, headers={**tenant.headers, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert decisions_of(registry, tenant) == 1


# -- NUL characters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,url",
    [
        ("GET", "/manage/v1/lists/a%00b"),
        ("DELETE", "/manage/v1/lists/a%00b"),
        ("GET", "/manage/v1/templates/a%00b"),
        ("GET", "/manage/v1/policy-sets/LOGIN/versions/v%001"),
        ("GET", "/mfa/v2/a%00b"),
        ("GET", "/manage/v1/webhooks/a%00b"),
        ("DELETE", "/manage/v1/api-keys/a%00b"),
        ("DELETE", "/trusted-device/a%00b/c"),
    ],
)
def test_a_nul_in_a_path_is_refused(http: TestClient, tenant: Tenant, method: str, url: str) -> None:
    headers = {"Authorization": f"Bearer {tenant.admin_token}"}
    if url.startswith(("/mfa", "/trusted")):
        headers = tenant.headers
    assert_problem(http.request(method, url, headers=headers), 400, "path")


@pytest.mark.parametrize(
    "url,field",
    [
        ("/trusted-device?accountId=a%00b&deviceSessionId=c", "accountId"),
        ("/manage/v1/lists/x?after=a%00", "after"),
        ("/manage/v1/policy-sets/LOGIN/diff?from=v%001&to=v2", "from"),
        ("/manage/v1/webhooks/x/deliveries?eventId=%00", "eventId"),
    ],
)
def test_a_nul_in_a_query_value_is_refused_naming_it(
    http: TestClient, tenant: Tenant, url: str, field: str
) -> None:
    headers = tenant.headers if url.startswith("/trusted") else tenant.admin_headers
    assert_problem(http.get(url, headers=headers), 400, field)


def test_a_nul_in_a_header_is_refused_naming_it(http: TestClient, tenant: Tenant) -> None:
    r = http.post(
        "/login/v2", json=login_body(), headers={**tenant.headers, "x-forwarded-for": "1.2.3.4\x00"}
    )
    assert_problem(r, 400, "x-forwarded-for")


def test_a_nul_in_a_body_is_refused_whatever_its_type(
    http: TestClient, registry: Registry, tenant: Tenant
) -> None:
    body = login_body(account={"id": "acct\x00", "username": "jo"})
    assert_problem(http.post("/login/v2", json=body, headers=tenant.headers), 400, "account.id")
    r = http.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials&scope=admin%00",
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=(tenant.client_id, tenant.api_key),
    )
    assert_problem(r, 400, "scope")
    http.post("/manage/v1/lists", json={"name": "devs", "kind": "deviceId"}, headers=tenant.admin_headers)
    r = http.post(
        "/manage/v1/lists/devs/entries",
        content=b"value\ndev1\ndev\x002\n",
        headers={**tenant.admin_headers, "content-type": "text/csv"},
    )
    assert_problem(r, 400, "body")
    assert decisions_of(registry, tenant) == 0
    assert http.get("/manage/v1/lists/devs", headers=tenant.admin_headers).json()["entries"] == 0


# -- integers out of range ----------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [2**31, 2**63, 2**64, 10**30])
def test_an_audit_log_page_past_any_id_is_refused(http: TestClient, tenant: Tenant, before: int) -> None:
    r = http.get(f"/manage/v1/audit-log?before={before}", headers=tenant.admin_headers)
    assert_problem(r, 400, "before")


def test_the_largest_audit_id_a_column_holds_is_accepted(http: TestClient, tenant: Tenant) -> None:
    r = http.get(f"/manage/v1/audit-log?before={2**31 - 1}", headers=tenant.admin_headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**40])
def test_an_integer_past_64_bits_in_a_json_body_is_refused(
    http: TestClient, registry: Registry, tenant: Tenant, number: int
) -> None:
    raw = f'{{"inquiryId":"x","deviceSessionId":"y","customFields":{{"n":{number}}}}}'
    r = http.post("/login/v2", content=raw, headers={**tenant.headers, "content-type": "application/json"})
    assert_problem(r, 400, "customFields.n")
    assert decisions_of(registry, tenant) == 0


# -- CSV line endings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_csv_imports_with_any_line_ending(http: TestClient, tenant: Tenant, newline: str) -> None:
    http.post("/manage/v1/lists", json={"name": "doms", "kind": "emailDomain"}, headers=tenant.admin_headers)
    text = newline.join(["value", "mailinator.com", "not a domain", "tempmail.dev", ""])
    r = http.post(
        "/manage/v1/lists/doms/entries",
        content=text.encode(),
        headers={**tenant.admin_headers, "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["added"] == 2
    assert [x["line"] for x in out["rejected"]] == [3]
    items = http.get("/manage/v1/lists/doms", headers=tenant.admin_headers).json()["items"]
    assert items == ["mailinator.com", "tempmail.dev"]


def test_csv_with_mixed_line_endings_counts_lines_as_written(http: TestClient, tenant: Tenant) -> None:
    http.post("/manage/v1/lists", json={"name": "doms", "kind": "emailDomain"}, headers=tenant.admin_headers)
    r = http.post(
        "/manage/v1/lists/doms/entries",
        content=b"a.example\r\nbad one\rb.example\nalso bad\r\n",
        headers={**tenant.admin_headers, "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 2
    assert [x["line"] for x in r.json()["rejected"]] == [2, 4]


def test_csv_that_cannot_be_read_is_refused_naming_the_line(http: TestClient, tenant: Tenant) -> None:
    http.post("/manage/v1/lists", json={"name": "doms", "kind": "emailDomain"}, headers=tenant.admin_headers)
    csv_headers = {**tenant.admin_headers, "content-type": "text/csv"}
    r = http.post(
        "/manage/v1/lists/doms/entries", content=b"a.example\rb.example\r\xff\xfe\r", headers=csv_headers
    )
    body = assert_problem(r, 400, "body")
    assert body["errors"][0]["line"] == 3
    # A field longer than the CSV reader takes (131,072 characters), on line 2.
    r = http.post(
        "/manage/v1/lists/doms/entries",
        content=b"a.example\r\n" + b"x" * 140_000 + b"\r\n",
        headers=csv_headers,
    )
    body = assert_problem(r, 400, "body")
    assert body["errors"][0]["line"] == 2
    # Nothing of a refused import was written.
    assert http.get("/manage/v1/lists/doms", headers=tenant.admin_headers).json()["entries"] == 0


# -- phone numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login/v2", "/newaccountopening/v2"])
@pytest.mark.parametrize("number", ["+12", "+1201", "+99912345", "+123456789012345"])
def test_an_impossible_phone_number_is_refused_naming_the_field(
    http: TestClient, registry: Registry, tenant: Tenant, path: str, number: str
) -> None:
    body = login_body(person={"emailAddress": "jo@example.com", "phoneNumber": number})
    r = http.post(path, json=body, headers=tenant.headers)
    assert_problem(r, 400, "person.phoneNumber")
    assert decisions_of(registry, tenant) == 0


def test_a_possible_phone_number_is_accepted(http: TestClient, tenant: Tenant) -> None:
    body = login_body(person={"emailAddress": "jo@example.com", "phoneNumber": "+447400123456"})
    assert http.post("/login/v2", json=body, headers=tenant.headers).status_code == 200


# -- database unreachable -----------------------------------------------------------------------------------


def _app_on(engine: Engine, settings: Settings, clock: FrozenClock) -> tuple[Registry, Any]:
    registry = build_registry(settings, clock=clock, engine=engine)
    return registry, create_app(registry=registry)


def _assert_unavailable(r: Any) -> None:
    assert_problem(r, 503)
    assert int(r.headers["retry-after"]) > 0
    assert "Traceback" not in r.text


def _outage_round(http: TestClient, registry: Registry, outage: Any, recover: Any) -> None:
    tenant = make_tenant(http, registry, name="Outage Co")
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200
    outage()
    _assert_unavailable(http.post("/login/v2", json=login_body(), headers=tenant.headers))
    _assert_unavailable(http.get("/manage/v1/lists", headers=tenant.admin_headers))
    _assert_unavailable(
        http.post("/manage/v1/lists", json={"name": "l", "kind": "ip"}, headers=tenant.admin_headers)
    )
    _assert_unavailable(
        http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(tenant.client_id, tenant.api_key),
        )
    )
    assert http.get("/readyz").status_code == 503
    recover()
    # No restart, no reset: the next requests are served, and the list refused during the outage was not made.
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200
    assert http.get("/manage/v1/lists", headers=tenant.admin_headers).json()["items"] == []
    assert http.get("/readyz").status_code == 200
    assert decisions_of(registry, tenant) == 2


def test_postgresql_unreachable_is_a_503_and_the_service_recovers_by_itself(
    settings: Settings, clock: FrozenClock, engine: Engine
) -> None:
    # `engine`: the run's schema, migrated.
    base = os.environ.get("PASSGATE_TEST_DATABASE_URL")
    if not base or not settings.database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (PASSGATE_TEST_DATABASE_URL), run with the postgresql parameter")
    url = urlsplit(settings.database_url)
    proxy = TcpProxy((url.hostname or "127.0.0.1", url.port or 5432))
    proxy.start()
    relayed = make_engine(
        urlunsplit(url._replace(netloc=f"{url.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    )
    try:
        registry, app = _app_on(relayed, settings, clock)
        with TestClient(app, raise_server_exceptions=False) as http:
            _outage_round(http, registry, proxy.stop, proxy.start)
    finally:
        proxy.stop()
        relayed.dispose()


def test_sqlite_unreachable_is_a_503_and_the_service_recovers_by_itself(
    settings: Settings, clock: FrozenClock, tmp_path: Path
) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the SQLite case")
    folder = tmp_path / "db"
    folder.mkdir()
    engine = make_engine(f"sqlite:///{folder / 'passgate.db'}")
    upgrade(engine)
    moved = tmp_path / "elsewhere"

    def outage() -> None:
        # The volume holding the file goes away; connections opened before it still hold the old file,
        # as a restarted pool would not, so the pool lets them go.
        shutil.move(folder, moved)
        engine.dispose()

    try:
        registry, app = _app_on(engine, settings, clock)
        with TestClient(app, raise_server_exceptions=False) as http:
            _outage_round(http, registry, outage, lambda: shutil.move(moved, folder))
    finally:
        engine.dispose()
