from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.api.providers import twilio_signature
from passgate.api.views import attempt_view
from passgate.bootstrap import Registry, build_sms_sender
from passgate.clock import FrozenClock
from passgate.messaging.senders.dev import DevInboxSender
from passgate.mfa.services import DESTINATION_SEND_RATES
from tests.factories import Tenant, login_body
from tests.functional.mfa.conftest import challenge, drain, session_of, sweep, timeline
from tests.functional.mfa.test_provider_callbacks import report
from tests.servers import HttpReceiver, twilio_responder

PHONE = "+12015550123"
CODE = re.compile(r"#(\d{6})$")


def last_sms(gateway: HttpReceiver) -> dict[str, Any]:
    sms = [r for r in gateway.requests if r.path == "/sms"]
    assert sms, "no SMS reached the gateway"
    return dict(sms[-1].json())


def code_from(body: str) -> str:
    m = CODE.search(body)
    assert m, body
    return m.group(1)


def verify(http: TestClient, tenant: Tenant, sid: str, code: str) -> Any:
    return http.post(f"/mfa/v2/{sid}/verify", json={"code": code}, headers=tenant.headers)


def test_sms_code_through_the_http_gateway(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    out = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})
    m = out["mfa"]
    assert (m["type"], m["channel"], m["status"]) == ("OTP", "SMS", "UNKNOWN")
    assert out["person"] == {"phoneNumber": PHONE}
    drain(registry)
    sms = last_sms(gateway)
    assert sms["to"] == PHONE and sms["messageId"]
    lines = sms["body"].splitlines()
    assert lines[-1] == f"@127.0.0.1 #{code_from(sms['body'])}"  # the WebOTP line ends the body
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"
    r = verify(http, tenant, m["ID"], code_from(sms["body"]))
    assert r.json() == {"status": "VERIFIED"}
    # Verified: the device is now trusted for the account, so the next login is allowed.
    again = http.post(
        "/login/v2",
        json=login_body(deviceSessionId=out["deviceSessionId"], account={"id": "acct-x", "username": "x"}),
        headers=tenant.headers,
    )
    assert again.json()["decision"] == "CHALLENGE"  # other account: still new
    acct = session_of(http, tenant, m["ID"])["accountId"]
    same = http.post(
        "/login/v2",
        json=login_body(deviceSessionId=out["deviceSessionId"], account={"id": acct, "username": "u"}),
        headers=tenant.headers,
    )
    assert same.json()["decision"] == "ALLOW"


