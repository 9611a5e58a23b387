"""A client brands itself, writes its own template, and a login that names it is verified through the mail."""

from __future__ import annotations

import re
from html import unescape

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain, session_of
from tests.functional.mfa.test_email_link import BROWSER, link_from
from tests.functional.templates.conftest import created, parsed, put_branding
from tests.servers import SmtpSink


def _locale(greeting: str, button: str, expiry: str) -> dict[str, str]:
    html = (
        '<!DOCTYPE html><html lang="{{ locale }}" dir="{{ dir }}"><body>'
        '<table role="presentation" width="100%"><tr><td style="border-top:4px solid {{ brand.primaryColor }}">'
        f"<h1>{{{{ brand.companyName }}}}</h1><p>{greeting} {{{{ person.name.first }}}},</p>"
        "<p>Order: {{ values.orderRef }}</p>"
        '<a href="{{ link }}" style="background-color:{{ brand.primaryColor }};'
        f'color:{{{{ brand.primaryTextColor }}}}">{button}</a>'
        f"<p>{expiry}</p></td></tr></table></body></html>"
    )
    text = (
        f"{greeting} {{{{ person.name.first }}}},\nOrder: {{{{ values.orderRef }}}}\n{{{{ link }}}}\n{expiry}"
    )
    return {"subject": f"{greeting} – {{{{ brand.companyName }}}}", "html": html, "text": text}


def test_branded_template_from_login_to_verified(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    put_branding(
        http,
        tenant,
        companyName="Fjord Bank",
        primaryColor="#0f766e",
        senderName="Fjord Bank Security",
        sendingDomains=["fjord.example"],
        fromAddress="security@fjord.example",
    )
    created(
        http,
        tenant,
        {
            "name": "fjord-login",
            "channel": "EMAIL",
            "kind": "OTH",
            "defaultLocale": "en",
            "locales": {
                "en": _locale("Hello", "Yes, it's me", "Expires in {{ expiresInMinutes }} minutes."),
                "de": _locale("Hallo", "Ja, ich bin es", "Gültig für {{ expiresInMinutes }} Minuten."),
            },
        },
    )

    evil = '<img src=x onerror="alert(1)"><a href="https://evil.example">win</a> {{ 7*7 }}'
    out = challenge(
        http,
        tenant,
        "fjord-login",
        person={"emailAddress": "ola@example.com", "name": {"first": "<b>Ola</b>"}},
        preferredLanguageCode="de-AT",
        strategy={"mfaTemplateValues": {"orderRef": evil}},
    )
    mfa = out["mfa"]
    assert (mfa["type"], mfa["channel"], mfa["status"], mfa["error"]) == (
        "NONCE_OTH",
        "EMAIL",
        "UNKNOWN",
        None,
    )
    assert out["strategy"] == {"mfaTemplateName": "fjord-login"}
    assert smtp.received == []

    assert drain(registry) == 1
    [mail] = smtp.wait_for(1)
    msg = parsed(mail)
    assert mail.rcpt_tos == ["ola@example.com"] and mail.mail_from == "security@fjord.example"
    assert msg["From"].addresses[0].display_name == "Fjord Bank Security"
    assert msg["Subject"] == "Hallo – Fjord Bank"
    text, html = mail.part("text/plain"), mail.part("text/html")

    # Branding and locale.
    assert '<html lang="de" dir="ltr">' in html
    assert "<h1>Fjord Bank</h1>" in html and "border-top:4px solid #0f766e" in html
    assert "Ja, ich bin es" in html and "Gültig für 10 Minuten." in html and "Gültig für 10 Minuten." in text
    # The request's values and names are escaped in HTML: no tag, attribute or link of theirs survives.
    assert "<img" not in html and "<b>Ola" not in html and 'href="https://evil.example"' not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html and "&lt;b&gt;Ola&lt;/b&gt;" in html
    assert "{{ 7*7 }}" in html and "49" not in html  # values are data, never template code
    assert "Order: " + evil in text  # the text part is plain text: shown as written, nothing to escape

    # The link works: GET shows the branded page in the browser's language, POST confirms.
    url = link_from(text)
    assert f'href="{url}"' in html
    path = url.removeprefix("http://127.0.0.1:8000")
    page = http.get(path, headers={**BROWSER, "Accept-Language": "de-DE,de;q=0.9"})
    assert page.status_code == 200
    assert 'lang="de"' in page.text and "Fjord Bank" in page.text and "#0f766e" in page.text
    assert session_of(http, tenant, mfa["ID"])["status"] == "MESSAGE_SENT"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = http.post(f"{path}/confirm", data={"csrf": csrf})
    assert done.status_code == 200 and "Fjord Bank" in unescape(done.text)
    after = session_of(http, tenant, mfa["ID"])
    assert (after["status"], after["locale"], after["templateName"]) == ("VERIFIED", "de", "fjord-login")
