"""Locale negotiation through the decision API: preferredLanguageCode, then the phone number's
country, then the template's default; the hosted page follows Accept-Language among the template's locales."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain, session_of
from tests.functional.mfa.test_email_link import BROWSER, link_from
from tests.functional.templates.conftest import PHONE_US, created, parsed
from tests.servers import HttpReceiver, SmtpSink

PHONE_FR = "+33612345678"
PHONE_DE = "+4915112345678"
PHONE_ES = "+34612345678"
MARKS = {"en": "EN-MARK", "fr": "FR-MARK", "de": "DE-MARK", "es": "ES-MARK"}


def _email(name: str, default: str, tags: list[str]) -> dict[str, Any]:
    locales = {
        t: {
            "subject": f"{MARKS[t]} subject",
            "html": f"<p>{MARKS[t]} {{{{ link }}}}</p>",
            "text": f"{MARKS[t]} {{{{ link }}}}",
        }
        for t in tags
    }
    return {"name": name, "channel": "EMAIL", "kind": "OTH", "defaultLocale": default, "locales": locales}


def _sms(name: str, default: str, tags: list[str]) -> dict[str, Any]:
    locales = {t: {"sms": f"{MARKS[t]} {{{{ code }}}}"} for t in tags}
    return {"name": name, "channel": "SMS", "kind": "OTP", "defaultLocale": default, "locales": locales}


@pytest.fixture
def setup(http: TestClient, tenant: Tenant) -> Tenant:
    created(http, tenant, _email("lingo", "en", ["en", "fr", "de", "es"]))
    created(http, tenant, _sms("lingo-sms", "en", ["en", "fr", "de", "es"]))
    created(http, tenant, _email("german-first", "de", ["de", "fr"]))
    created(http, tenant, _sms("german-first-sms", "de", ["de", "fr"]))
    r = http.put(
        "/manage/v1/settings",
        json={"smsAllowedCountries": ["US", "FR", "DE", "ES"]},
        headers=tenant.admin_headers,
    )
    assert r.status_code == 200, r.text
    return tenant


def _mail_locale(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, template: str, **body: Any
) -> str:
    out = challenge(http, tenant, template, **body)
    assert out["mfa"]["error"] is None, out
    drain(registry)
    [mail] = smtp.wait_for(1)
    smtp.received.clear()
    subject = str(parsed(mail)["Subject"])
    locale = session_of(http, tenant, out["mfa"]["ID"])["locale"]
    assert subject == f"{MARKS[locale]} subject"  # the session's locale is the one the mail was written in
    return str(locale)


def _sms_locale(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver, template: str, **body: Any
) -> str:
    out = challenge(http, tenant, template, **body)
    assert out["mfa"]["error"] is None, out
    drain(registry)
    sms = [r.json() for r in gateway.requests if r.path == "/sms"][-1]
    locale = str(session_of(http, tenant, out["mfa"]["ID"])["locale"])
    assert sms["body"].startswith(MARKS[locale])
    return locale


@pytest.mark.parametrize(
    ("person", "preferred", "expected"),
    [
        ({}, "fr", "fr"),  # rule 1: preferredLanguageCode
        ({}, "fr-CA", "fr"),  # … a regional tag finds its language
        ({}, "DE", "de"),  # … in any case
        ({"phoneNumber": PHONE_ES}, None, "es"),  # rule 2: the phone number's country, for email too
        ({"phoneNumber": PHONE_ES}, "de", "de"),  # … but the request's preference comes first
        ({"phoneNumber": PHONE_ES}, "ja", "es"),  # … and decides when the preference is not available
        ({}, "ja", "en"),  # rule 3: the template's default
        ({}, None, "en"),
        ({"phoneNumber": "+966501234567"}, None, "en"),  # Saudi Arabia → ar, which this template lacks
    ],
)
def test_email_locale(
    http: TestClient,
    setup: Tenant,
    registry: Registry,
    smtp: SmtpSink,
    person: dict[str, str],
    preferred: str | None,
    expected: str,
) -> None:
    body: dict[str, Any] = {"person": {"emailAddress": "jo@example.com", **person}}
    if preferred:
        body["preferredLanguageCode"] = preferred
    assert _mail_locale(http, setup, registry, smtp, "lingo", **body) == expected


@pytest.mark.parametrize(
    ("template", "phone", "preferred", "expected"),
    [
        ("lingo-sms", PHONE_FR, None, "fr"),  # rule 2: the phone number's country
        ("lingo-sms", PHONE_DE, None, "de"),
        ("lingo-sms", PHONE_US, None, "en"),
        ("lingo-sms", PHONE_FR, "es", "es"),  # rule 1 beats rule 2
        ("german-first-sms", PHONE_US, None, "de"),  # US → en, absent: the template's default
        ("german-first-sms", PHONE_ES, "en", "de"),  # neither the preference nor Spanish: the default
    ],
)
def test_sms_locale(
    http: TestClient,
    setup: Tenant,
    registry: Registry,
    gateway: HttpReceiver,
    template: str,
    phone: str,
    preferred: str | None,
    expected: str,
) -> None:
    body: dict[str, Any] = {"person": {"phoneNumber": phone}}
    if preferred:
        body["preferredLanguageCode"] = preferred
    assert _sms_locale(http, setup, registry, gateway, template, **body) == expected


def test_default_locale_that_is_not_english(
    http: TestClient, setup: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    body = {"person": {"emailAddress": "jo@example.com"}}
    assert _mail_locale(http, setup, registry, smtp, "german-first", **body) == "de"


def test_account_opening_uses_the_same_rules(
    http: TestClient, setup: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    out = challenge(
        http,
        setup,
        "lingo",
        event="NEW_ACCOUNT_OPENING",
        person={"emailAddress": "new@example.com"},
        preferredLanguageCode="es",
    )
    drain(registry)
    assert str(parsed(smtp.wait_for(1)[0])["Subject"]) == "ES-MARK subject"
    assert session_of(http, setup, out["verification"]["ID"])["locale"] == "es"


@pytest.mark.parametrize(
    ("accept_language", "lang"),
    [
        ("fr-CA,fr;q=0.9,en;q=0.5", "fr"),
        ("de;q=0.9, fr;q=0.8", "de"),
        ("es, ja;q=0.5", "es"),
        ("ja, zh;q=0.5", "en"),  # none of the template's locales: its default
        ("", "en"),
    ],
)
def test_hosted_page_follows_accept_language_among_the_templates_locales(
    http: TestClient, setup: Tenant, registry: Registry, smtp: SmtpSink, accept_language: str, lang: str
) -> None:
    challenge(http, setup, "lingo", person={"emailAddress": "page@example.com"}, preferredLanguageCode="de")
    drain(registry)
    path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
    page = http.get(path, headers={**BROWSER, "Accept-Language": accept_language})
    assert page.status_code == 200
    assert f'lang="{lang}"' in page.text
