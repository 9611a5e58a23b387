"""Every console page renders for every role, clients never see each other's data, and no input — odd
paths, NUL bytes, oversized or malformed forms — gets a 5xx."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.config import Settings
from tests.factories import Tenant, login_body, make_tenant
from tests.functional.console.test_roles import console_posts


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Webhook endpoints on 127.0.0.1 (nothing listens there; these tests never deliver).
    return settings.model_copy(update={"webhook_allow_private": True})


PAGES = [
    "/console/overview",
    "/console/overview?period=7d",
    "/console/overview?period=30d",
    "/console/overview?period=bogus",
    "/console/sessions",
    "/console/sessions?status=VERIFIED&channel=EMAIL&account=a&q=b&before=2026-01-01T00:00:00%2B00:00",
    "/console/activity",
    "/console/activity?decision=BLOCK&status=VERIFIED&channel=SMS&from=2026-01-01T00:00&to=2030-01-01T00:00",
    "/console/templates",
    "/console/templates/email-link",
    "/console/templates/sms-code?locale=ar",
    "/console/templates/email-link?locale=pt-BR",
    "/console/templates/new?name=x&channel=SMS&kind=OTP",
    "/console/branding",
    "/console/policies/LOGIN",
    "/console/policies/NEW_ACCOUNT_OPENING",
    "/console/policies/LOGIN/versions/v1",
    "/console/policies/LOGIN/diff?a=v1&b=draft",
    "/console/lists",
    "/console/webhooks",
    "/console/keys",
    "/console/settings",
    "/console/audit",
    "/console/account",
]


@pytest.mark.parametrize("role", ["viewer", "owner"])
def test_every_page_renders(people: Any, role: str) -> None:
    person = people(role)
    for path in PAGES:
        r = person.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert 'href="#main"' in r.text  # the skip link


def test_a_client_never_sees_another_clients_data(
    people: Any, http: TestClient, registry: Registry, other_tenant: Tenant
) -> None:
    mine = people("owner")
    # The other client: a challenge (an MFA session), a list, a template, a webhook endpoint, a key name.
    r = http.post(
        "/login/v2", json=login_body(strategy={"mfaTemplateName": "email-link"}), headers=other_tenant.headers
    )
    session_id = r.json()["mfa"]["ID"]
    admin = other_tenant.admin_headers
    http.post("/manage/v1/lists", json={"name": "their-secret-list", "kind": "email"}, headers=admin)
    http.post(
        "/manage/v1/templates",
        headers=admin,
        json={
            "name": "their-template",
            "channel": "SMS",
            "kind": "OTP",
            "defaultLocale": "en",
            "locales": {"en": {"sms": "Code {{ code }}"}},
        },
    )
    http.post("/manage/v1/api-keys", json={"name": "their-key-name"}, headers=admin)

    for path in (
        f"/console/sessions/{session_id}",
        "/console/lists/their-secret-list",
        "/console/templates/their-template",
    ):
        r = mine.get(path)
        assert r.status_code == 404, path
    assert "No sessions match" in mine.get(f"/console/sessions?q={session_id}").text
    listing = {
        p: mine.get(p).text
        for p in (
            "/console/sessions",
            "/console/lists",
            "/console/templates",
            "/console/keys",
            "/console/overview",
        )
    }
    for text in listing.values():
        for secret in (
            session_id,
            "their-secret-list",
            "their-template",
            "their-key-name",
            other_tenant.client_id,
        ):
            assert secret not in text
    # Nor change it: a POST naming the other client's list or template finds nothing.
    assert mine.post("/console/lists/their-secret-list/delete").status_code == 404
    assert mine.post("/console/templates/their-template/delete").status_code in (303, 404)
    assert http.get("/manage/v1/lists/their-secret-list", headers=admin).status_code == 200
    assert http.get("/manage/v1/templates/their-template", headers=admin).status_code == 200


def test_webhook_endpoints_of_another_client_are_invisible(
    people: Any, http: TestClient, registry: Registry
) -> None:
    other = make_tenant(http, registry, name="Hooks Co")
    endpoint = registry.webhooks
    from passgate.db import transaction

    with transaction(registry.sessions) as session:
        row, _ = endpoint.create_endpoint(
            session,
            other.client_id,
            url="http://127.0.0.1:9/hooks",
            events=["Decision.Created"],
            channel=None,
            signature_scheme="kount-rsa-pss",
        )
        endpoint_id = row.id
    owner = people("owner")
    assert owner.get(f"/console/webhooks/{endpoint_id}").status_code == 404
    assert endpoint_id not in owner.get("/console/webhooks").text
    assert owner.post(f"/console/webhooks/{endpoint_id}/delete").status_code == 404
    assert owner.post(f"/console/webhooks/{endpoint_id}/replay").status_code == 404


ODD = ["%00", "a%00b", "x" * 500, "..%2F..%2Fetc", "%F0%9F%92%A5", "' or 1=1 --", "<script>", "v0", "-"]


def test_no_5xx_from_odd_paths_and_parameters(people: Any) -> None:
    owner = people("owner")
    bases = [
        "/console/sessions/",
        "/console/templates/",
        "/console/policies/",
        "/console/policies/LOGIN/versions/",
        "/console/lists/",
        "/console/webhooks/",
        "/console/templates/email-link?locale=",
        "/console/sessions?q=",
        "/console/sessions?before=",
        "/console/sessions?account=",
        "/console/lists/x?after=",
        "/console/audit?before=",
        "/console/overview?period=",
        "/console/policies/LOGIN/diff?a=",
        "/console/sign-in?next=",
    ]
    for base in bases:
        for odd in ODD:
            r = owner.get(base + odd)
            assert r.status_code < 500, (base, odd, r.status_code)


def test_no_5xx_from_odd_forms(people: Any, app: Any) -> None:
    owner = people("owner")
    nasty = {"name": "a\x00b", "url": "\x00", "entries": "x\x00", "request": "{\x00}", "document": "\x00"}
    for path, _ in console_posts(app):
        r = owner.post(path, nasty)
        assert r.status_code < 500, (path, r.status_code)
        assert r.status_code == 400 and "NUL" in r.text, path
        for data in (
            {
                "name": "x" * 5000,
                "document": "[1,2",
                "request": "[]",
                "to": "nope",
                "eventId": "zz",
                "segments": "99999",
                "policies": "-1",
                "otpLength": "1" * 30,
                "url": "ftp://x",
            },
            {"action": "remove-policy:999", "segments": "1", "s0.conditions": "5", "policies": "abc"},
        ):
            r = owner.post(path, data)
            assert r.status_code < 500, (path, data, r.status_code)
    # A NUL in the sign-in form, a multipart body that is not multipart, a huge body.
    r = owner.http.post("/console/sign-in", data={"email": "a\x00@example.com", "password": "x", "csrf": "y"})
    assert r.status_code == 400
    r = owner.http.post(
        "/console/keys",
        content=b"--x\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=x", "x-csrf-token": owner.csrf},
    )
    assert r.status_code < 500
    r = owner.http.post(
        "/console/lists",
        content=b"a=" + b"x" * 2_100_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


def test_preview_api_answers_problem_json(people: Any) -> None:
    viewer = people("viewer")
    ok = viewer.http.post(
        "/console/api/templates/preview",
        headers={"x-csrf-token": viewer.csrf},
        data={"channel": "SMS", "kind": "OTP", "locale": "en", "sms": "Code {{ code }} ✓"},
    )
    assert ok.status_code == 200 and ok.json()["sms"]["encoding"] == "UCS-2"
    bad = viewer.http.post(
        "/console/api/templates/preview",
        headers={"x-csrf-token": viewer.csrf},
        data={
            "channel": "EMAIL",
            "kind": "OTH",
            "locale": "en",
            "subject": "s",
            "html": "<p>\n{% if %}</p>",
            "text": "{{ link }}",
        },
    )
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert any(e.get("line") == 2 for e in bad.json()["errors"])


@pytest.mark.parametrize(
    "payload",
    [
        "{{ (((9**64)**64)**64)**64 }}",
        "{% for a in 'x' * 10000 %}{% for b in 'x' * 10000 %}{% endfor %}{% endfor %}",
        "{% for a in 'x' * 10000 %}{{ 'y' * 10000 }}{% endfor %}",
    ],
)
def test_the_live_preview_refuses_hostile_templates_fast(people: Any, payload: str) -> None:
    # The live preview renders on every keystroke: the review's payloads are refused there as at save.
    viewer = people("viewer")
    started = time.monotonic()
    r = viewer.http.post(
        "/console/api/templates/preview",
        headers={"x-csrf-token": viewer.csrf},
        data={
            "channel": "EMAIL",
            "kind": "OTH",
            "locale": "en",
            "subject": "s",
            "html": "{{ link }}",
            "text": "{{ link }}\n" + payload,
        },  # fmt: skip
    )
    assert time.monotonic() - started < 2.0
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert {(e["field"], e.get("line")) for e in r.json()["errors"]} == {("locales.en.text", 2)}, r.json()


def test_the_key_limit_shows_before_it_is_hit_and_a_refused_key_keeps_what_was_typed(people: Any) -> None:
    owner = people("owner")
    page = owner.get("/console/keys").text  # the tenant has the key its tests use
    assert 'id="key-limit"' in page and "1 more active key allowed (at most 2)" in page
    assert owner.post("/console/keys", {"name": "one"}).status_code == 200
    page = owner.get("/console/keys").text
    # Said before submitting, and the button is off.
    assert "this one has 2: revoke one above" in page
    assert (
        '<button type="submit" class="primary" disabled aria-describedby="key-limit">Create key</button>'
        in page
    )
    # Posted anyway (an old page): refused, and the typed name and scope are still in the form.
    r = owner.post("/console/keys", {"name": "third service", "admin": "on"})
    assert r.status_code == 409, r.status_code
    assert 'value="third service"' in r.text and 'id="key-admin" name="admin" checked' in r.text
