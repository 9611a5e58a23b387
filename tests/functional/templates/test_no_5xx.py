"""Random and hostile bodies on every template and branding route: always a 2xx or a 4xx problem, never a 5xx."""

from __future__ import annotations

import random
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Tenant

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202e",
    "💥" * 40,
    "x" * 3000,
    "{{ link }}",
    "{{",
    "{% raw %}",
    "'; DROP TABLE message_templates; --",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "en",
    "EMAIL",
    "SMS",
    "OTP",
    "OTH",
    "#fff",
    "https://example.com",
    "jo@example.com",
    "+12015550123",
    "fjord.example",
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.45:
        return rng.choice(ODD_STRINGS)
    if roll < 0.55:
        return rng.choice([None, True, False, 0, -1, 10**20, 1.5])
    if roll < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(ODD_STRINGS + ["sms", "html", "text", "subject"]): _value(rng, depth + 1) for _ in range(3)
    }


def _template_body(rng: random.Random) -> Any:
    keys = ["name", "channel", "kind", "locales", "defaultLocale", "extra"]
    body = {k: _value(rng) for k in keys if rng.random() < 0.8}
    if rng.random() < 0.5:
        body["locales"] = {
            rng.choice(["en", "fr", "x"]): {p: rng.choice(ODD_STRINGS) for p in ("sms", "html", "text")}
        }
    return body if rng.random() < 0.9 else _value(rng)


def test_random_input_never_gives_a_5xx(http: TestClient, tenant: Tenant) -> None:
    rng = random.Random(20261206)
    h = tenant.admin_headers
    branding_keys = [
        "companyName",
        "logoUrl",
        "primaryColor",
        "supportUrl",
        "senderName",
        "sendingDomains",
        "fromAddress",
    ]
    for i in range(120):
        name = rng.choice(["email-link", "sms-code", "mine", "x" * 70, "a b", "%00", "Ünïcode"])
        calls = [
            ("POST", "/manage/v1/templates", _template_body(rng)),
            ("PUT", f"/manage/v1/templates/{name}", _template_body(rng)),
            ("POST", f"/manage/v1/templates/{name}/preview", {"locale": _value(rng), "values": _value(rng)}),
            ("POST", f"/manage/v1/templates/{name}/test-send", {"to": _value(rng), "locale": _value(rng)}),
            ("PUT", "/manage/v1/branding", {k: _value(rng) for k in branding_keys if rng.random() < 0.6}),
        ]
        method, path, body = calls[i % len(calls)]
        r = http.request(method, path, json=body, headers=h)
        assert r.status_code < 500, (method, path, body, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json", r.text
    # Whatever got saved along the way still lists, previews and renders.
    listed = http.get("/manage/v1/templates", headers=h)
    assert listed.status_code == 200
    for item in listed.json()["items"]:
        assert http.post(f"/manage/v1/templates/{item['name']}/preview", headers=h).status_code == 200


def test_templates_too_deep_or_too_big_to_compile_are_422_not_500(http: TestClient, tenant: Tenant) -> None:
    # Jinja's parser and compiler recurse once per level of nesting, and compiling holds the GIL.
    for text in [
        "{{ " + "(" * 400 + "link" + ")" * 400 + " }}",
        "{{ link" + "|upper" * 15000 + " }}",
        "{% if link %}" * 60 + "{{ link }}" + "{% endif %}" * 60,
        "{{ link }}" * 9000,
    ]:
        body = {"channel": "SMS", "kind": "OTH", "defaultLocale": "en", "locales": {"en": {"sms": text}}}
        r = http.put("/manage/v1/templates/deep", json=body, headers=tenant.admin_headers)
        assert r.status_code == 422, (text[:40], r.status_code, r.text[:300])
        assert r.json()["errors"][0]["field"] == "locales.en.sms"
