"""Save-time checks through the API: every refusal is a 4xx problem naming the field (and locale, part, line)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.templates.conftest import create, email_locale, email_template, errors_of, sms_template


def _refused(http: TestClient, tenant: Tenant, body: dict[str, Any], status: int = 422) -> dict[str, Any]:
    r = create(http, tenant, body)
    assert r.status_code == status, r.text
    # Nothing half-written: a refused template does not exist afterwards.
    name = body.get("name")
    if isinstance(name, str) and name not in ("email-link", "email-code", "sms-link", "sms-code"):
        path = f"/manage/v1/templates/{quote(name, safe='')}"
        # A name holding NUL cannot even be asked for (400): none can exist.
        assert http.get(path, headers=tenant.admin_headers).status_code == (400 if "\x00" in name else 404)
    return errors_of(r)


def test_syntax_error_names_locale_part_and_line(http: TestClient, tenant: Tenant) -> None:
    fr = email_locale("Bonjour")
    fr["html"] = "<p>Bonjour</p>\n<p>{{ link }}</p>\n<p>{{ person.name.first ! }}</p>\n<p>Merci</p>\n"
    errors = _refused(http, tenant, email_template("bad-syntax", en=email_locale(), fr=fr))
    e = errors["locales.fr.html"]
    assert (e["locale"], e["part"], e["line"]) == ("fr", "html", 3)
    assert "syntax error" in e["message"]
    assert "locales.en.html" not in errors  # the good locale is not blamed


def test_oth_without_link_in_any_locale_is_refused(http: TestClient, tenant: Tenant) -> None:
    de = email_locale("Hallo")
    de["text"] = "Hallo, bitte bestätigen."
    errors = _refused(http, tenant, email_template("no-link", en=email_locale(), de=de))
    assert set(errors) == {"locales.de.text"}
    assert "{{ link }}" in errors["locales.de.text"]["message"]


def test_otp_without_code_is_refused(http: TestClient, tenant: Tenant) -> None:
    errors = _refused(http, tenant, sms_template("no-code", en="Code {{ code }}", es="Tu clave está lista"))
    assert set(errors) == {"locales.es.sms"}
    assert "{{ code }}" in errors["locales.es.sms"]["message"]
    email = email_template("no-code-mail", kind="OTP", en=email_locale(placeholder="link"))
    assert set(_refused(http, tenant, email)) == {"locales.en.html", "locales.en.text"}


def test_sms_over_three_segments_is_refused(http: TestClient, tenant: Tenant) -> None:
    long_body = "Code {{ code }}. " + "Please read this carefully. " * 17  # ~490 GSM-7 characters
    errors = _refused(http, tenant, sms_template("too-long", en=long_body))
    assert "4 GSM-7 segments" in errors["locales.en.sms"]["message"]
    # Three segments (up to 459 GSM-7 characters with sample values) are fine.
    ok = "Code {{ code }}. " + "x" * (459 - len("Code 123456. "))
    assert create(http, tenant, sms_template("three-segments", en=ok)).status_code == 201
    ucs2 = "Код {{ code }}. " + "д" * 200  # 201+ UCS-2 characters: 4 segments of 67
    errors = _refused(http, tenant, sms_template("too-long-ucs2", en=ucs2))
    assert "UCS-2 segments" in errors["locales.en.sms"]["message"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(defaultLocale="fr"), "defaultLocale"),
        (lambda b: b.update(name="Has Spaces"), "name"),
        (lambda b: b.update(name="-leading-dash"), "name"),
        (lambda b: b["locales"].update({"english": email_locale()}), "locales.english"),
        (lambda b: b.update(locales={}), "locales"),
        (lambda b: b["locales"]["en"].update(sms="hi {{ link }}"), "locales.en.sms"),
        (lambda b: b["locales"]["en"].pop("text"), "locales.en.text"),
        (lambda b: b["locales"]["en"].update(text="{{ link }} {{ secret }}"), "locales.en.text"),
        (lambda b: b["locales"]["en"].update(subject="{{ link|nofilter }}"), "locales.en.subject"),
        (lambda b: b["locales"]["en"].update(html="{% include 'x.html' %}{{ link }}"), "locales.en.html"),
        (lambda b: b["locales"]["en"].update(html="{{ link|safe }}"), "locales.en.html"),
    ],
)
def test_each_rule_is_a_422_naming_the_field(
    http: TestClient, tenant: Tenant, mutate: Any, field: str
) -> None:
    body = email_template("rule-check")
    mutate(body)
    errors = _refused(http, tenant, body)
    assert field in errors, errors


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "channel": "FAX", "kind": "OTH", "defaultLocale": "en", "locales": {}}, "channel"),
        ({"name": "x", "channel": "SMS", "kind": "MAGIC", "defaultLocale": "en", "locales": {}}, "kind"),
        (
            {
                "name": "x",
                "channel": "SMS",
                "kind": "OTP",
                "defaultLocale": "en",
                "locales": {"en": {"sms": 5}},
            },
            "locales.en.sms",
        ),
        ({"name": "x", "channel": "SMS", "kind": "OTP", "defaultLocale": "en", "locales": []}, "locales"),
        ({"name": 7, "channel": "SMS", "kind": "OTP", "defaultLocale": "en", "locales": {}}, "name"),
        ({"channel": "SMS", "kind": "OTP", "defaultLocale": "en", "locales": {}}, "name"),
        (
            {"name": "x", "channel": "SMS", "kind": "OTP", "defaultLocale": "en", "locales": {}, "extra": 1},
            "extra",
        ),
    ],
)
def test_wrong_shapes_are_400_naming_the_field(
    http: TestClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    r = create(http, tenant, body)
    assert r.status_code == 400, r.text
    assert field in errors_of(r)


def test_not_json_and_oversized_bodies_are_problems(http: TestClient, tenant: Tenant) -> None:
    h = {**tenant.admin_headers, "Content-Type": "application/json"}
    r = http.post("/manage/v1/templates", content=b"{not json", headers=h)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    huge = email_template("huge")
    huge["locales"]["en"]["html"] = "{{ link }}" + "x" * 2_100_000
    r = create(http, tenant, huge)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


INJECTIONS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ brand.companyName.__class__ }}",
    "{{ brand['__class__'] }}",
    "{{ brand.companyName.upper() }}",
    "{{ values.items() }}",
    "{{ '{0.__class__}'.format(brand) }}",
    "{{ 'x%s' % brand }}",
    "{{ brand|attr('__class__') }}",
    "{{ config }}",
    "{{ request }}",
    "{{ range(10**9)|list }}",
    "{{ 'a' * 100000000 }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
    "{% set x = namespace() %}",
    "{{ dict(a=1) }}",
]


@pytest.mark.parametrize(
    ("payload", "part"),
    [(p, "html") for p in INJECTIONS] + [(p, part) for p in INJECTIONS[:3] for part in ("text", "subject")],
)
def test_template_injection_is_refused_at_save(
    http: TestClient, tenant: Tenant, payload: str, part: str
) -> None:
    body = email_template("ssti-attempt")
    body["locales"]["en"][part] += payload
    r = create(http, tenant, body)
    assert r.status_code == 422, r.text
    errors = errors_of(r)
    assert f"locales.en.{part}" in errors
    assert "Traceback" not in r.text


@pytest.mark.parametrize("payload", INJECTIONS[:6] + ["{{ 'a' * 100000000 }}"])
def test_template_injection_in_sms_is_refused_at_save(http: TestClient, tenant: Tenant, payload: str) -> None:
    r = create(http, tenant, sms_template("ssti-sms", en="Code {{ code }} " + payload))
    assert r.status_code == 422 and "locales.en.sms" in errors_of(r)


def test_odd_strings_never_reach_the_database_as_errors(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    """NUL bytes and other oddities are refused or not found, never a 5xx (PostgreSQL refuses NUL)."""
    h = tenant.admin_headers
    for path, status in (
        ("/manage/v1/templates/a%00b", 400),  # a NUL in any path is refused before routing
        ("/manage/v1/templates/" + "x" * 5000, 404),
        ("/manage/v1/templates/%E2%80%AE", 404),
    ):
        assert http.get(path, headers=h).status_code == status
        assert http.delete(path, headers=h).status_code == status
        assert http.post(f"{path}/preview", headers=h).status_code == status
        assert http.post(f"{path}/test-send", json={"to": "a@example.com"}, headers=h).status_code == status
    # JSON bodies carrying NUL are refused before any route sees them, naming the field (400).
    body = email_template("nul-inside")
    body["locales"]["en"]["html"] += "\x00"
    assert "locales.en.html" in _refused(http, tenant, body, status=400)
    body = email_template("nul-key")
    body["locales"]["en\x00"] = body["locales"]["en"]
    assert "locales.en\x00" in _refused(http, tenant, body, status=400)
    body = email_template("a\x00b")
    assert "name" in _refused(http, tenant, body, status=400)
    r = http.put("/manage/v1/templates/a%00b", json=email_template("a\x00b"), headers=h)
    assert r.status_code == 400
    r = http.put("/manage/v1/branding", json={"companyName": "A\x00B", "senderName": "\x00"}, headers=h)
    assert r.status_code == 400 and {"companyName", "senderName"} <= set(errors_of(r))
    r = http.post(
        "/manage/v1/templates/email-link/preview", json={"locale": "\x00", "values": {"a": "\x00"}}, headers=h
    )
    assert r.status_code == 400
    r = http.post("/manage/v1/templates/email-link/test-send", json={"to": "a\x00@example.com"}, headers=h)
    assert r.status_code == 400 and "to" in errors_of(r)
    # What a challenge asks the template source for: such a name is simply not found, without a query
    # PostgreSQL would refuse. (Through /login/v2 the decision's stored request would meet the same NUL.)
    with registry.sessions() as session:
        assert registry.templates.get(session, tenant.client_id, "x\x00y") is None
        assert registry.templates.get(session, tenant.client_id, "email-link\x00") is None
