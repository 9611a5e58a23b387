"""GET /manage/v1/mfa-sessions: the client's sessions filtered by status, channel, account, destination
and creation time, paged by an opaque cursor, each as GET /mfa/v2/{id} shows it, never a code; one client
never sees another's. Real SMTP and a real HTTP SMS gateway deliver the messages, so real codes exist."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from tests.factories import Tenant, make_tenant
from tests.functional.mfa.conftest import GATEWAY_SECRET, challenge, drain
from tests.servers import HttpReceiver, SmtpSink

LIST = "/manage/v1/mfa-sessions"
PHONE = "+12015550123"


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink, gateway: HttpReceiver) -> Settings:  # noqa: F811
    return settings.model_copy(
        update={
            "smtp_url": smtp.url,
            "mail_from": "Acme <no-reply@acme.example>",
            "sms_provider": "http",
            "sms_http_url": f"{gateway.url}/sms",
            "sms_http_secret": GATEWAY_SECRET,
        }
    )


def listed(http: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    r = http.get(LIST, params=params, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def ids(http: TestClient, tenant: Tenant, **params: Any) -> list[str]:
    return [item["ID"] for item in listed(http, tenant, **params)["items"]]


def all_pages(http: TestClient, tenant: Tenant, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(50):
        page = listed(http, tenant, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([item["ID"] for item in page["items"]])
        cursor = page["nextCursor"]
        if cursor is None:
            return pages
    raise AssertionError("paging did not end")


def start(http: TestClient, tenant: Tenant, template: str, account: str, **person: str) -> str:
    out = challenge(http, tenant, template, person=person, account={"id": account, "username": account})
    assert out["decision"] == "CHALLENGE" and out["mfa"]["error"] is None, out
    return str(out["mfa"]["ID"])


def test_filters_and_the_same_view_as_get(
    http: TestClient,
    tenant: Tenant,
    other_tenant: Tenant,
    registry: Registry,
    clock: FrozenClock,
    gateway: HttpReceiver,  # noqa: F811
) -> None:
    t0 = clock.now()
    a = start(http, tenant, "email-link", "acct-a", emailAddress="ann@example.com")
    clock.advance(60)
    b = start(http, tenant, "sms-code", "acct-b", phoneNumber=PHONE)
    clock.advance(60)
    c = start(http, tenant, "email-link", "acct-a", emailAddress="carl@example.com")
    clock.advance(60)
    d = start(http, tenant, "email-link", "acct-d", emailAddress="ann@example.com")
    # The other client's sessions, to the same destinations and accounts.
    x = start(http, other_tenant, "email-link", "acct-a", emailAddress="ann@example.com")
    y = start(http, other_tenant, "sms-code", "acct-b", phoneNumber=PHONE)
    drain(registry)
    assert http.post(f"/mfa/v2/{c}/cancel", headers=tenant.headers).status_code == 200

    assert ids(http, tenant) == [d, c, b, a]
    assert ids(http, other_tenant) == [y, x]
    assert ids(http, tenant, status="TERMINATED") == [c]
    assert ids(http, tenant, status="MESSAGE_SENT") == [d, b, a]
    assert ids(http, tenant, status="VERIFIED") == []
    assert ids(http, tenant, channel="SMS") == [b]
    assert ids(http, tenant, channel="EMAIL") == [d, c, a]
    assert ids(http, tenant, accountId="acct-a") == [c, a]
    assert ids(http, tenant, accountId="acct-a", status="MESSAGE_SENT") == [a]
    # The destination as the integration sends it; compared by its keyed hash.
    assert ids(http, tenant, destination="ann@example.com") == [d, a]
    assert ids(http, tenant, destination=PHONE) == [b]
    assert ids(http, tenant, destination=PHONE, channel="SMS") == [b]
    assert ids(http, tenant, destination="nobody@example.com") == []
    assert ids(http, other_tenant, destination="ann@example.com") == [x]
    # Creation time: from inclusive, to exclusive.
    t1, t3 = t0 + timedelta(seconds=60), t0 + timedelta(seconds=180)
    assert ids(http, tenant, createdFrom=t1.isoformat()) == [d, c, b]
    assert ids(http, tenant, createdTo=t3.isoformat()) == [c, b, a]
    assert ids(http, tenant, createdFrom=t1.isoformat(), createdTo=t3.isoformat()) == [c, b]
    assert ids(http, tenant, createdFrom=t1.isoformat().replace("+00:00", "Z"), channel="EMAIL") == [d, c]

    # Each item is exactly what GET /mfa/v2/{id} answers.
    for item in listed(http, tenant)["items"]:
        got = http.get(f"/mfa/v2/{item['ID']}", headers=tenant.headers).json()
        assert item == got
    # Another client's session is never there, under any filter.
    for params in ({}, {"accountId": "acct-a"}, {"destination": PHONE}, {"status": "MESSAGE_SENT"}):
        assert not {x, y} & set(ids(http, tenant, **params))


def test_no_code_or_link_in_the_list(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    gateway: HttpReceiver,  # noqa: F811
    smtp: SmtpSink,  # noqa: F811
) -> None:
    start(http, tenant, "sms-code", "acct-code", phoneNumber=PHONE)
    start(http, tenant, "email-link", "acct-link", emailAddress="lin@example.com")
    drain(registry)
    sms = [r for r in gateway.requests if r.path == "/sms"]
    code = re.search(r"#(\d{6})$", sms[-1].json()["body"])
    assert code is not None
    [mail] = smtp.wait_for(1)
    tokens = re.findall(r"/v/([A-Za-z0-9_-]{20,})", mail.part("text/plain"))
    assert tokens
    text = http.get(LIST, headers=tenant.admin_headers).text
    assert code.group(1) not in text
    for token in tokens:
        assert token not in text
    for item in listed(http, tenant)["items"]:
        assert "@" not in item["destination"] or "•" in item["destination"]
        assert PHONE not in str(item)
        assert "lin@example.com" not in str(item)


def test_cursor_paging_is_complete_and_stable(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock
) -> None:
    made: list[str] = []
    for n in range(7):
        # Three sessions share each instant: the id breaks the tie, and no page repeats or skips one.
        if n % 3 == 0:
            clock.advance(1)
        made.append(start(http, tenant, "email-link", f"acct-p{n}", emailAddress=f"p{n}@example.com"))
    everything = ids(http, tenant, limit=100)
    assert sorted(everything) == sorted(made)
    pages = all_pages(http, tenant, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == everything
    # A session made while paging lands on top and does not shift the pages already given.
    first = listed(http, tenant, limit=3)
    clock.advance(1)
    newest = start(http, tenant, "email-link", "acct-new", emailAddress="new@example.com")
    rest = all_pages(http, tenant, limit=3)
    assert rest[0][0] == newest
    second = listed(http, tenant, limit=3, cursor=first["nextCursor"])
    assert [i["ID"] for i in second["items"]] == everything[3:6]
    # Filters hold across pages.
    email_pages = all_pages(http, tenant, limit=2, channel="EMAIL", createdFrom=clock.now().isoformat())
    assert email_pages == [[newest]]
    assert listed(http, tenant, limit=100)["nextCursor"] is None


def test_a_cursor_names_no_tenant(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry, clock: FrozenClock
) -> None:
    mine = [
        start(http, tenant, "email-link", f"acct-m{n}", emailAddress=f"m{n}@example.com") for n in range(3)
    ]
    clock.advance(1)
    theirs = start(http, other_tenant, "email-link", "acct-t", emailAddress="t@example.com")
    cursor = listed(http, tenant, limit=1)["nextCursor"]
    assert cursor is not None
    # Another client handing in this client's cursor sees only its own (older) sessions: none here.
    assert ids(http, other_tenant, cursor=cursor) == []
    assert ids(http, other_tenant) == [theirs]
    assert set(ids(http, tenant, limit=100)) == set(mine)


def test_needs_the_admin_scope(http: TestClient, registry: Registry) -> None:
    plain = make_tenant(http, registry, name="No Admin", admin=False)
    assert http.get(LIST, headers=plain.headers).status_code == 403
    assert http.get(LIST).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"channel": "FAX"}, "channel"),
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"2026-01-01T00:00:00|").decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"2026-01-01T00:00:00|abc").decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|ab\x00c").decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00|abc").decode()}, "cursor"),
        ({"createdFrom": "0001-01-01T00:00:00+01:00"}, "createdFrom"),
        ({"createdFrom": "yesterday"}, "createdFrom"),
        ({"createdTo": "2026-12-07T09:00:00"}, "createdTo"),
        ({"destination": "not an address"}, "destination"),
        ({"destination": "+1999"}, "destination"),
        ({"destination": "jo@example.com", "channel": "SMS"}, "destination"),
        ({"accountId": ""}, "accountId"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(
    http: TestClient, tenant: Tenant, params: dict[str, Any], field: str
) -> None:
    r = http.get(LIST, params=params, headers=tenant.admin_headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [field]
