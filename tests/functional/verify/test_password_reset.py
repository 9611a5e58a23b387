"""Password reset links (OWASP Forgot Password Cheat Sheet): built from PASSGATE_PUBLIC_URL, short-lived,
single use, no referrer; and a start that never tells whether a message goes out."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.mfa.conftest import drain
from tests.functional.verify.conftest import BROWSER, fetch, fields_of, link_in, mails_to, start, started
from tests.servers import HttpReceiver, SmtpSink

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def test_reset_link_is_short_lived_single_use_and_sends_no_referrer(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, gateway: HttpReceiver
) -> None:
    target = f"{gateway.url}/reset/new-password"
    # A Host header of the caller's choosing changes nothing in the link (it comes from the public URL).
    r = http.post(
        "/verify/v1/verifications",
        json={
            "to": "reset.me@example.com",
            "channel": "email-link",
            "purpose": "password_reset",
            "redirectUrl": target,
        },
        headers={**tenant.headers, "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["purpose"], v["channel"], v["redirectUrl"]) == ("password_reset", "email-link", target)
    # An account-opening email link lives 24 h; a reset link 15 minutes.
    assert datetime.fromisoformat(v["expiresAt"]) - registry.clock.now() == timedelta(minutes=15)
    drain(registry)
    [mail] = mails_to(smtp, "reset.me@example.com")
    text = mail.part("text/plain")
    assert "evil.example" not in text
    path = link_in(text).removeprefix("http://127.0.0.1:8000")

    page = http.get(path, headers=BROWSER)
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    done = http.post(f"{path}/confirm", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == target
    assert done.headers["Referrer-Policy"] == "no-referrer"
    assert fetch(http, tenant, v["id"]).json()["status"] == "VERIFIED"

    # Single use: the same link again gets the neutral page, and a replayed confirm changes nothing.
    used = http.get(path, headers=BROWSER)
    assert "can't be used" in unescape(used.text) and used.headers["Referrer-Policy"] == "no-referrer"
    replay = http.post(f"{path}/confirm", data={"csrf": csrf}, follow_redirects=False)
    assert replay.status_code == 200 and "location" not in replay.headers
    after = fetch(http, tenant, v["id"]).json()
    assert (after["status"], after["verificationAttempts"]) == ("VERIFIED", 1)


def test_reset_link_dies_after_fifteen_minutes(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    started(http, tenant, to="late.reset@example.com", channel="email-link", purpose="password_reset")
    drain(registry)
    path = link_in(mails_to(smtp, "late.reset@example.com")[0].part("text/plain")).removeprefix(
        "http://127.0.0.1:8000"
    )
    registry.clock.advance(15 * 60 + 1)  # type: ignore[attr-defined]
    page = http.get(path, headers=BROWSER)
    assert "can't be used" in unescape(page.text) and "csrf" not in page.text


def test_reset_start_answers_alike_whether_or_not_a_message_goes_out(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    # On a live client a test address (*@example.test) is refused: nothing is sent to it. A reset start
    # for it answers as one for a deliverable address does.
    sent = start(http, tenant, to="someone@example.com", channel="email-link", purpose="password_reset")
    refused = start(http, tenant, to="nobody@example.test", channel="email-link", purpose="password_reset")
    assert sent.status_code == refused.status_code == 201
    a, b = sent.json(), refused.json()
    assert list(a) == list(b)
    same = {k: v for k, v in a.items() if k not in ("id", "to")}
    assert same == {k: v for k, v in b.items() if k not in ("id", "to")}
    assert len(a["id"]) == len(b["id"]) and a["id"] != b["id"]
    drain(registry)
    assert len(mails_to(smtp, "someone@example.com")) == 1
    assert not mails_to(smtp, "nobody@example.test")
    assert fetch(http, tenant, b["id"]).status_code == 404  # no verification was made
    # For another purpose the same refusal is told, naming the field.
    r = start(http, tenant, to="nobody@example.test", channel="email-link", purpose="signup")
    assert r.status_code == 400 and fields_of(r) == ["to"]
    # A malformed address is refused for every purpose: that tells nothing about accounts.
    r = start(http, tenant, to="not-an-address", channel="email-link", purpose="password_reset")
    assert r.status_code == 400 and fields_of(r) == ["to"]
