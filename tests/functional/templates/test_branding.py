"""/manage/v1/branding, and the branding reaching email (From header included), SMS and the hosted page."""

from __future__ import annotations

import email
import email.policy
from email.utils import parseaddr
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain
from tests.functional.mfa.test_email_link import BROWSER, link_from
from tests.functional.templates.conftest import PHONE_US, errors_of, put_branding
from tests.servers import HttpReceiver, SmtpSink

FJORD: dict[str, Any] = {
    "companyName": "Fjord Bank",
    "logoUrl": "https://cdn.fjord.example/logo.png",
    "primaryColor": "#0F766E",
    "supportUrl": "mailto:help@fjord.example",
    "senderName": "Fjord Security",
    "sendingDomains": ["Fjord.Example.", "mail.fjord.example"],
    "fromAddress": "security@FJORD.example",
}


def test_defaults_come_from_the_client_and_the_operator(http: TestClient, tenant: Tenant) -> None:
    r = http.get("/manage/v1/branding", headers=tenant.admin_headers)
    assert r.status_code == 200
    assert r.json() == {
        "companyName": "Acme Shop",
        "logoUrl": None,
        "primaryColor": "#2563eb",
        "supportUrl": None,
        "senderName": None,
        "sendingDomains": [],
        "fromAddress": None,
        "effectiveFrom": "Acme Shop <no-reply@passgate.example>",
        "custom": False,
        "updatedAt": None,
    }


def test_put_normalises_and_get_returns_it(http: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    out = put_branding(http, tenant, **FJORD)
    assert out["primaryColor"] == "#0f766e"
    assert out["sendingDomains"] == ["fjord.example", "mail.fjord.example"]
    assert out["fromAddress"] == "security@fjord.example"
    assert out["effectiveFrom"] == "Fjord Security <security@fjord.example>"
    assert out["custom"] is True and out["updatedAt"]
    assert http.get("/manage/v1/branding", headers=tenant.admin_headers).json() == out
    # Another client's branding is its own.
    assert (
        http.get("/manage/v1/branding", headers=other_tenant.admin_headers).json()["companyName"]
        == "Other Co"
    )
    # PUT replaces the whole document: omitted fields go back to their defaults.
    again = put_branding(http, tenant, companyName="Fjord")
    assert (again["fromAddress"], again["sendingDomains"], again["logoUrl"]) == (None, [], None)
    assert again["effectiveFrom"] == "Fjord <no-reply@passgate.example>"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fromAddress": "security@elsewhere.example"}, "fromAddress"),
        ({"fromAddress": "security@sub.fjord.example"}, "fromAddress"),
        ({"sendingDomains": [], "fromAddress": "security@fjord.example"}, "fromAddress"),
        ({"fromAddress": "not an address"}, "fromAddress"),
        ({"fromAddress": "sécurité@fjord.example"}, "fromAddress"),
        ({"sendingDomains": ["a.example", "b.example", "c.example", "d.example"]}, "sendingDomains"),
        ({"sendingDomains": ["fjord.example", "FJORD.example"]}, "sendingDomains[1]"),
        ({"sendingDomains": ["not a domain"]}, "sendingDomains[0]"),
        ({"sendingDomains": ["localhost"]}, "sendingDomains[0]"),
        ({"sendingDomains": ["mail.test"]}, "sendingDomains[0]"),
        ({"sendingDomains": ["a@fjord.example"]}, "sendingDomains[0]"),
        ({"primaryColor": "red"}, "primaryColor"),
        ({"primaryColor": "#12345g"}, "primaryColor"),
        ({"primaryColor": "#fff;background:url(x)"}, "primaryColor"),
        ({"logoUrl": "javascript:alert(1)"}, "logoUrl"),
        ({"logoUrl": "data:image/png;base64,AAAA"}, "logoUrl"),
        # The hosted page's CSP loads images over https only: it would show a broken image on every page.
        ({"logoUrl": "http://cdn.fjord.example/logo.png"}, "logoUrl"),
        ({"logoUrl": "HTTP://cdn.fjord.example/logo.png"}, "logoUrl"),
        ({"supportUrl": "javascript:alert(1)"}, "supportUrl"),
        ({"senderName": "Fjord\r\nBcc: victim@example.com"}, "senderName"),
        ({"companyName": "  "}, "companyName"),
        ({"companyName": "x" * 101}, "companyName"),
    ],
)
def test_bad_values_are_422_naming_the_field(
    http: TestClient, tenant: Tenant, change: dict[str, Any], field: str
) -> None:
    r = http.put("/manage/v1/branding", json={**FJORD, **change}, headers=tenant.admin_headers)
    assert r.status_code == 422, r.text
    assert field in errors_of(r)
    assert http.get("/manage/v1/branding", headers=tenant.admin_headers).json()["custom"] is False


@pytest.mark.parametrize(
    "body",
    [{"companyName": 5}, {"sendingDomains": "fjord.example"}, {"colour": "#fff"}, {"fromAddress": ["x"]}, []],
)
def test_wrong_shapes_are_400(http: TestClient, tenant: Tenant, body: Any) -> None:
    r = http.put("/manage/v1/branding", json=body, headers=tenant.admin_headers)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_email_goes_out_from_the_clients_address_with_its_branding(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    put_branding(http, tenant, **{**FJORD, "senderName": 'Fjord "Sécurité"'})
    challenge(http, tenant, "email-link", person={"emailAddress": "jo@example.com"})
    drain(registry)
    [mail] = smtp.wait_for(1)
    msg = mail.message
    assert mail.mail_from == "security@fjord.example"  # the envelope sender too (SPF aligns)
    # Parsed as a mail client would: quotes and accents in the name survive, nothing spills out of it.
    [sender] = email.message_from_bytes(mail.raw, policy=email.policy.default)["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ('Fjord "Sécurité"', "security@fjord.example")
    assert msg["Message-ID"].endswith("@fjord.example>")
    html = mail.part("text/html")
    assert 'src="https://cdn.fjord.example/logo.png"' in html and "#0f766e" in html
    assert "mailto:help@fjord.example" in html
    assert "Fjord Bank" in msg["Subject"]


def test_without_a_from_address_the_operators_address_is_used(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    put_branding(http, tenant, companyName="Fjord Bank", senderName="Fjord Security")
    challenge(http, tenant, "email-link", person={"emailAddress": "jo@example.com"})
    drain(registry)
    [mail] = smtp.wait_for(1)
    assert mail.mail_from == "no-reply@passgate.example"
    assert parseaddr(mail.message["From"]) == ("Fjord Security", "no-reply@passgate.example")


def test_sms_and_hosted_page_carry_the_branding(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, gateway: HttpReceiver
) -> None:
    put_branding(http, tenant, **FJORD)
    challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE_US})
    challenge(http, tenant, "email-link", person={"emailAddress": "jo@example.com"})
    drain(registry)
    [sms] = [r.json() for r in gateway.requests if r.path == "/sms"]
    assert sms["body"].startswith("Fjord Bank code: ")
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
    page = http.get(path, headers=BROWSER)
    assert "Fjord Bank" in page.text and "#0f766e" in page.text
    assert 'src="https://cdn.fjord.example/logo.png"' in page.text
