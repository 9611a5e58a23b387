"""POST /manage/v1/templates/{name}/preview: branded rendering with sample values; SMS encoding and segments."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Tenant
from tests.functional.templates.conftest import created, email_template, errors_of, put_branding, sms_template


def preview(http: TestClient, tenant: Tenant, name: str, **body: Any) -> dict[str, Any]:
    r = http.post(f"/manage/v1/templates/{name}/preview", json=body or None, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(
    ("body", "encoding", "characters", "units", "segments"),
    [
        # GSM-7: one segment up to 160 characters, then parts of 153.
        ("Your code is {{ code }}", "GSM-7", 19, 19, 1),
        ("{{ code }} " + "a" * 153, "GSM-7", 160, 160, 1),
        ("{{ code }} " + "a" * 154, "GSM-7", 161, 161, 2),
        # GSM-7 extension characters (€ [ ] { } ^ ~ | \\) cost two units each.
        ("{{ code }} €[]{}", "GSM-7", 12, 17, 1),
        ("{{ code }} " + "€" * 76, "GSM-7", 83, 159, 1),
        ("{{ code }} " + "€" * 77, "GSM-7", 84, 161, 2),
        # Anything outside GSM-7 switches the whole message to UCS-2: 70 per segment, then 67.
        ("Код {{ code }}", "UCS-2", 10, 10, 1),
        ("{{ code }} " + "д" * 63, "UCS-2", 70, 70, 1),
        ("{{ code }} " + "д" * 64, "UCS-2", 71, 71, 2),
        ("{{ code }} ç", "UCS-2", 8, 8, 1),  # ç (unlike Ç) is not in GSM-7
        ("{{ code }} 🔐", "UCS-2", 8, 9, 1),  # an emoji is a surrogate pair: two units
    ],
)
def test_sms_preview_reports_encoding_characters_and_segments(
    http: TestClient, tenant: Tenant, body: str, encoding: str, characters: int, units: int, segments: int
) -> None:
    created(http, tenant, sms_template("seg-check", en=body))
    out = preview(http, tenant, "seg-check")
    sms = out["sms"]
    assert "123456" in sms["body"]
    assert (sms["encoding"], sms["characters"], sms["units"], sms["segments"]) == (
        encoding,
        characters,
        units,
        segments,
    )
    assert "subject" not in out and out["channel"] == "SMS"


def test_builtin_sms_previews_in_one_gsm7_segment_and_ends_with_the_webotp_line(
    http: TestClient, tenant: Tenant
) -> None:
    put_branding(http, tenant, companyName="Northwind Online Banking Group")  # 30 characters
    out = preview(http, tenant, "sms-code")
    assert out["builtIn"] is True and out["locale"] == "en"
    assert (out["sms"]["encoding"], out["sms"]["segments"]) == ("GSM-7", 1)
    assert out["sms"]["body"].endswith("\n@127.0.0.1 #123456")
    link = preview(http, tenant, "sms-link")
    assert (link["sms"]["encoding"], link["sms"]["segments"]) == ("GSM-7", 1)
    assert link["sample"]["link"] in link["sms"]["body"]
    arabic = preview(http, tenant, "sms-code", locale="ar")
    assert arabic["sms"]["encoding"] == "UCS-2" and arabic["locale"] == "ar"


def test_email_preview_uses_the_clients_branding_and_sample_values(http: TestClient, tenant: Tenant) -> None:
    put_branding(http, tenant, companyName="Fjord Bank", primaryColor="#0F766E")
    out = preview(http, tenant, "email-link")
    assert out["subject"] == "Confirm it's you – Fjord Bank"
    assert "#0f766e" in out["html"] and "Fjord Bank" in out["html"]
    assert out["sample"]["link"] in out["html"] and out["sample"]["link"] in out["text"]
    assert "10 minutes" in out["text"]  # the client's login link TTL
    assert "Hi Alex," in out["text"]


def test_preview_locale_is_matched_like_a_request_and_refused_when_absent(
    http: TestClient, tenant: Tenant
) -> None:
    assert preview(http, tenant, "email-link", locale="es-MX")["locale"] == "es"
    assert "Caduca" in preview(http, tenant, "sms-code", locale="ES")["sms"]["body"]
    r = http.post(
        "/manage/v1/templates/email-link/preview", json={"locale": "ja"}, headers=tenant.admin_headers
    )
    assert r.status_code == 422 and "locale" in errors_of(r)


def test_preview_values_are_data_never_code(http: TestClient, tenant: Tenant) -> None:
    tpl = email_template("with-values")
    tpl["locales"]["en"]["html"] += "<p>Order {{ values.orderId }}</p>"
    tpl["locales"]["en"]["text"] += " Order {{ values.orderId }}"
    created(http, tenant, tpl)
    # Without values, referenced ones get sample text.
    assert "Order Sample value" in preview(http, tenant, "with-values")["text"]
    evil = "<script>alert(1)</script>{{ ''.__class__.__mro__ }}{{ 7*7 }}"
    out = preview(http, tenant, "with-values", values={"orderId": evil})
    assert "<script>" not in out["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out["html"]
    assert "{{ 7*7 }}" in out["text"] and "49" not in out["text"]
    assert "{{ &#39;&#39;.__class__.__mro__ }}" in out["html"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"values": {"bad-key": "x"}}, "values.bad-key"),
        ({"values": {"ok": "line\nbreak"}}, "values.ok"),
    ],
)
def test_bad_preview_values_are_422(
    http: TestClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    r = http.post("/manage/v1/templates/email-link/preview", json=body, headers=tenant.admin_headers)
    assert r.status_code == 422 and field in errors_of(r)


@pytest.mark.parametrize(
    "body", [{"values": {"k": 1}}, {"locale": 5}, {"values": "x"}, {"other": True}, [1, 2]]
)
def test_malformed_preview_bodies_are_400(http: TestClient, tenant: Tenant, body: Any) -> None:
    r = http.post("/manage/v1/templates/email-link/preview", json=body, headers=tenant.admin_headers)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_preview_of_an_unknown_template_is_404(http: TestClient, tenant: Tenant) -> None:
    r = http.post("/manage/v1/templates/nope/preview", headers=tenant.admin_headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
