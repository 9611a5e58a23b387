"""POST /manage/v1/templates/{name}/test-send: queued in the outbox, sent by the worker, marked as a test."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from passgate.bootstrap import Registry
from passgate.messaging.models import DevInboxMessage, Message
from passgate.mfa.models import MfaSession
from tests.factories import Tenant, make_tenant
from tests.functional.mfa.conftest import drain
from tests.functional.templates.conftest import (
    PHONE_US,
    created,
    email_template,
    errors_of,
    parsed,
    put_branding,
)
from tests.servers import HttpReceiver, SmtpSink

PHONE_FR = "+33612345678"


def send_test(http: TestClient, tenant: Tenant, name: str, **body: Any) -> Any:
    return http.post(f"/manage/v1/templates/{name}/test-send", json=body, headers=tenant.admin_headers)


def test_email_test_send_is_queued_then_sent_marked_as_a_test(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    put_branding(
        http,
        tenant,
        companyName="Fjord Bank",
        sendingDomains=["fjord.example"],
        fromAddress="security@fjord.example",
    )
    r = send_test(http, tenant, "email-link", to="Admin@Example.com")
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["status"], out["channel"], out["locale"], out["templateName"]) == (
        "QUEUED",
        "EMAIL",
        "en",
        "email-link",
    )
    assert out["to"] == "Ad•••@example.com"
    assert smtp.received == []  # never sent inside the request

    assert drain(registry) == 1
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["Admin@example.com"]
    assert mail.mail_from == "security@fjord.example"
    msg = parsed(mail)
    assert msg["Subject"] == "[TEST] Confirm it's you – Fjord Bank"
    text, html = mail.part("text/plain"), mail.part("text/html")
    assert text.startswith("[TEST MESSAGE - the link and code in it are samples and do not work.]")
    assert re.search(r"<body[^>]*><div[^>]*>TEST MESSAGE - the link and code", html)
    sample = "http://127.0.0.1:8000/v/TEST-SAMPLE-LINK-it-does-not-work----------"
    assert sample in text and sample in html
    # The sample link leads nowhere: the neutral page of any unknown link.
    page = http.get(sample.removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200 and "can" in page.text

    with registry.sessions() as s:
        row = s.get(Message, out["messageId"])
        assert row is not None
        assert (row.purpose, row.status, row.session_id, row.sealed_secret) == ("test", "SENT", None, None)
        sessions = s.scalar(select(func.count()).where(MfaSession.client_id == tenant.client_id))
        assert sessions == 0  # a test send is no challenge


def test_sms_test_send_goes_through_the_gateway_in_the_phones_language(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    r = http.put(
        "/manage/v1/settings", json={"smsAllowedCountries": ["US", "FR"]}, headers=tenant.admin_headers
    )
    assert r.status_code == 200, r.text
    out = send_test(http, tenant, "sms-code", to=PHONE_FR).json()
    assert out["locale"] == "fr"
    assert send_test(http, tenant, "sms-code", to=PHONE_US, locale="de").json()["locale"] == "de"
    assert not [x for x in gateway.requests if x.path == "/sms"]
    assert drain(registry) == 2
    bodies = {x.json()["to"]: x.json()["body"] for x in gateway.requests if x.path == "/sms"}
    assert bodies[PHONE_FR].startswith("[TEST] Votre code Acme Shop : 123456.")
    assert bodies[PHONE_FR].endswith("\n@127.0.0.1 #123456")
    assert bodies[PHONE_US].startswith("[TEST] Ihr Code")


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("email-link", {"to": "+12015550123"}, "to"),
        ("email-link", {"to": "not-an-address"}, "to"),
        ("sms-code", {"to": "jo@example.com"}, "to"),
        ("sms-code", {"to": PHONE_FR}, "to"),  # France is not among this client's SMS countries
        ("sms-code", {"to": "+19005550123"}, "to"),  # premium rate
        ("sms-code", {"to": "+15005550006"}, "to"),  # the sandbox magic number, on a live client
        ("email-link", {"to": "jo@example.test"}, "to"),  # the sandbox magic domain, on a live client
        ("email-link", {"to": "jo@example.com", "locale": "ja"}, "locale"),
    ],
)
def test_bad_destinations_are_422_and_nothing_is_queued(
    http: TestClient, tenant: Tenant, registry: Registry, name: str, body: dict[str, Any], field: str
) -> None:
    r = send_test(http, tenant, name, **body)
    assert r.status_code == 422, r.text
    assert field in errors_of(r)
    assert drain(registry) == 0


@pytest.mark.parametrize("body", [{}, {"to": ""}, {"to": 5}, {"to": "a@b.co", "cc": "x"}])
def test_malformed_bodies_are_400(http: TestClient, tenant: Tenant, body: dict[str, Any]) -> None:
    r = http.post("/manage/v1/templates/email-link/test-send", json=body, headers=tenant.admin_headers)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_test_sends_are_rate_limited_per_client(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry
) -> None:
    for i in range(5):
        assert send_test(http, tenant, "email-link", to=f"a{i}@example.com").status_code == 202
    r = send_test(http, tenant, "email-link", to="a9@example.com")
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 61
    assert send_test(http, other_tenant, "email-link", to="b@example.com").status_code == 202
    assert drain(registry) == 6


def test_a_sandbox_clients_test_send_stays_in_the_dev_inbox(
    http: TestClient, registry: Registry, smtp: SmtpSink
) -> None:
    sandbox = make_tenant(http, registry, name="Sandbox Co", sandbox=True)
    r = send_test(http, sandbox, "email-link", to="someone@example.com")
    assert r.status_code == 202 and r.json()["sandbox"] is True
    assert drain(registry) == 1
    assert smtp.received == []
    with registry.sessions() as s:
        row = s.scalars(
            select(DevInboxMessage).where(DevInboxMessage.message_id == r.json()["messageId"])
        ).one()
    assert row.subject and row.subject.startswith("[TEST] ")


def test_a_template_deleted_before_sending_fails_the_message_quietly(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    created(http, tenant, email_template("short-lived"))
    r = send_test(http, tenant, "short-lived", to="jo@example.com")
    assert r.status_code == 202
    assert http.delete("/manage/v1/templates/short-lived", headers=tenant.admin_headers).status_code == 204
    drain(registry)
    assert smtp.received == []
    with registry.sessions() as s:
        row = s.get(Message, r.json()["messageId"])
        assert row is not None and row.status == "FAILED" and "template" in (row.last_error or "")
