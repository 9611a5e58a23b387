"""An integration written from Kount 360's published examples, run against Passgate unchanged: the sample
bodies as Kount prints them (alpha-3 country codes, `clientId` in the body, Kount's extra fields), Kount's
trusted-device calls, the template name `default`, and a webhook receiver written from Kount's description
of its signature and public key (docs/kount360.md)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.webhooks.delivery import WebhookDeliverer
from tests.factories import Tenant, make_tenant
from tests.servers import HttpReceiver, Recorded

# RFC 3339 section 5.6 date-time, as a receiver that follows Kount's description checks `validUntil`.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)


def kount_login_body(client_id: str, n: int, **strategy: Any) -> dict[str, Any]:
    """Kount 360's sample login/account-opening body, field for field, in its v2 spelling: the address's
    `countryCode` is alpha-3 ("USA"), the body carries `clientId`, and `account.creationDate` is a field
    Passgate does not read."""
    return {
        "clientId": client_id,
        "inquiryId": f"kountinq{n}",
        "deviceSessionId": f"d121ea2210434ffc8a90daff9cc97e{n:02d}",
        "userIp": "192.168.0.1",
        "loginUrl": "https://shop.example.com/login",
        "person": {
            "name": {"first": "John", "last": "Doe", "preferred": "Johnny"},
            "emailAddress": f"john.doe{n}@example.com",
            "phoneNumber": "+12081234567",
            "addresses": [
                {
                    "line1": "5813-5849 Quail Meadows Dr",
                    "line2": "",
                    "city": "Poplar Bluff",
                    "region": "CO",
                    "postalCode": "63901-0000",
                    "countryCode": "USA",
                    "addressType": "BILLING",
                }
            ],
        },
        "account": {
            "id": f"11223dr{n}",
            "creationDate": "2024-01-01T12:12:12.000Z",
            "username": "meoyyd8za8jdmwfm",
            "userPassword": "38401eb46f8fbb74c1846a5f47f68d83a9bef126b1d4143f886cd464323cdaab",
            "type": "VIP",
        },
        "strategy": {"mfaTemplateName": "email-link", **strategy},
        "customFields": {},
    }


# --- addresses[].countryCode -------------------------------------------------------------------------


def test_kount_sample_login_body_with_alpha3_country_is_decided(http: TestClient, tenant: Tenant) -> None:
    r = http.post("/login/v2", json=kount_login_body(tenant.client_id, 1), headers=tenant.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["decision"] == "CHALLENGE"
    assert out["mfa"]["type"] == "NONCE_OTH" and out["mfa"]["channel"] == "EMAIL"
    assert out["mfa"]["error"] is None
    assert out["person"] == {"emailAddress": "john.doe1@example.com"}


def test_kount_sample_account_opening_body_verbatim(http: TestClient, tenant: Tenant) -> None:
    # Kount's account-opening sample as printed: `newAccountOpeningUrl`, `strategy.type`, a placeholder
    # template name and `"verificationTargetUrl": {}` (no URL).
    body = kount_login_body(tenant.client_id, 6)
    body.pop("loginUrl")
    body["newAccountOpeningUrl"] = "https://shop.example.com/signup"
    body["strategy"] = {"verificationTemplateName": "string", "type": "EMAIL", "verificationTargetUrl": {}}
    r = http.post("/newaccountopening/v2", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["decision"] == "CHALLENGE"
    assert out["verification"]["error"] == "TEMPLATE_NOT_FOUND"
    body["inquiryId"] += "default"
    body["strategy"]["verificationTemplateName"] = "default"
    out = http.post("/newaccountopening/v2", json=body, headers=tenant.headers).json()
    assert (out["verification"]["channel"], out["verification"]["error"]) == ("EMAIL", None)


def test_kount_creation_date_counts_as_creation_date_time(http: TestClient, tenant: Tenant) -> None:
    from passgate.policy.requests import LoginRequest

    body = LoginRequest.model_validate(kount_login_body(tenant.client_id, 7))
    assert body.account is not None and body.account.creationDateTime == datetime(
        2024, 1, 1, 12, 12, 12, tzinfo=UTC
    )
    bad = kount_login_body(tenant.client_id, 8)
    bad["account"]["creationDate"] = "yesterday"
    r = http.post("/login/v2", json=bad, headers=tenant.headers)
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == ["account.creationDate"]


@pytest.mark.parametrize("code", ["USA", "US", "usa", "DEU", "de", "GBR", "CIV"])
def test_alpha2_and_alpha3_country_codes_are_accepted(http: TestClient, tenant: Tenant, code: str) -> None:
    body = kount_login_body(tenant.client_id, 2)
    body["inquiryId"] += code
    body["person"]["addresses"][0]["countryCode"] = code
    r = http.post("/login/v2", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text


def test_simulation_holds_the_country_code_as_alpha2(http: TestClient, tenant: Tenant) -> None:
    # The request as the policy sees it (the simulation runs the same request model as /login/v2).
    from passgate.policy.requests import LoginRequest

    body = LoginRequest.model_validate(kount_login_body(tenant.client_id, 3))
    assert body.person is not None and [a.countryCode for a in body.person.addresses] == ["US"]


@pytest.mark.parametrize("path", ["/login/v2", "/newaccountopening/v2", "/events/failed-attempt"])
@pytest.mark.parametrize("code", ["XYZ", "ZZ", "U", "USAA", "1US", "ÜSA"])
def test_unknown_country_code_is_a_400_naming_the_field(
    http: TestClient, tenant: Tenant, path: str, code: str
) -> None:
    body = kount_login_body(tenant.client_id, 4)
    body["person"]["addresses"].insert(0, {"countryCode": "FR"})
    body["person"]["addresses"][1]["countryCode"] = code
    r = http.post(path, json=body, headers=tenant.headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["person.addresses[1].countryCode"]


def test_a_refused_country_code_writes_nothing(http: TestClient, tenant: Tenant) -> None:
    body = kount_login_body(tenant.client_id, 5)
    body["person"]["addresses"][0]["countryCode"] = "XXX"
    assert http.post("/login/v2", json=body, headers=tenant.headers).status_code == 400
    listed = http.get("/manage/v1/mfa-sessions", headers=tenant.admin_headers).json()
    assert listed["items"] == []


# --- the template name "default" ---------------------------------------------------------------------


def _session(http: TestClient, tenant: Tenant, session_id: str) -> dict[str, Any]:
    r = http.get(f"/mfa/v2/{session_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_default_template_for_an_email_login_is_the_email_link(http: TestClient, tenant: Tenant) -> None:
    body = kount_login_body(tenant.client_id, 10)
    body["strategy"] = {"mfaTemplateName": "default"}
    out = http.post("/login/v2", json=body, headers=tenant.headers).json()
    assert out["decision"] == "CHALLENGE" and out["mfa"]["error"] is None
    assert (out["mfa"]["type"], out["mfa"]["channel"]) == ("NONCE_OTH", "EMAIL")
    assert out["strategy"] == {"mfaTemplateName": "email-link"}
    assert _session(http, tenant, out["mfa"]["ID"])["templateName"] == "email-link"


def test_default_template_for_an_sms_login_is_the_sms_code(http: TestClient, tenant: Tenant) -> None:
    body = kount_login_body(tenant.client_id, 11)
    del body["person"]["emailAddress"]
    body["person"]["phoneNumber"] = "+12015550123"
    body["strategy"] = {"mfaTemplateName": "default"}
    out = http.post("/login/v2", json=body, headers=tenant.headers).json()
    assert (out["mfa"]["type"], out["mfa"]["channel"], out["mfa"]["error"]) == ("OTP", "SMS", None)
    assert out["person"] == {"phoneNumber": "+12015550123"}


def test_default_template_follows_kounts_strategy_type(http: TestClient, tenant: Tenant) -> None:
    # Kount's account-opening sample names the channel in strategy.type; both addresses are given.
    body = kount_login_body(tenant.client_id, 12)
    body.pop("loginUrl")
    body["person"]["phoneNumber"] = "+12015550124"
    body["strategy"] = {"verificationTemplateName": "default", "type": "SMS"}
    r = http.post("/newaccountopening/v2", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["decision"] == "CHALLENGE", out
    v = out["verification"]
    assert (v["type"], v["channel"], v["error"]) == ("NONCE_OTH", "SMS", None)
    assert _session(http, tenant, v["ID"])["templateName"] == "sms-link"
    body["inquiryId"] += "email"
    body["strategy"]["type"] = "EMAIL"
    v = http.post("/newaccountopening/v2", json=body, headers=tenant.headers).json()["verification"]
    assert (v["channel"], _session(http, tenant, v["ID"])["templateName"]) == ("EMAIL", "email-link")


def test_the_clients_own_default_template_is_used(http: TestClient, tenant: Tenant) -> None:
    # The client's own template replaces the built-in its default stands for...
    own = {
        "channel": "EMAIL",
        "kind": "OTP",
        "defaultLocale": "en",
        "locales": {"en": {"subject": "Your code", "text": "Code {{ code }}", "html": "<p>{{ code }}</p>"}},
    }
    r = http.put(
        "/manage/v1/templates/email-link",
        json={
            **own,
            "kind": "OTH",
            "locales": {
                "en": {"subject": "Confirm", "text": "Open {{ link }}", "html": "<a href='{{ link }}'>go</a>"}
            },
        },
        headers=tenant.admin_headers,
    )
    assert r.status_code in (200, 201), r.text
    body = kount_login_body(tenant.client_id, 13)
    body["strategy"] = {"mfaTemplateName": "default"}
    out = http.post("/login/v2", json=body, headers=tenant.headers).json()
    assert out["mfa"]["error"] is None and out["strategy"] == {"mfaTemplateName": "email-link"}
    # ...and a template the client saved under the name "default" itself is used as named.
    r = http.put("/manage/v1/templates/default", json=own, headers=tenant.admin_headers)
    assert r.status_code in (200, 201), r.text
    body["inquiryId"] += "own"
    out = http.post("/login/v2", json=body, headers=tenant.headers).json()
    assert (out["mfa"]["type"], out["strategy"]) == ("OTP", {"mfaTemplateName": "default"})


def test_default_template_without_an_address_is_not_enough_info(http: TestClient, tenant: Tenant) -> None:
    body = kount_login_body(tenant.client_id, 14)
    body["person"] = {"name": {"first": "John"}}
    body["strategy"] = {"mfaTemplateName": "default"}
    out = http.post("/login/v2", json=body, headers=tenant.headers).json()
    assert out["decision"] == "CHALLENGE" and out["mfa"]["error"] == "NOT_ENOUGH_INFO"


# --- trusted devices in Kount's shape ----------------------------------------------------------------


def _kount_trust(
    client_id: str, session_id: str, user_id: str, state: str, name: str | None
) -> dict[str, Any]:
    body = {"clientId": client_id, "sessionId": session_id, "userId": user_id, "trustState": state}
    if name is not None:
        body["friendlyName"] = name
    return body


def test_kount_trusted_device_calls(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, clock: FrozenClock
) -> None:
    cid = tenant.client_id
    login = kount_login_body(cid, 20)
    sid, uid = login["deviceSessionId"], login["account"]["id"]
    assert http.post("/login/v2", json=login, headers=tenant.headers).json()["decision"] == "CHALLENGE"

    created = http.post(
        "/trusted-device", json=_kount_trust(cid, sid, uid, "trusted", "Jane's phone"), headers=tenant.headers
    )
    assert created.status_code == 200, created.text
    rec = created.json()
    assert {k: rec[k] for k in ("clientId", "sessionId", "userId", "trustState", "friendlyName")} == {
        "clientId": cid,
        "sessionId": sid,
        "userId": uid,
        "trustState": "trusted",
        "friendlyName": "Jane's phone",
    }
    assert re.fullmatch(r"[0-9a-f]{32}", rec["deviceId"])
    assert rec["createdAt"] == rec["lastUpdated"] and RFC3339.match(rec["createdAt"])
    # The deviceId is the one the decision answered for this device session.
    login2 = {**login, "inquiryId": login["inquiryId"] + "b"}
    decided = http.post("/login/v2", json=login2, headers=tenant.headers).json()
    assert decided["decision"] == "ALLOW" and decided["deviceId"] == rec["deviceId"]

    # Kount's read; Passgate's read of the same record.
    path = f"/trusted-device/sessions/{sid}/users/{uid}/clients/{cid}"
    assert http.get(path, headers=tenant.headers).json() == rec
    ours = http.get(
        "/trusted-device", params={"accountId": uid, "deviceSessionId": sid}, headers=tenant.headers
    ).json()
    assert (ours["trustState"], ours["friendlyName"]) == ("TRUSTED", "Jane's phone")

    # Banned, in capitals this time, later: lastUpdated moves, createdAt stays, the name stays.
    clock.advance(minutes=5)
    banned = http.post(
        "/trusted-device", json=_kount_trust(cid, sid, uid, "BANNED", None), headers=tenant.headers
    ).json()
    assert (banned["trustState"], banned["friendlyName"]) == ("banned", "Jane's phone")
    assert banned["createdAt"] == rec["createdAt"] and banned["lastUpdated"] > rec["lastUpdated"]
    ours = http.get(
        "/trusted-device", params={"accountId": uid, "deviceSessionId": sid}, headers=tenant.headers
    ).json()
    assert ours["trustState"] == "BANNED"

    # Lists in Kount's read forms.
    by_user = http.get(f"/trusted-device/users/{uid}/clients/{cid}", headers=tenant.headers).json()
    assert [d["sessionId"] for d in by_user["devices"]] == [sid]
    by_device = http.get(f"/trusted-device/sessions/{sid}/clients/{cid}", headers=tenant.headers).json()
    assert [d["userId"] for d in by_device["devices"]] == [uid]

    # Never across tenants: another client's token cannot name this client, nor see the record.
    for method, url, kwargs in (
        ("POST", "/trusted-device", {"json": _kount_trust(cid, sid, uid, "trusted", "x")}),
        ("GET", path, {}),
        ("DELETE", path, {}),
        ("GET", f"/trusted-device/users/{uid}/clients/{cid}", {}),
    ):
        r = http.request(method, url, headers=other_tenant.headers, **kwargs)
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["errors"] == [{"field": "clientId", "message": "must be the token's own client id"}]
    other_path = f"/trusted-device/sessions/{sid}/users/{uid}/clients/{other_tenant.client_id}"
    assert http.get(other_path, headers=other_tenant.headers).status_code == 404

    # Kount's delete, then the device is new again.
    assert http.delete(path, headers=tenant.headers).status_code == 204
    assert http.delete(path, headers=tenant.headers).status_code == 404
    assert http.get(path, headers=tenant.headers).status_code == 404
    login4 = {**login, "inquiryId": login["inquiryId"] + "d"}
    assert http.post("/login/v2", json=login4, headers=tenant.headers).json()["decision"] == "CHALLENGE"


def test_passgate_spelling_still_answers_its_own_view(http: TestClient, tenant: Tenant) -> None:
    r = http.post(
        "/trusted-device",
        json={
            "accountId": "acct-pg",
            "deviceSessionId": "devpg1",
            "trustState": "TRUSTED",
            "friendlyName": "Laptop",
        },
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["accountId"] == "acct-pg" and r.json()["friendlyName"] == "Laptop"
    kount = http.get(
        f"/trusted-device/sessions/devpg1/users/acct-pg/clients/{tenant.client_id}", headers=tenant.headers
    ).json()
    assert (kount["trustState"], kount["friendlyName"]) == ("trusted", "Laptop")


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"trustState": "maybe"}, {"trustState"}),
        ({"sessionId": "x" * 33}, {"sessionId"}),
        ({"userId": ""}, {"userId"}),
        ({"friendlyName": "n" * 257}, {"friendlyName"}),
        ({"clientId": None}, {"clientId"}),
        ({"trustState": 1}, {"trustState"}),
    ],
)
def test_bad_kount_trust_bodies_are_400s_naming_the_field(
    http: TestClient, tenant: Tenant, change: dict[str, Any], fields: set[str]
) -> None:
    body = {**_kount_trust(tenant.client_id, "sess1", "user1", "trusted", "Phone"), **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = http.post("/trusted-device", json=body, headers=tenant.headers)
    assert r.status_code == 400, r.text
    assert {e["field"] for e in r.json()["errors"]} == fields
    assert (
        http.get(
            f"/trusted-device/sessions/sess1/users/user1/clients/{tenant.client_id}", headers=tenant.headers
        ).status_code
        == 404
    )


def test_trust_body_that_is_not_an_object_is_a_400(http: TestClient, tenant: Tenant) -> None:
    for raw in (b"[1, 2]", b"not json", b""):
        r = http.post(
            "/trusted-device", content=raw, headers={**tenant.headers, "Content-Type": "application/json"}
        )
        assert r.status_code == 400, (raw, r.text)


# --- a webhook receiver written from Kount's description --------------------------------------------


class KountReceiver:
    """What a business writes from Kount 360's webhook documentation: fetch the public key (base64 DER
    SubjectPublicKeyInfo) with its `validUntil` (an RFC 3339 time), keep it until then, and check
    `X-Event-Signature` = base64 RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) over the bytes of
    `X-Event-Timestamp` followed by the raw body."""

    def __init__(self) -> None:
        self.keys: list[tuple[rsa.RSAPublicKey, datetime]] = []
        self.verified: list[dict[str, Any]] = []
        self.rejected: list[Recorded] = []

    def load_keys(self, document: dict[str, Any]) -> None:
        self.keys = []
        for entry in [document, *document.get("previous", [])]:
            until = entry["validUntil"]
            assert isinstance(until, str) and RFC3339.match(until), until
            valid_until = datetime.fromisoformat(until.replace("Z", "+00:00").replace("z", "+00:00"))
            key = serialization.load_der_public_key(base64.b64decode(entry["publicKey"]))
            assert isinstance(key, rsa.RSAPublicKey)
            self.keys.append((key, valid_until))

    def respond(self, rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        timestamp = rec.headers.get("x-event-timestamp", "")
        assert RFC3339.match(timestamp), timestamp
        signature = base64.b64decode(rec.headers.get("x-event-signature", ""))
        now = datetime.now(UTC)
        for key, valid_until in self.keys:
            if valid_until < now:
                continue
            try:
                key.verify(
                    signature,
                    timestamp.encode() + rec.body,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                    hashes.SHA256(),
                )
            except InvalidSignature:
                continue
            self.verified.append(rec.json())
            return 200, {}, b"ok"
        self.rejected.append(rec)
        return 401, {}, b"bad signature"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True, "webhook_timeout_seconds": 2.0})


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_leftover_deliveries(engine: Engine) -> Iterator[None]:
    yield
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE webhook_deliveries SET status = 'FAILED' WHERE status IN ('PENDING', 'SENDING')")
        )


def test_kount_webhook_receiver_verifies_with_a_key_valid_until_a_time(
    http: TestClient, tenant: Tenant, registry: Registry, receiver: HttpReceiver, clock: FrozenClock
) -> None:
    business = KountReceiver()
    receiver.responder = business.respond
    r = http.post(
        "/manage/v1/webhooks",
        json={
            "url": f"{receiver.url}/kount",
            "events": ["Decision.Created"],
            "signatureScheme": "kount-rsa-pss",
        },
        headers=tenant.admin_headers,
    )
    assert r.status_code == 201, r.text
    document = http.get("/manage/v1/webhooks/public-key", headers=tenant.admin_headers).json()
    business.load_keys(document)
    # The signing key's validUntil: its planned year, never null.
    created = datetime.fromisoformat(document["createdAt"].replace("Z", "+00:00"))
    assert business.keys[0][1] - created == timedelta(days=365)

    http.post("/login/v2", json=kount_login_body(tenant.client_id, 30), headers=tenant.headers)
    deliverer = registry.webhook_deliverer
    assert isinstance(deliverer, WebhookDeliverer)
    asyncio.run(deliverer.drain(seconds=10.0))
    assert business.rejected == []
    assert [e["eventType"] for e in business.verified] == ["Decision.Created"]
    assert business.verified[0]["clientId"] == tenant.client_id

    # After a rotation both keys carry a time: the old one the end of its overlap.
    rotated = http.post(
        "/manage/v1/webhooks/public-key/rotate", json={"overlapSeconds": 3600}, headers=tenant.admin_headers
    ).json()
    business.load_keys(rotated)
    old_until = business.keys[1][1]
    assert old_until == clock.now() + timedelta(hours=1)
    assert business.keys[0][1] > old_until


def test_validUntil_of_a_key_kept_past_its_year_is_at_least_the_overlap_ahead(
    http: TestClient, registry: Registry, clock: FrozenClock
) -> None:
    tenant = make_tenant(http, registry, name="Old Key Co")
    first = http.get("/manage/v1/webhooks/public-key", headers=tenant.admin_headers).json()
    clock.advance(days=400)
    tenant.refresh(http)
    later = http.get("/manage/v1/webhooks/public-key", headers=tenant.admin_headers).json()
    assert later["keyId"] == first["keyId"]
    until = datetime.fromisoformat(later["validUntil"].replace("Z", "+00:00"))
    assert until == clock.now() + timedelta(hours=24)
