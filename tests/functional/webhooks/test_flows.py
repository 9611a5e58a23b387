"""Every status change of whole challenges reaches real receivers: once per event id, in sequence order,
with the documented payload, signed in both schemes."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain
from tests.functional.mfa.test_email_link import BROWSER, link_from
from tests.functional.webhooks.conftest import (
    Hooks,
    create_endpoint,
    deliver,
    deliveries,
    endpoint_of,
    kount_valid,
    public_keys,
    standard_valid,
    with_messaging,
)
from tests.servers import HttpReceiver, Recorded, SmtpSink

PHONE = "+12015550123"


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink, gateway: HttpReceiver) -> Settings:
    return with_messaging(settings, smtp, gateway)


STATUS_KEYS = [
    "id",
    "eventType",
    "apiVersion",
    "clientId",
    "mfaId",
    "mfaStatus",
    "sendAttempts",
    "verificationAttempts",
    "channel",
    "occurredAt",
    "sequence",
]


def two_receivers(http: TestClient, tenant: Tenant) -> tuple[Hooks, Hooks]:
    kount = Hooks(HttpReceiver().start(), "kount-rsa-pss")
    std = Hooks(HttpReceiver().start(), "standard-webhooks")
    kount.endpoint = create_endpoint(http, tenant, kount.url, "kount-rsa-pss")
    std.endpoint = create_endpoint(http, tenant, std.url, "standard-webhooks")
    kount.public_keys = public_keys(http, tenant)
    std.secret = std.endpoint["secret"]
    return kount, std


def status_events(hooks: Hooks, mfa_id: str) -> list[dict[str, Any]]:
    return [p for p in hooks.accepted if p.get("mfaId") == mfa_id and p["eventType"] != "Decision.Created"]


def one_byte_changed(body: bytes) -> bytes:
    i = body.index(b'"mfaStatus"') + 14
    return body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]


def test_email_link_flow_reaches_both_schemes_in_order(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    kount, std = two_receivers(http, tenant)
    try:
        out = challenge(
            http,
            tenant,
            "email-link",
            event="NEW_ACCOUNT_OPENING",
            person={"emailAddress": "jo@example.com"},
        )
        v = out["verification"]
        assert drain(registry) == 1
        path = link_from(smtp.wait_for(1)[0].part("text/plain")).removeprefix("http://127.0.0.1:8000")
        page = http.get(path, headers=BROWSER)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert http.post(f"{path}/confirm", data={"csrf": csrf}, follow_redirects=False).status_code == 200
        deliver(registry)

        for hooks in (kount, std):
            assert not hooks.bad_signatures
            events = status_events(hooks, v["ID"])
            assert [e["mfaStatus"] for e in events] == ["UNKNOWN", "MESSAGE_SENT", "VERIFIED"]
            assert [e["sequence"] for e in events] == [1, 2, 3]
            assert all(list(e) == STATUS_KEYS for e in events)
            assert {e["eventType"] for e in events} == {"Verification.StatusUpdate"}
            assert all(
                (e["apiVersion"], e["clientId"], e["channel"]) == ("v1", tenant.client_id, "EMAIL")
                for e in events
            )
            assert [(e["sendAttempts"], e["verificationAttempts"]) for e in events] == [
                (0, 0),
                (1, 0),
                (1, 1),
            ]
            ids = [p["id"] for p in hooks.accepted]
            assert len(ids) == len(set(ids)) == 4  # once per event id (3 status changes + the decision)
            [decision] = [p for p in hooks.accepted if p["eventType"] == "Decision.Created"]
            assert decision["decision"] == "CHALLENGE"
            assert decision["mfaId"] == v["ID"] and decision["requestType"] == "NEW_ACCOUNT_OPENING"
            assert decision["inquiryId"] == out["inquiryId"] and decision["decisionId"]

        # The two endpoints received the same events (same ids), each signed in its own scheme.
        assert sorted(p["id"] for p in kount.accepted) == sorted(p["id"] for p in std.accepted)
        k_req = next(r for r in kount.receiver.requests if b"VERIFIED" in r.body)
        s_req = next(r for r in std.receiver.requests if b"VERIFIED" in r.body)
        assert set(k_req.headers) >= {"x-event-timestamp", "x-event-signature"}
        assert set(s_req.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert s_req.headers["webhook-id"] == s_req.json()["id"]
        # A body changed by one byte fails both checks.
        assert kount_valid(kount.public_keys, k_req.headers, k_req.body)
        assert not kount_valid(kount.public_keys, k_req.headers, one_byte_changed(k_req.body))
        assert std.secret and standard_valid(std.secret, s_req.headers, s_req.body)
        assert not standard_valid(std.secret, s_req.headers, one_byte_changed(s_req.body))
    finally:
        kount.receiver.stop()
        std.receiver.stop()


def test_otp_flow_in_sequence_and_channel_filter(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    sms_only = Hooks(HttpReceiver().start(), "kount-rsa-pss")
    email_only = Hooks(HttpReceiver().start(), "kount-rsa-pss")
    try:
        sms_only.endpoint = create_endpoint(http, tenant, sms_only.url, channel="SMS")
        email_only.endpoint = create_endpoint(http, tenant, email_only.url, channel="EMAIL")
        sms_only.public_keys = email_only.public_keys = public_keys(http, tenant)

        m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
        drain(registry)
        code = re.search(r"#(\d{6})$", gateway.requests[-1].json()["body"]).group(1)  # type: ignore[union-attr]
        wrong = "000000" if code != "000000" else "111111"
        verify = f"/mfa/v2/{m['ID']}/verify"
        assert http.post(verify, json={"code": wrong}, headers=tenant.headers).status_code == 200
        assert http.post(verify, json={"code": code}, headers=tenant.headers).json() == {"status": "VERIFIED"}
        deliver(registry)

        events = status_events(sms_only, m["ID"])
        assert [(e["sequence"], e["mfaStatus"]) for e in events] == [
            (1, "UNKNOWN"),
            (2, "MESSAGE_SENT"),
            (3, "VERIFICATION_ATTEMPT_FAILED"),
            (4, "VERIFIED"),
        ]
        assert {e["eventType"] for e in events} == {"MFA.StatusUpdate"}
        assert [e["verificationAttempts"] for e in events] == [0, 0, 1, 2]
        assert Counter(p["eventType"] for p in sms_only.accepted) == {
            "MFA.StatusUpdate": 4,
            "Decision.Created": 1,
        }
        assert email_only.accepted == []  # nothing of an SMS session reaches an EMAIL-only endpoint
        assert deliveries(http, tenant, email_only.endpoint["id"]) == []
        log = deliveries(http, tenant, sms_only.endpoint["id"])
        assert {d["status"] for d in log} == {"DELIVERED"}
        assert all(d["attempts"][0]["statusCode"] == 200 for d in log)
    finally:
        sms_only.receiver.stop()
        email_only.receiver.stop()


def test_receiver_down_for_a_while_then_up_loses_nothing(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, gateway: HttpReceiver
) -> None:
    receiver = HttpReceiver().start()
    port = receiver.port
    hooks = Hooks(receiver)
    hooks.endpoint = create_endpoint(http, tenant, hooks.url)
    keys = public_keys(http, tenant)
    receiver.stop()  # down before anything is sent
    sessions = [
        challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]["ID"] for _ in range(3)
    ]
    drain(registry)  # the texts go out: a MESSAGE_SENT event per session
    for _ in range(3):
        deliver(registry)
        clock.advance(2)
    log = deliveries(http, tenant, hooks.endpoint["id"])
    assert len(log) == 9 and {d["status"] for d in log} == {"PENDING"}
    errors = {a["error"] for d in log for a in d["attempts"]}
    # Refused at once; on a loaded machine a connect can also outlast the 1 s timeout of these tests.
    assert errors and all(e.startswith(("ConnectError", "timed out")) for e in errors), errors
    # A session's MESSAGE_SENT waits behind its UNKNOWN, which keeps failing: never tried yet.
    assert all(d["attempts"] == [] for d in log if d["sequence"] == 2)

    back = Hooks(HttpReceiver(port=port).start(), public_keys=keys)
    try:
        deliver(registry)
        assert {d["status"] for d in deliveries(http, tenant, hooks.endpoint["id"])} == {"DELIVERED"}
        assert sorted(p["id"] for p in back.accepted) == sorted(d["eventId"] for d in log)
        for sid in sessions:
            assert [p["mfaStatus"] for p in back.accepted if p.get("mfaId") == sid and "mfaStatus" in p] == [
                "UNKNOWN",
                "MESSAGE_SENT",
            ]
        assert endpoint_of(http, tenant, hooks.endpoint["id"])["failingSince"] is None
    finally:
        back.receiver.stop()


def test_a_sessions_later_events_wait_for_the_earlier_ones(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    clock: FrozenClock,
    kount_hooks: Hooks,
    gateway: HttpReceiver,
) -> None:
    failed_once: list[bool] = []
    verify = kount_hooks.respond

    def responder(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        if b'"sequence":1' in rec.body and not failed_once:
            failed_once.append(True)
            return 500, {}, b"not now"
        return verify(rec)

    kount_hooks.receiver.responder = responder
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    code = re.search(r"#(\d{6})$", gateway.requests[-1].json()["body"]).group(1)  # type: ignore[union-attr]
    wrong = "000000" if code != "000000" else "111111"
    http.post(f"/mfa/v2/{m['ID']}/verify", json={"code": wrong}, headers=tenant.headers)
    http.post(f"/mfa/v2/{m['ID']}/verify", json={"code": code}, headers=tenant.headers)
    deliver(registry)
    seen = [r.json()["sequence"] for r in kount_hooks.receiver.requests if b"mfaStatus" in r.body]
    assert seen == [1]  # 2, 3 and 4 are held back while 1 waits for its retry
    clock.advance(2)
    deliver(registry)
    seen = [r.json()["sequence"] for r in kount_hooks.receiver.requests if b"mfaStatus" in r.body]
    assert seen == [1, 1, 2, 3, 4]