def test_wrong_code_five_times_terminates(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    right = code_from(last_sms(gateway)["body"])
    wrong = "000000" if right != "000000" else "111111"
    for remaining in (4, 3, 2, 1):
        assert verify(http, tenant, m["ID"], wrong).json() == {
            "status": "VERIFICATION_ATTEMPT_FAILED",
            "remainingAttempts": remaining,
        }
    assert verify(http, tenant, m["ID"], wrong).json() == {
        "status": "TERMINATED",
        "terminationReason": "MAX_ATTEMPTS",
        "remainingAttempts": 0,
    }
    r = verify(http, tenant, m["ID"], right)
    assert r.status_code == 409 and r.json()["sessionStatus"] == "TERMINATED"
    assert not any(
        "code" in str(e["data"]).lower() and right in str(e["data"]) for e in timeline(http, tenant, m["ID"])
    )


def test_resend_keeps_the_code_in_flight_valid(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    first = code_from(last_sms(gateway)["body"])
    r = http.post(f"/mfa/v2/{m['ID']}/resend", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["sendAttempts"] == 2
    drain(registry)
    second = code_from(last_sms(gateway)["body"])
    r = http.post("/resend", json={"sessionId": m["ID"]}, headers=tenant.headers)  # the Kount form
    assert r.status_code == 200 and r.json()["sendAttempts"] == 3
    drain(registry)
    third = code_from(last_sms(gateway)["body"])
    r = http.post(f"/mfa/v2/{m['ID']}/resend", headers=tenant.headers)
    assert r.status_code == 429  # 3 sends in all
    assert len({first, second, third}) >= 2
    assert verify(http, tenant, m["ID"], first).json() == {"status": "VERIFIED"}

    # And the newest code works too, on another session.
    m2 = challenge(http, tenant, "sms-code", person={"phoneNumber": "+12015550124"})["mfa"]
    drain(registry)
    old = code_from(last_sms(gateway)["body"])
    http.post(f"/mfa/v2/{m2['ID']}/resend", headers=tenant.headers)
    drain(registry)
    new = code_from(last_sms(gateway)["body"])
    assert old != new or len(old) == 6
    assert verify(http, tenant, m2["ID"], new).json() == {"status": "VERIFIED"}


def test_new_code_is_valid_only_once_the_provider_accepted_it(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    first = code_from(last_sms(gateway)["body"])
    gateway.responder = lambda rec: (503, {}, b"down")
    http.post(f"/mfa/v2/{m['ID']}/resend", headers=tenant.headers)
    drain(registry)  # the gateway refuses: the resent code never becomes valid ...
    assert verify(http, tenant, m["ID"], first).json() == {
        "status": "VERIFIED"
    }  # ... and the first still works


def test_expiry_with_a_frozen_clock(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    code = code_from(last_sms(gateway)["body"])
    clock.advance(599)
    sweep(registry)
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"
    clock.advance(1)
    assert sweep(registry) >= 1  # expiry happens even when nobody asks
    s = session_of(http, tenant, m["ID"])
    assert (s["status"], s["terminationReason"]) == ("TERMINATED", "EXPIRED")
    assert verify(http, tenant, m["ID"], code).status_code == 409
    assert [e for e in timeline(http, tenant, m["ID"]) if e["type"] == "STATUS_CHANGED"][-1][
        "source"
    ] == "sweeper"


def test_expired_code_is_refused_even_before_the_sweeper(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    code = code_from(last_sms(gateway)["body"])
    clock.advance(601)
    assert verify(http, tenant, m["ID"], code).json() == {
        "status": "TERMINATED",
        "terminationReason": "EXPIRED",
    }


def test_a_late_send_gives_the_code_its_whole_lifetime(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    clock.advance(300)  # the worker gets to it five minutes late
    drain(registry)
    code = code_from(last_sms(gateway)["body"])
    clock.advance(599)  # 899 s after the challenge, 599 s after the send: the session was extended
    sweep(registry)  # (sessions other tests left open may expire now: the database is shared)
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"
    assert verify(http, tenant, m["ID"], code).json()["status"] == "VERIFIED"


def test_cancel(http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    r = http.post(f"/mfa/v2/{m['ID']}/cancel", headers=tenant.headers)
    assert r.json()["status"] == "TERMINATED" and r.json()["terminationReason"] == "CANCELLED"
    drain(registry)  # cancelled before the worker got to it: nothing goes out
    assert not [r for r in gateway.requests if r.path == "/sms"]
    assert http.post(f"/mfa/v2/{m['ID']}/cancel", headers=tenant.headers).status_code == 409


def test_sms_link_through_twilio(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    gateway.responder = twilio_responder
    settings = registry.settings.model_copy(
        update={
            "sms_provider": "twilio",
            "twilio_account_sid": "AC123",
            "twilio_auth_token": "tw-secret",
            "twilio_from": "+12015550100",
            "twilio_base_url": gateway.url,
        }
    )
    registry.settings = settings
    registry.dispatcher.sms_sender = build_sms_sender(
        settings, DevInboxSender(registry.sessions, registry.clock)
    )

    m = challenge(http, tenant, "sms-link", person={"phoneNumber": PHONE})["mfa"]
    assert (m["type"], m["channel"]) == ("NONCE_OTH", "SMS")
    drain(registry)
    [req] = [r for r in gateway.requests if r.path == "/2010-04-01/Accounts/AC123/Messages.json"]
    form = req.form()
    assert form["To"] == PHONE and form["From"] == "+12015550100"
    assert form["StatusCallback"] == "http://127.0.0.1:8000/providers/twilio/status"
    assert req.headers["authorization"].startswith("Basic ")
    link = re.search(r"http://127\.0\.0\.1:8000(/v/[A-Za-z0-9_-]{43})", form["Body"]).group(1)  # type: ignore[union-attr]
    page = http.get(link, headers={"User-Agent": "Mozilla/5.0 Mobile Safari", "Accept": "text/html"})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert http.post(f"{link}/confirm", data={"csrf": csrf}).status_code == 200
    assert session_of(http, tenant, m["ID"])["status"] == "VERIFIED"


def test_twilio_status_callback_is_signed_and_marks_failures_invalid(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    gateway.responder = twilio_responder
    settings = registry.settings.model_copy(
        update={
            "sms_provider": "twilio",
            "twilio_account_sid": "AC1",
            "twilio_auth_token": "tw-secret",
            "twilio_from": "+12015550100",
            "twilio_base_url": gateway.url,
        }
    )
    registry.settings = settings
    registry.dispatcher.sms_sender = build_sms_sender(
        settings, DevInboxSender(registry.sessions, registry.clock)
    )
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    sid = session_of(http, tenant, m["ID"])  # delivered to Twilio
    assert sid["deliveryStatus"] == "SENT"
    msg_sid = None
    from sqlalchemy import select

    from passgate.messaging.models import Message

    with registry.sessions() as s:
        msg_sid = s.scalars(select(Message.provider_message_id).where(Message.session_id == m["ID"])).one()
    params = {"MessageSid": msg_sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    url = "http://127.0.0.1:8000/providers/twilio/status"
    bad = http.post("/providers/twilio/status", data=params, headers={"X-Twilio-Signature": "AAAA"})
    assert bad.status_code == 403
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"
    good = http.post(
        "/providers/twilio/status",
        data=params,
        headers={"X-Twilio-Signature": twilio_signature("tw-secret", url, params)},
    )
    assert good.status_code == 204
    s = session_of(http, tenant, m["ID"])
    assert (s["status"], s["deliveryStatus"]) == ("INVALID", "UNDELIVERED")


def test_http_gateway_delivery_callback(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    message_id = last_sms(gateway)["messageId"]
    r = report(http, registry, {"messageId": message_id, "status": "delivered"})
    assert r.status_code == 200
    assert session_of(http, tenant, m["ID"])["deliveryStatus"] == "DELIVERED"
    assert report(http, registry, {"messageId": "nope", "status": "failed"}).status_code == 404
    assert report(http, registry, {"messageId": message_id, "status": "lost"}).status_code == 400
    report(http, registry, {"messageId": message_id, "status": "failed"})
    assert session_of(http, tenant, m["ID"])["status"] == "INVALID"


@pytest.mark.parametrize(
    ("strategy", "person", "error"),
    [
        ({}, {"phoneNumber": PHONE}, "NOT_ENOUGH_INFO"),
        ({"mfaTemplateName": "no-such-template"}, {"phoneNumber": PHONE}, "TEMPLATE_NOT_FOUND"),
        ({"mfaTemplateName": "sms-code"}, {"emailAddress": "only@example.com"}, "NOT_ENOUGH_INFO"),
        ({"mfaTemplateName": "email-link"}, {"phoneNumber": PHONE}, "NOT_ENOUGH_INFO"),
        (
            {"mfaTemplateName": "sms-code"},
            {"phoneNumber": "+15551234567"},
            "INVALID_DESTINATION",
        ),  # not a real number
        (
            {"mfaTemplateName": "sms-code"},
            {"phoneNumber": "+447400123456"},
            "INVALID_DESTINATION",
        ),  # not allowed country
        (
            {"mfaTemplateName": "sms-code"},
            {"phoneNumber": "+19005550123"},
            "INVALID_DESTINATION",
        ),  # premium rate
        (
            {"mfaTemplateName": "sms-code"},
            {"phoneNumber": "+15005550006"},
            "INVALID_DESTINATION",
        ),  # magic, live client
        ({"mfaTemplateName": "email-link"}, {"emailAddress": "x@example.test"}, "INVALID_DESTINATION"),
    ],
)
def test_challenge_errors_send_nothing(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    gateway: HttpReceiver,
    strategy: dict[str, Any],
    person: dict[str, Any],
    error: str,
) -> None:
    r = http.post("/login/v2", json=login_body(strategy=strategy, person=person), headers=tenant.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["decision"] == "CHALLENGE"
    assert body["mfa"]["error"] == error and body["mfa"]["ID"] is None
    assert drain(registry) == 0
    assert not gateway.requests


def test_allowed_countries_setting(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    # By default only the client's own country; the settings are now remembered for a second...
    before = challenge(http, tenant, "sms-code", person={"phoneNumber": "+447400123456"})["mfa"]
    assert before["error"] == "INVALID_DESTINATION"
    # ...and a change made through this process applies to the very next challenge.
    r = http.put(
        "/manage/v1/settings",
        json={"smsAllowedCountries": ["US", "GB"], "otpLength": 8},
        headers=tenant.admin_headers,
    )
    assert r.status_code == 200 and r.json()["smsAllowedCountries"] == ["GB", "US"]
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": "+447400123456"})["mfa"]
    assert m["error"] is None
    drain(registry)
    assert re.search(r"#(\d{8})$", last_sms(gateway)["body"])
    bad = http.put("/manage/v1/settings", json={"smsAllowedCountries": ["USA"]}, headers=tenant.admin_headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "smsAllowedCountries"


def test_send_rate_limit_per_destination(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    phone = "+12015550177"
    errors = [
        challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]["error"] for _ in range(6)
    ]
    assert errors == [None] * 5 + ["RATE_LIMITED"]


def test_sandbox_client_magic_destinations(
    http: TestClient, registry: Registry, gateway: HttpReceiver
) -> None:
    from tests.factories import make_tenant

    sandbox = make_tenant(http, registry, name="Sandbox Co", sandbox=True)
    ids = [
        challenge(http, sandbox, "sms-code", person={"phoneNumber": "+15005550006"})["mfa"] for _ in range(7)
    ]
    assert all(m["error"] is None for m in ids)  # never rate limited
    drain(registry)
    assert not gateway.requests  # nothing leaves the machine
    assert verify(http, sandbox, ids[0]["ID"], "000000").json() == {"status": "VERIFIED"}


def test_per_person_failures_survive_resends_and_sessions(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, gateway: HttpReceiver
) -> None:
    phone = "+12015550188"
    for failures in (4, 4, 2):  # ten consecutive failures for one number, over three sessions
        m = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]
        drain(registry)
        right = code_from(last_sms(gateway)["body"])
        wrong = "999999" if right != "999999" else "888888"
        for _ in range(failures):
            assert verify(http, tenant, m["ID"], wrong).json()["status"] == "VERIFICATION_ATTEMPT_FAILED"
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]
    drain(registry)
    right = code_from(last_sms(gateway)["body"])
    r = verify(http, tenant, m["ID"], right)
    assert r.status_code == 429  # even the right code waits: the person, not the code, is throttled
    assert int(r.headers["retry-after"]) in range(29, 32)
    assert session_of(http, tenant, m["ID"])["verificationAttempts"] == 0  # a refused try is not an attempt
    clock.advance(31)
    assert verify(http, tenant, m["ID"], right).json() == {"status": "VERIFIED"}


def test_throttle_schedule() -> None:
    from passgate.mfa.services import throttle_wait

    assert [throttle_wait(n) for n in (1, 9, 10, 11, 12, 16, 17, 99)] == [0, 0, 30, 60, 120, 1920, 3600, 3600]


def test_a_verify_clears_the_persons_failures_and_never_unbans_a_device(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    phone = "+12015550177"

    def fail(times: int) -> None:
        m = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]
        drain(registry)
        wrong = "999999" if code_from(last_sms(gateway)["body"]) != "999999" else "888888"
        for _ in range(times):
            assert verify(http, tenant, m["ID"], wrong).json()["status"] == "VERIFICATION_ATTEMPT_FAILED"

    fail(4)
    fail(4)
    fail(1)  # nine in a row: one short of the first wait
    out = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})
    drain(registry)
    right = code_from(last_sms(gateway)["body"])
    # Banned while its challenge was open: the verify succeeds, and the device stays banned.
    account = session_of(http, tenant, out["mfa"]["ID"])["accountId"]
    device = {"accountId": account, "deviceSessionId": out["deviceSessionId"]}
    banned = http.post("/trusted-device", json={**device, "trustState": "BANNED"}, headers=tenant.headers)
    assert banned.status_code == 200
    assert verify(http, tenant, out["mfa"]["ID"], right).json() == {"status": "VERIFIED"}
    assert http.get("/trusted-device", params=device, headers=tenant.headers).json()["trustState"] == "BANNED"
    # The success started the count again: nine more failures, and the right code is not made to wait.
    # (The sends so far used up the number's send limit, which is not what this test is about.)
    registry.limiter.clear("send:destination", _destination_hash(registry, phone), DESTINATION_SEND_RATES)
    fail(4)
    fail(4)
    fail(1)
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]
    drain(registry)
    assert verify(http, tenant, m["ID"], code_from(last_sms(gateway)["body"])).json() == {
        "status": "VERIFIED"
    }


def test_verifies_in_one_transaction_see_each_other(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    """As the group commit runs them: several verifies in one transaction. A later one reads what an
    earlier one wrote (the attempts of its session, the failures of its person), and a success clears a
    failure recorded earlier in the same transaction."""
    from passgate.db import transaction
    from passgate.mfa.models import FailureCounter

    phone = "+12015550166"
    first = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]["ID"]
    drain(registry)
    first_code = code_from(last_sms(gateway)["body"])
    second = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]["ID"]
    drain(registry)
    second_code = code_from(last_sms(gateway)["body"])
    wrong = next(c for c in ("111111", "222222", "333333") if c not in (first_code, second_code))
    with transaction(registry.sessions) as session:
        tracked = registry.mfa.load(session, tenant.client_id, first)  # as an ORM unit before it would
        one = registry.mfa.verify_code(session, tenant.client_id, first, wrong)
        two = registry.mfa.verify_code(session, tenant.client_id, first, wrong)
        assert tracked.verification_attempts == 2  # read again after the verifies wrote, not stale
        other = registry.mfa.verify_code(session, tenant.client_id, second, wrong)
        failures = session.get(
            FailureCounter, (tenant.client_id, "destination", _destination_hash(registry, phone))
        )
        assert failures is not None and failures.failures == 3
    assert (one.remaining_attempts, two.remaining_attempts, other.remaining_attempts) == (4, 3, 4)
    assert session_of(http, tenant, first)["verificationAttempts"] == 2
    with transaction(registry.sessions) as session:
        assert registry.mfa.verify_code(session, tenant.client_id, first, wrong).remaining_attempts == 2
        assert attempt_view(registry.mfa.verify_code(session, tenant.client_id, second, second_code)) == {
            "status": "VERIFIED"
        }
    with registry.sessions() as session:
        counters = session.query(FailureCounter).filter_by(client_id=tenant.client_id).all()
        left = {(c.scope, c.subject_hash): c.failures for c in counters}
    first_account = registry.keyring.keyed_hash("account", session_of(http, tenant, first)["accountId"])
    # The number and the second session's account start again; the first account keeps its three.
    assert sorted(left.values()) == [0, 0, 3] and left[("account", first_account)] == 3
    assert left[("destination", _destination_hash(registry, phone))] == 0
    assert session_of(http, tenant, first)["verificationAttempts"] == 3


def _destination_hash(registry: Registry, phone: str) -> str:
    return registry.keyring.keyed_hash("destination", phone)


def test_a_destination_is_locked_after_its_consecutive_failures(
    http: TestClient, tenant: Tenant, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import passgate.mfa.services as services

    monkeypatch.setattr(services, "LOCK_AFTER", 3)  # instead of 100; no waits before it
    monkeypatch.setattr(services, "THROTTLE_AFTER", 1000)
    phone = "+12015550155"
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]
    for expected in ("VERIFICATION_ATTEMPT_FAILED",) * 3:
        assert verify(http, tenant, m["ID"], "999999").json()["status"] == expected
    r = verify(http, tenant, m["ID"], "999999")
    assert r.status_code == 429  # locked: not even an attempt
    assert session_of(http, tenant, m["ID"])["verificationAttempts"] == 3
    again = challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]
    assert again["error"] == "RATE_LIMITED"


def test_concurrent_failures_are_all_counted(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    """Wrong codes for one person in several sessions at once, each in a transaction of its own (as from
    several API processes): every failure counts (the database adds them up; none is lost to a
    read-modify-write race)."""
    import threading

    from passgate.db import transaction
    from passgate.mfa.models import FailureCounter

    phone = "+12015550144"
    sessions = []
    for _ in range(8):
        sessions.append(challenge(http, tenant, "sms-code", person={"phoneNumber": phone})["mfa"]["ID"])
        registry.limiter.clear("send:destination", _destination_hash(registry, phone), DESTINATION_SEND_RATES)
    start = threading.Barrier(len(sessions))
    results: list[str] = []

    def wrong(session_id: str) -> None:
        with transaction(registry.sessions) as session:
            start.wait(timeout=10)
            results.append(
                registry.mfa.verify_code(session, tenant.client_id, session_id, "999999").status
            )

    threads = [threading.Thread(target=wrong, args=(sid,)) for sid in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == ["VERIFICATION_ATTEMPT_FAILED"] * len(sessions)
    with registry.sessions() as session:
        counter = session.get(
            FailureCounter, (tenant.client_id, "destination", _destination_hash(registry, phone))
        )
        assert counter is not None and counter.failures == len(sessions)
