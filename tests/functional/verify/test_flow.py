"""A Twilio Verify user's flow against Passgate: start by destination, start again (the same verification,
one message), check by destination; with real SMTP and a real HTTP SMS gateway."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.mfa.conftest import drain
from tests.functional.verify.conftest import (
    check,
    check_to,
    code_in_mail,
    code_in_sms,
    fetch,
    fields_of,
    mails_to,
    sms_to,
    started,
    wrong,
)
from tests.servers import HttpReceiver, SmtpSink

PHONE = "+12015550177"
VIEW_KEYS = {
    "id",
    "status",
    "valid",
    "to",
    "channel",
    "purpose",
    "templateName",
    "locale",
    "expiresAt",
    "sendAttempts",
    "verificationAttempts",
    "remainingAttempts",
    "maxSends",
    "deliveryStatus",
    "terminationReason",
    "redirectUrl",
    "sandbox",
    "createdAt",
    "updatedAt",
    "verifiedAt",
}


def test_email_code_start_twice_one_message_then_check_by_destination(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    to = "signup.flow@example.com"
    first = started(http, tenant, to=to, channel="email-code", purpose="signup")
    assert set(first) == VIEW_KEYS
    assert (first["status"], first["channel"], first["purpose"], first["valid"]) == (
        "UNKNOWN",
        "email-code",
        "signup",
        False,
    )
    assert first["to"] != to and first["to"].endswith("@example.com")  # masked
    assert first["sendAttempts"] == 1
    # The app retries its start (a double click, a timeout): the pending verification, nothing sent.
    again = started(http, tenant, status=200, to=to, channel="email-code", purpose="signup")
    assert again["id"] == first["id"] and again["sendAttempts"] == 1

    drain(registry)
    [mail] = mails_to(smtp, to)
    code = code_in_mail(mail.part("text/plain"))
    assert fetch(http, tenant, first["id"]).json()["status"] == "MESSAGE_SENT"

    r = check_to(http, tenant, to, wrong(code))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["remainingAttempts"], r.json()["valid"]) == (
        "VERIFICATION_ATTEMPT_FAILED",
        4,
        False,
    )
    r = check_to(http, tenant, "signup.flow@EXAMPLE.COM", code)  # the domain as the person typed it
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["status"], body["valid"]) == (first["id"], "VERIFIED", True)
    assert body["verificationAttempts"] == 2 and body["verifiedAt"]
    # Verified is final: the code does not work twice, and no verification is pending any more.
    assert check(http, tenant, first["id"], code).status_code == 409
    r = check_to(http, tenant, to, code)
    assert r.status_code == 404 and fields_of(r) == ["to"]
    assert len(mails_to(smtp, to)) == 1

    items = http.get(f"/verify/v1/verifications/{first['id']}/timeline", headers=tenant.headers).json()[
        "items"
    ]
    kinds = [i["type"] for i in items]
    assert kinds[:3] == ["CREATED", "MESSAGE_QUEUED", "REUSED"]
    assert kinds.count("VERIFY_ATTEMPT") == 2 and kinds[-1] == "STATUS_CHANGED"
    assert code not in str(items)


def test_sms_code_through_the_gateway_check_by_id(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    v = started(http, tenant, to=PHONE, channel="sms-code", locale="es")
    assert (v["channel"], v["purpose"], v["locale"], v["templateName"]) == (
        "sms-code",
        "other",
        "es",
        "sms-code",
    )
    assert started(http, tenant, status=200, to=PHONE, channel="sms-code")["id"] == v["id"]
    drain(registry)
    [sms] = sms_to(gateway, PHONE)
    r = check(http, tenant, v["id"], code_in_sms(sms["body"]))
    assert r.status_code == 200 and r.json()["status"] == "VERIFIED"
    # Another purpose is another verification.
    other = started(http, tenant, to=PHONE, channel="sms-code", purpose="email_change")
    assert other["id"] != v["id"]


def test_wrong_codes_count_per_verification_and_per_person(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    number = "+12015550178"
    for _ in range(2):
        v = started(http, tenant, to=number, channel="sms-code")
        drain(registry)
        code = code_in_sms(sms_to(gateway, number)[-1]["body"])
        for remaining in (4, 3, 2, 1):
            r = check(http, tenant, v["id"], wrong(code))
            assert (r.json()["status"], r.json()["remainingAttempts"]) == (
                "VERIFICATION_ATTEMPT_FAILED",
                remaining,
            )
        r = check(http, tenant, v["id"], wrong(code))
        assert (r.json()["status"], r.json()["terminationReason"]) == ("TERMINATED", "MAX_ATTEMPTS")
    # Ten failures in a row for this number: the next try waits, on a new verification too.
    v = started(http, tenant, to=number, channel="sms-code")
    drain(registry)
    r = check_to(http, tenant, number, code_in_sms(sms_to(gateway, number)[-1]["body"]))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_resend_limits_and_cancel(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    to = "resend.cancel@example.com"
    v = started(http, tenant, to=to, channel="email-code")
    path = f"/verify/v1/verifications/{v['id']}"
    assert http.post(f"{path}/resend", headers=tenant.headers).json()["sendAttempts"] == 2
    assert http.post(f"{path}/resend", headers=tenant.headers).json()["sendAttempts"] == 3
    r = http.post(f"{path}/resend", headers=tenant.headers)
    assert r.status_code == 429  # 3 sends in all; a repeated start sends nothing and stays allowed
    assert started(http, tenant, status=200, to=to, channel="email-code")["sendAttempts"] == 3
    drain(registry)
    assert len(mails_to(smtp, to)) == 3

    r = http.post(f"{path}/cancel", headers=tenant.headers)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["terminationReason"]) == ("TERMINATED", "CANCELLED")
    assert http.post(f"{path}/cancel", headers=tenant.headers).status_code == 409
    code = code_in_mail(mails_to(smtp, to)[-1].part("text/plain"))
    assert check(http, tenant, v["id"], code).status_code == 409
    assert check_to(http, tenant, to, code).status_code == 404
    # Cancelled, so a new start is a new verification.
    assert started(http, tenant, to=to, channel="email-code")["id"] != v["id"]


def test_an_expired_verification_is_not_returned(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    to = "expires@example.com"
    v = started(http, tenant, to=to, channel="email-code")
    expires = datetime.fromisoformat(v["expiresAt"])
    assert expires - registry.clock.now() == timedelta(minutes=10)
    registry.clock.advance(601)  # type: ignore[attr-defined]
    assert started(http, tenant, to=to, channel="email-code")["id"] != v["id"]
