from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.policy.models import PolicySet
from tests.factories import Tenant, login_body, publish


def cond(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


RISK_SET = {
    "name": "risk",
    "segments": [
        {
            "name": "staff",
            "conditions": [cond("person.emailAddress", "endsWith", "@staff.example.com")],
            "policies": [],
        },
        {"name": "default", "mfaEnabled": True, "policies": ["block-red", "challenge-big-cart", "vip-tag"]},
    ],
    "policies": [
        {
            "name": "block-red",
            "conditions": [cond("customFields.riskTier", "equals", "red")],
            "outcome": "BLOCK",
            "tags": [{"name": "RISK_RED", "weight": 50}],
        },
        {
            "name": "challenge-big-cart",
            "conditions": [cond("customFields.cart", "gt", 1000)],
            "outcome": "CHALLENGE",
            "tags": [{"name": "BIG_CART", "weight": 20}],
        },
        {
            "name": "vip-tag",
            "cel": "has(customFields.vip) && customFields.vip == true",
            "outcome": "NO_CHANGE",
            "tags": [{"name": "VIP", "weight": -5}],
        },
    ],
}


def decide(http: TestClient, tenant: Tenant, **kw: Any) -> dict[str, Any]:
    r = http.post("/login/v2", json=login_body(**kw), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_published_set_decides(http: TestClient, tenant: Tenant) -> None:
    v = publish(http, tenant, RISK_SET)
    assert v["versionName"] == "v2"
    assert decide(http, tenant)["decision"] == "ALLOW"
    big = decide(http, tenant, customFields={"cart": 5000, "vip": True})
    assert big["decision"] == "CHALLENGE"
    assert big["tagWeights"] == [{"name": "BIG_CART", "weight": 20}, {"name": "VIP", "weight": -5}]
    both = decide(http, tenant, customFields={"cart": 5000, "riskTier": "red"})
    assert both["decision"] == "BLOCK"
    assert both["tags"] == ["RISK_RED", "BIG_CART"]
    staff = decide(
        http, tenant, person={"emailAddress": "ann@staff.example.com"}, customFields={"riskTier": "red"}
    )
    assert (staff["decision"], staff["userSegment"]) == ("ALLOW", "staff")


def test_published_version_never_changes_with_the_draft(http: TestClient, tenant: Tenant) -> None:
    publish(http, tenant, RISK_SET)
    active = http.get("/manage/v1/policy-sets/LOGIN", headers=tenant.admin_headers).json()
    changed = {**RISK_SET, "policies": [{**p, "outcome": "BLOCK"} for p in RISK_SET["policies"]]}
    r = http.put("/manage/v1/policy-sets/LOGIN/draft", json=changed, headers=tenant.admin_headers)
    assert r.status_code == 200
    assert http.get("/manage/v1/policy-sets/LOGIN", headers=tenant.admin_headers).json() == active
    assert decide(http, tenant, customFields={"cart": 5000})["decision"] == "CHALLENGE"
    draft = http.get("/manage/v1/policy-sets/LOGIN/draft", headers=tenant.admin_headers).json()["document"]
    assert [p["outcome"] for p in draft["policies"]] == ["BLOCK", "BLOCK", "BLOCK"]
    assert [p["outcome"] for p in active["document"]["policies"]] == ["BLOCK", "CHALLENGE", "NO_CHANGE"]


def test_invalid_draft_is_refused_with_the_location(http: TestClient, tenant: Tenant) -> None:
    bad = {
        **RISK_SET,
        "policies": [*RISK_SET["policies"][:2], {"name": "x", "cel": "customFields.(", "outcome": "BLOCK"}],
    }
    r = http.put("/manage/v1/policy-sets/LOGIN/draft", json=bad, headers=tenant.admin_headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "policies[2].cel"
    # Raw CEL that only parses inside the conjunction with the conditions would override them.
    escape = {
        **RISK_SET,
        "policies": [
            *RISK_SET["policies"][:2],
            {
                **RISK_SET["policies"][2],
                "conditions": [{"field": "account.type", "operator": "equals", "value": "PRO"}],
                "cel": "false) || (true",
            },
        ],
    }
    r = http.put("/manage/v1/policy-sets/LOGIN/draft", json=escape, headers=tenant.admin_headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "policies[2].cel"
    assert "on its own" in r.json()["errors"][0]["message"]
    r = http.put(
        "/manage/v1/policy-sets/LOGIN/draft", json={"name": "x", "segments": []}, headers=tenant.admin_headers
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "segments"
    r = http.put(
        "/manage/v1/policy-sets/LOGIN/draft",
        json={
            "name": "x",
            "segments": [{"name": "d", "policies": []}],
            "policies": [{"name": "p", "outcome": "MAYBE"}],
        },
        headers=tenant.admin_headers,
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "policies[0].outcome"
    # The draft kept its earlier content.
    assert (
        http.get("/manage/v1/policy-sets/LOGIN/draft", headers=tenant.admin_headers).json()["document"][
            "name"
        ]
        == "login"
    )


def test_tenants_cannot_see_or_change_each_others_sets(
    http: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    publish(http, tenant, RISK_SET)
    theirs = http.get("/manage/v1/policy-sets/LOGIN", headers=other_tenant.admin_headers).json()
    assert theirs["document"]["name"] == "login" and theirs["versionName"] == "v1"
    publish(
        http,
        other_tenant,
        {
            "name": "other",
            "segments": [{"name": "d", "policies": ["all"]}],
            "policies": [{"name": "all", "outcome": "BLOCK"}],
        },
    )
    mine = http.get("/manage/v1/policy-sets/LOGIN", headers=tenant.admin_headers).json()
    assert mine["document"]["name"] == "risk" and mine["versionName"] == "v2"
    assert decide(http, tenant)["decision"] == "ALLOW"
    assert decide(http, other_tenant)["decision"] == "BLOCK"


@pytest.mark.parametrize(
    ("field", "operator", "kind", "entries", "hit", "miss"),
    [
        (
            "email.domain",
            "inList",
            "emailDomain",
            ["mailinator.com"],
            {"person": {"emailAddress": "evil@mailinator.com"}},
            {"person": {"emailAddress": "jo@example.com"}},
        ),
        ("phone.country", "inList", "country", ["GB"], {"person": {"phoneNumber": "+447400123456"}}, {}),
        (
            "phone.lineType",
            "inList",
            "deviceId",
            ["MOBILE"],
            {"person": {"phoneNumber": "+447400123456"}},
            {},
        ),
        ("ip.country", "inList", "country", ["gb"], {"userIp": "81.2.69.160"}, {"userIp": "8.8.8.8"}),
        (
            "phone.country",
            "notInList",
            "country",
            ["US"],
            {"person": {"phoneNumber": "+447400123456"}},
            {"person": {"phoneNumber": "+12015550123"}},
        ),
    ],
)
def test_a_list_check_on_a_signal_decides_live_and_in_simulation(
    http: TestClient,
    tenant: Tenant,
    field: str,
    operator: str,
    kind: str,
    entries: list[str],
    hit: dict[str, Any],
    miss: dict[str, Any],
) -> None:
    """The list check is the only condition reading its signal: the signal is computed all the same."""
    h = tenant.admin_headers
    assert (
        http.post("/manage/v1/lists", json={"name": "the-list", "kind": kind}, headers=h).status_code == 201
    )
    r = http.post("/manage/v1/lists/the-list/entries", json={"entries": entries}, headers=h)
    assert r.json()["added"] == len(entries)
    publish(
        http,
        tenant,
        {
            "name": "listed",
            "segments": [{"name": "default", "mfaEnabled": True, "policies": ["listed"]}],
            "policies": [
                {
                    "name": "listed",
                    "outcome": "BLOCK",
                    "conditions": [cond(field, operator, "the-list")],
                    "tags": [{"name": "LISTED", "weight": 10}],
                }
            ],
        },
    )
    # Nothing but the list's field: the request carries no address (no IP signal) unless the case gives one.
    blocked = {**login_body(userIp=None), **hit}
    assert decide(http, tenant, **blocked)["decision"] == "BLOCK"
    sim = http.post(
        "/manage/v1/policy-sets/LOGIN/simulate", json={"request": blocked, "version": "v2"}, headers=h
    ).json()
    assert (sim["decision"], sim["tags"]) == ("BLOCK", ["LISTED"])
    (condition,) = sim["policies"][0]["conditions"]
    assert condition["result"] is True
    assert condition["actual"] is not None  # the signal's value, not "absent"
    assert condition["actual"] == sim["signals"][field.split(".")[0]][field.split(".")[1]]
    assert decide(http, tenant, **{**login_body(userIp=None), **miss})["decision"] == "ALLOW"


SETS = "/manage/v1/policy-sets/LOGIN"


def test_a_segment_naming_a_missing_policy_is_refused_everywhere(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    h = tenant.admin_headers
    dangling = {
        **RISK_SET,
        "segments": [
            RISK_SET["segments"][0],
            {**RISK_SET["segments"][1], "policies": ["block-red", "ghost"]},
        ],
    }
    r = http.put(f"{SETS}/draft", json=dangling, headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"field": "segments[1].policies[1]", "message": "no policy named 'ghost'"}]
    assert http.get(f"{SETS}/draft", headers=h).json()["document"]["name"] == "login"  # nothing written
    # A draft stored before this check (written here directly) is refused by publish and simulate too.
    with transaction(registry.sessions) as session:
        session.execute(
            update(PolicySet)
            .where(PolicySet.client_id == tenant.client_id, PolicySet.event_type == "LOGIN")
            .values(draft=dangling)
        )
    r = http.post(f"{SETS}/publish", headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "segments[1].policies[1]"
    assert [v["versionName"] for v in http.get(f"{SETS}/versions", headers=h).json()["items"]] == ["v1"]
    r = http.post(f"{SETS}/simulate", json={"request": login_body()}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "segments[1].policies[1]"


def test_a_policy_no_segment_applies_is_a_warning(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    unapplied = {**RISK_SET, "segments": [{"name": "default", "policies": ["challenge-big-cart"]}]}
    r = http.put(f"{SETS}/draft", json=unapplied, headers=h)
    assert r.status_code == 200
    expected = [
        {"field": "policies[0]", "message": "no segment applies 'block-red': it never decides"},
        {"field": "policies[2]", "message": "no segment applies 'vip-tag': it never decides"},
    ]
    assert r.json()["warnings"] == expected
    assert http.get(f"{SETS}/draft", headers=h).json()["warnings"] == expected
    assert http.put(f"{SETS}/draft", json=RISK_SET, headers=h).json()["warnings"] == []


def test_publishing_what_is_live_makes_no_version(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    first = http.post(f"{SETS}/publish", headers=h)  # the draft is the default set, live as v1
    assert first.status_code == 200
    assert (first.json()["published"], first.json()["versionName"]) == (False, "v1")
    assert "identical to the live version v1" in first.json()["detail"]
    v2 = publish(http, tenant, RISK_SET)
    assert (v2["versionName"], v2["published"]) == ("v2", True)

    def audited() -> list[str]:
        return [e["action"] for e in http.get("/manage/v1/audit-log", headers=h).json()["items"]]

    before = audited()
    again = http.post(f"{SETS}/publish", headers=h)
    assert again.status_code == 200 and again.json()["versionName"] == "v2" and not again.json()["published"]
    # Restoring the version that is live makes none either.
    same = http.post(f"{SETS}/versions/v2/restore", headers=h)
    assert same.status_code == 200 and same.json()["published"] is False
    assert [v["versionName"] for v in http.get(f"{SETS}/versions", headers=h).json()["items"]] == ["v2", "v1"]
    assert audited() == before  # nothing happened


def test_restore_makes_an_old_version_live_and_leaves_the_draft(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    publish(http, tenant, RISK_SET)
    work = {**RISK_SET, "policies": [{**p, "outcome": "BLOCK"} for p in RISK_SET["policies"]]}
    assert http.put(f"{SETS}/draft", json=work, headers=h).status_code == 200
    before = http.get(f"{SETS}/draft", headers=h).json()
    r = http.post(f"{SETS}/versions/v1/restore", headers=h)
    assert r.status_code == 201
    assert (r.json()["versionName"], r.json()["restoredFrom"], r.json()["published"]) == ("v3", "v1", True)
    assert http.get(SETS, headers=h).json()["versionName"] == "v3"
    assert decide(http, tenant, customFields={"riskTier": "red"})["tags"] == [
        "NEW_DEVICE"
    ]  # v1: the default set
    assert http.get(f"{SETS}/draft", headers=h).json() == before  # the unpublished work is still there
    d = http.get(f"{SETS}/diff", params={"from": "v3", "to": "draft"}, headers=h).json()["changes"]
    assert d["segments"]["changed"][0]["linksAdded"] == ["block-red", "challenge-big-cart", "vip-tag"]
    assert d["segments"]["changed"][0]["linksRemoved"] == ["new-device"]
