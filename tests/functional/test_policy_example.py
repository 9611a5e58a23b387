"""The 25-policy example shipped in docs/ builds, simulates and decides as docs/policies.md says."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import Tenant, login_body

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_the_25_policy_example(http: TestClient, tenant: Tenant) -> None:
    h = tenant.admin_headers
    doc = json.loads((EXAMPLES / "policy-set-25.json").read_text())
    assert len(doc["policies"]) == 25
    for name, kind in json.loads((EXAMPLES / "policy-set-25-lists.json").read_text()).items():
        assert http.post("/manage/v1/lists", json={"name": name, "kind": kind}, headers=h).status_code == 201
    r = http.post(
        "/manage/v1/lists/blocked-ips/entries",
        content=b"value\n203.0.113.0/24\n",
        headers={**h, "content-type": "text/csv"},
    )
    assert r.json()["added"] == 1
    http.post("/manage/v1/lists/trusted-accounts/entries", json={"entries": ["vip-1"]}, headers=h)
    assert http.put("/manage/v1/policy-sets/LOGIN/draft", json=doc, headers=h).status_code == 200

    sim = http.post(
        "/manage/v1/policy-sets/LOGIN/simulate",
        headers=h,
        json={
            "request": {
                "inquiryId": "s1",
                "deviceSessionId": "d1",
                "userIp": "203.0.113.50",
                "account": {"id": "a1", "username": "a"},
            }
        },
    )
    out = sim.json()
    assert (out["decision"], out["tags"]) == ("BLOCK", ["BLOCKED_IP", "NEW_DEVICE", "INTERNAL_NETWORK"])
    blocked = next(p for p in out["policies"] if p["name"] == "blocked-ip")
    assert blocked["conditions"][0] == {
        "field": "userIp",
        "operator": "inList",
        "value": "blocked-ips",
        "actual": "203.0.113.50",
        "result": True,
    }

    assert http.post("/manage/v1/policy-sets/LOGIN/publish", headers=h).json()["versionName"] == "v2"
    diff = http.get("/manage/v1/policy-sets/LOGIN/diff", params={"from": "v1", "to": "v2"}, headers=h).json()
    assert len(diff["changes"]["policies"]["added"]) == 24  # new-device was already in v1

    def decide(**kw: object) -> dict[str, object]:
        return dict(http.post("/login/v2", json=login_body(**kw), headers=tenant.headers).json())

    vip = decide(account={"id": "vip-1", "username": "v"}, userIp="8.8.8.8")
    assert (vip["decision"], vip["userSegment"]) == ("ALLOW", "trusted-accounts")
    big = decide(customFields={"cartValue": 1500}, userIp="8.8.8.8")
    assert big["userSegment"] == "high-value" and "BIG_CART" in big["tags"]
    foreign = decide(userIp="81.2.69.160")
    assert foreign["decision"] == "CHALLENGE" and "FOREIGN_IP" in foreign["tags"]
    red = decide(customFields={"riskTier": "red"}, userIp="8.8.8.8")
    assert red["decision"] == "BLOCK"
