from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.policy.velocity import DatabaseVelocityStore, RedisVelocityStore
from tests.factories import Tenant, login_body, publish

VELOCITY_BACKENDS = ["database"] + (["redis"] if os.environ.get("PASSGATE_TEST_REDIS_URL") else [])


def cond(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


def one_policy_set(*policies: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "t",
        "segments": [{"name": "default", "mfaEnabled": True, "policies": [p["name"] for p in policies]}],
        "policies": list(policies),
    }


def decide(http: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = http.post("/login/v2", json=login_body(**body), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(params=VELOCITY_BACKENDS)
def velocity_backend(request: pytest.FixtureRequest, registry: Registry) -> Iterator[str]:
    if request.param == "redis":
        registry.signals.velocity = RedisVelocityStore(
            os.environ["PASSGATE_TEST_REDIS_URL"], prefix=f"pgtest:{secrets.token_hex(4)}:"
        )
    else:
        registry.signals.velocity = DatabaseVelocityStore()
    yield request.param


def test_three_failed_attempts_in_an_hour_challenge(
    http: TestClient, tenant: Tenant, clock: FrozenClock, velocity_backend: str
) -> None:
    publish(
        http,
        tenant,
        one_policy_set(
            {
                "name": "too-many-failures",
                "outcome": "CHALLENGE",
                "conditions": [cond("velocity.account.failedAttempts1h", "gte", 3)],
                "tags": [{"name": "FAILED_LOGINS", "weight": 30}],
            }
        ),
    )
    account = {"id": "acct-vel", "username": "v"}
    for _ in range(2):
        r = http.post("/events/failed-attempt", json=login_body(account=account), headers=tenant.headers)
        assert r.status_code == 202
    assert decide(http, tenant, account=account)["decision"] == "ALLOW"
    clock.advance(60)
    http.post("/events/failed-attempt", json=login_body(account=account), headers=tenant.headers)
    out = decide(http, tenant, account=account)
    assert (out["decision"], out["tags"]) == ("CHALLENGE", ["FAILED_LOGINS"])
    clock.advance(3600)  # the window slides past all three
    tenant.refresh(http)
    assert decide(http, tenant, account=account)["decision"] == "ALLOW"


def test_login_velocity_per_ip(http: TestClient, tenant: Tenant, velocity_backend: str) -> None:
    publish(
        http,
        tenant,
        one_policy_set(
            {"name": "busy-ip", "outcome": "BLOCK", "conditions": [cond("velocity.ip.logins1h", "gt", 3)]}
        ),
    )
    ip = "198.51.100.23"
    outcomes = [decide(http, tenant, userIp=ip)["decision"] for _ in range(6)]
    assert outcomes == ["ALLOW"] * 4 + ["BLOCK"] * 2  # counts are of earlier requests


def test_banned_device_is_blocked_and_trust_is_readable(http: TestClient, tenant: Tenant) -> None:
    publish(
        http,
        tenant,
        {
            "name": "devices",
            "segments": [{"name": "default", "policies": ["banned", "new"], "mfaEnabled": True}],
            "policies": [
                {
                    "name": "banned",
                    "outcome": "BLOCK",
                    "conditions": [cond("device.banned", "equals", True)],
                    "tags": [{"name": "BANNED_DEVICE", "weight": 100}],
                },
                {
                    "name": "new",
                    "outcome": "CHALLENGE",
                    "conditions": [cond("device.seenForAccount", "equals", False)],
                },
            ],
        },
    )
    body = login_body(account={"id": "acct-ban", "username": "b"}, deviceSessionId="devban1")
    r = http.post(
        "/trusted-device",
        json={"accountId": "acct-ban", "deviceSessionId": "devban1", "trustState": "TRUSTED"},
        headers=tenant.headers,
    )
    assert r.status_code == 200 and r.json()["trustState"] == "TRUSTED"
    assert decide(http, tenant, **{k: v for k, v in body.items() if k != "inquiryId"})["decision"] == "ALLOW"
    http.post(
        "/trusted-device",
        json={"accountId": "acct-ban", "deviceSessionId": "devban1", "trustState": "BANNED"},
        headers=tenant.headers,
    )
    out = decide(http, tenant, **{k: v for k, v in body.items() if k != "inquiryId"})
    assert (out["decision"], out["tags"]) == ("BLOCK", ["BANNED_DEVICE"])
    got = http.get(
        "/trusted-device",
        params={"accountId": "acct-ban", "deviceSessionId": "devban1"},
        headers=tenant.headers,
    ).json()
    assert got["trustState"] == "BANNED"
    assert http.delete("/trusted-device/acct-ban/devban1", headers=tenant.headers).status_code == 204
    assert http.delete("/trusted-device/acct-ban/devban1", headers=tenant.headers).status_code == 404
    out = decide(http, tenant, **{k: v for k, v in body.items() if k != "inquiryId"})
    assert out["decision"] == "CHALLENGE"
    bad = http.post(
        "/trusted-device",
        json={"accountId": "a", "deviceSessionId": "x" * 40, "trustState": "MAYBE"},
        headers=tenant.headers,
    )
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"deviceSessionId", "trustState"}


def test_challenge_outcome_success_trusts_the_device(http: TestClient, tenant: Tenant) -> None:
    body = login_body(account={"id": "acct-own-mfa", "username": "o"}, deviceSessionId="devown1")
    first = http.post("/login/v2", json=body, headers=tenant.headers)
    assert first.json()["decision"] == "CHALLENGE"
    outcome = {
        "inquiryId": body["inquiryId"],
        "deviceSessionId": "devown1",
        "decisionCorrelationId": first.headers["x-correlation-id"],
        "challengeType": "OTP",
        "challengeStatus": "Success",
        "sentTimestamp": "2026-11-29T10:00:00Z",
        "completedTimestamp": "2026-11-29T10:00:30Z",
    }
    assert http.post("/events/challenge-outcome", json=outcome, headers=tenant.headers).status_code == 202
    again = http.post(
        "/login/v2", json={**body, "inquiryId": body["inquiryId"] + "x"}, headers=tenant.headers
    )
    assert again.json()["decision"] == "ALLOW"
    r = http.post(
        "/events/challenge-outcome", json={**outcome, "decisionCorrelationId": "nope"}, headers=tenant.headers
    )
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "decisionCorrelationId"


def test_lists_csv_import_report_and_membership(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    assert http.post("/manage/v1/lists", json={"name": "bad-ips", "kind": "ip"}, headers=h).status_code == 201
    assert http.post("/manage/v1/lists", json={"name": "bad-ips", "kind": "ip"}, headers=h).status_code == 409
    csv = "value\n203.0.113.0/24\n198.51.100.7\nnot-an-ip\n198.51.100.7\n\n10.0.0.999\n"
    r = http.post(
        "/manage/v1/lists/bad-ips/entries", content=csv.encode(), headers={**h, "content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["added"] == 2 and report["duplicates"] == 1
    assert [(x["line"], x["value"]) for x in report["rejected"]] == [(4, "not-an-ip"), (7, "10.0.0.999")]
    assert report["list"]["entries"] == 2

    publish(
        http,
        tenant,
        one_policy_set(
            {"name": "bad-ip", "outcome": "BLOCK", "conditions": [cond("userIp", "inList", "bad-ips")]}
        ),
    )
    assert decide(http, tenant, userIp="203.0.113.99")["decision"] == "BLOCK"
    assert decide(http, tenant, userIp="198.51.100.8")["decision"] == "ALLOW"
    # Changing the list takes effect at once, without republishing.
    http.post("/manage/v1/lists/bad-ips/entries", json={"entries": ["198.51.100.8"]}, headers=h)
    assert decide(http, tenant, userIp="198.51.100.8")["decision"] == "BLOCK"
    http.post("/manage/v1/lists/bad-ips/entries/remove", json={"entries": ["198.51.100.8"]}, headers=h)
    assert decide(http, tenant, userIp="198.51.100.8")["decision"] == "ALLOW"

    too_many = {"entries": [f"10.0.{i // 256}.{i % 256}" for i in range(10_001)]}
    assert http.post("/manage/v1/lists/bad-ips/entries", json=too_many, headers=h).status_code == 400
    missing = one_policy_set(
        {"name": "x", "outcome": "BLOCK", "conditions": [cond("userIp", "inList", "nope")]}
    )
    r = http.put("/manage/v1/policy-sets/LOGIN/draft", json=missing, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "policies[0].conditions[0].value"


def test_email_domain_list_and_signals(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    http.post("/manage/v1/lists", json={"name": "vip-domains", "kind": "emailDomain"}, headers=h)
    http.post("/manage/v1/lists/vip-domains/entries", json={"entries": ["acme-partner.com"]}, headers=h)
    publish(
        http,
        tenant,
        {
            "name": "email",
            "segments": [
                {
                    "name": "vip",
                    "conditions": [cond("email.domain", "inList", "vip-domains")],
                    "policies": [],
                },
                {
                    "name": "default",
                    "mfaEnabled": True,
                    "policies": ["disposable", "free", "foreign-phone", "young"],
                },
            ],
            "policies": [
                {
                    "name": "disposable",
                    "outcome": "BLOCK",
                    "conditions": [cond("email.disposable", "equals", True)],
                },
                {
                    "name": "free",
                    "outcome": "NO_CHANGE",
                    "conditions": [cond("email.freeProvider", "equals", True)],
                    "tags": [{"name": "FREE_EMAIL", "weight": 1}],
                },
                {
                    "name": "foreign-phone",
                    "outcome": "CHALLENGE",
                    "conditions": [
                        cond("phone.country", "notEquals", "US"),
                        cond("phone.valid", "equals", True),
                    ],
                },
                {"name": "young", "outcome": "CHALLENGE", "conditions": [cond("account.ageDays", "lt", 1)]},
            ],
        },
    )
    assert decide(http, tenant, person={"emailAddress": "x@mailinator.com"})["decision"] == "BLOCK"
    assert decide(http, tenant, person={"emailAddress": "x@gmail.com"})["tags"] == ["FREE_EMAIL"]
    assert decide(http, tenant, person={"emailAddress": "x@acme-partner.com"})["userSegment"] == "vip"
    assert decide(http, tenant, person={"phoneNumber": "+447400123456"})["decision"] == "CHALLENGE"
    assert decide(http, tenant, person={"phoneNumber": "+12015550123"})["decision"] == "ALLOW"
    assert (
        decide(
            http, tenant, account={"id": "n", "username": "n", "creationDateTime": "2000-01-01T00:00:00Z"}
        )["decision"]
        == "ALLOW"
    )


def test_versions_restore_and_diff(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    v2 = one_policy_set(
        {"name": "red", "outcome": "BLOCK", "conditions": [cond("customFields.tier", "equals", "red")]}
    )
    publish(http, tenant, v2)
    v3 = one_policy_set(
        {"name": "red", "outcome": "CHALLENGE", "conditions": [cond("customFields.tier", "equals", "red")]},
        {
            "name": "amber",
            "outcome": "CHALLENGE",
            "conditions": [cond("customFields.tier", "equals", "amber")],
        },
    )
    publish(http, tenant, v3)
    listed = http.get("/manage/v1/policy-sets/LOGIN/versions", headers=h).json()
    assert [v["versionName"] for v in listed["items"]] == ["v3", "v2", "v1"]
    assert listed["activeVersion"] == "v3"
    d = http.get("/manage/v1/policy-sets/LOGIN/diff", params={"from": "v2", "to": "v3"}, headers=h).json()[
        "changes"
    ]
    assert d["policies"]["added"] == ["amber"]
    assert d["policies"]["changed"] == [
        {"name": "red", "fields": {"outcome": {"from": "BLOCK", "to": "CHALLENGE"}}}
    ]
    assert decide(http, tenant, customFields={"tier": "red"})["decision"] == "CHALLENGE"
    r = http.post("/manage/v1/policy-sets/LOGIN/versions/v2/restore", headers=h)
    assert r.status_code == 201 and r.json()["versionName"] == "v4" and r.json()["restoredFrom"] == "v2"
    assert decide(http, tenant, customFields={"tier": "red"})["decision"] == "BLOCK"
    assert (
        http.get("/manage/v1/policy-sets/LOGIN/versions/v3", headers=h).json()["document"]["policies"][0][
            "outcome"
        ]
        == "CHALLENGE"
    )
    assert http.get("/manage/v1/policy-sets/LOGIN/versions/v9", headers=h).status_code == 404
    log = http.get("/manage/v1/audit-log", headers=h).json()["items"]
    assert [e["action"] for e in log[:3]] == [
        "policy_set.restored",
        "policy_set.published",
        "policy_set.draft_updated",
    ]


def test_simulation_explains_and_stores_nothing(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    from sqlalchemy import func, select

    from passgate.policy.models import Decision, VelocityCounter

    h = tenant.admin_headers
    doc = one_policy_set(
        {
            "name": "red",
            "outcome": "BLOCK",
            "conditions": [
                cond("customFields.tier", "equals", "red"),
                cond("email.disposable", "equals", True),
            ],
            "tags": [{"name": "RED", "weight": 9}],
        },
        {"name": "logins", "outcome": "CHALLENGE", "cel": "velocity.account.logins1h > 100"},
    )
    assert http.put("/manage/v1/policy-sets/LOGIN/draft", json=doc, headers=h).status_code == 200
    request = login_body(customFields={"tier": "red"}, person={"emailAddress": "z@mailinator.com"})

    def counts() -> tuple[int, int]:
        with registry.sessions() as s:
            return (
                s.scalar(
                    select(func.count()).select_from(Decision).where(Decision.client_id == tenant.client_id)
                )
                or 0,
                s.scalar(
                    select(func.count())
                    .select_from(VelocityCounter)
                    .where(VelocityCounter.client_id == tenant.client_id)
                )
                or 0,
            )

    before = counts()
    r = http.post("/manage/v1/policy-sets/LOGIN/simulate", json={"request": request}, headers=h)
    assert r.status_code == 200, r.text
    sim = r.json()
    assert (sim["decision"], sim["version"], sim["userSegment"]) == ("BLOCK", "draft", "default")
    red = sim["policies"][0]
    assert red["matched"] is True
    assert red["conditions"] == [
        {"field": "customFields.tier", "operator": "equals", "value": "red", "actual": "red", "result": True},
        {"field": "email.disposable", "operator": "equals", "value": True, "actual": True, "result": True},
    ]
    assert sim["policies"][1] == {
        "name": "logins",
        "outcome": "CHALLENGE",
        "matched": False,
        "tags": [],
        "conditions": [],
        "cel": {"expression": "velocity.account.logins1h > 100", "result": False},
    }
    assert sim["tagWeights"] == [{"name": "RED", "weight": 9}]
    assert counts() == before
    # Against the published version (still the default set): a new device is challenged.
    r = http.post(
        "/manage/v1/policy-sets/LOGIN/simulate", json={"request": request, "version": "v1"}, headers=h
    )
    assert r.json()["decision"] == "CHALLENGE"
    bad = http.post(
        "/manage/v1/policy-sets/LOGIN/simulate", json={"request": {"inquiryId": "a-b"}}, headers=h
    )
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"request.inquiryId", "request.deviceSessionId"}


def test_cel_compile_errors_carry_the_position(http: TestClient, tenant: Tenant) -> None:
    doc = one_policy_set({"name": "broken", "outcome": "BLOCK", "cel": "customFields.x >"})
    r = http.put("/manage/v1/policy-sets/LOGIN/draft", json=doc, headers=tenant.admin_headers)
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "policies[0].cel" and err["line"] == 1 and err["column"] >= 15


def test_lists_and_audit_are_per_client(http: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    http.post("/manage/v1/lists", json={"name": "mine", "kind": "accountId"}, headers=tenant.admin_headers)
    assert http.get("/manage/v1/lists/mine", headers=other_tenant.admin_headers).status_code == 404
    assert http.get("/manage/v1/lists", headers=other_tenant.admin_headers).json()["items"] == []
    assert all(
        e["target"] != "mine"
        for e in http.get("/manage/v1/audit-log", headers=other_tenant.admin_headers).json()["items"]
    )
    # A device trusted by one client means nothing to another.
    http.post(
        "/trusted-device",
        json={"accountId": "shared", "deviceSessionId": "d1", "trustState": "BANNED"},
        headers=tenant.headers,
    )
    got = http.get(
        "/trusted-device",
        params={"accountId": "shared", "deviceSessionId": "d1"},
        headers=other_tenant.headers,
    ).json()
    assert got["trustState"] is None
