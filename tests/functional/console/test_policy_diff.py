"""The diff page: a change Python's `==` cannot see (a value going from 1 to true) is reported, in plain
words, by name and line by line, with +/− markers; the same document twice is "No change"."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Tenant, publish


def _doc(value: Any) -> dict[str, Any]:
    return {
        "name": "login",
        "segments": [{"name": "default", "policies": ["vip"]}],
        "policies": [
            {
                "name": "vip",
                "outcome": "NO_CHANGE",
                "conditions": [{"field": "customFields.vip", "operator": "equals", "value": value}],
                "tags": [{"name": "VIP", "weight": 1}],
            }
        ],
    }


def _section(page: str, heading_id: str) -> str:
    found = re.search(rf'<h2 id="{heading_id}">.*?</section>', page, re.S)
    assert found is not None, heading_id
    return html.unescape(found.group(0))


def test_a_value_from_1_to_true_is_a_change(http: TestClient, tenant: Tenant, people: Any) -> None:
    publish(http, tenant, _doc(1))  # v2 (v1 is the default set)
    r = http.put("/manage/v1/policy-sets/LOGIN/draft", json=_doc(True), headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    viewer = people("viewer")
    page = viewer.get("/console/policies/LOGIN/diff?a=v2&b=draft")
    assert page.status_code == 200
    text = page.text
    policies = _section(text, "h-policies")
    assert "No change" not in policies and "customFields.vip" not in _section(text, "h-segments")
    assert "conditions" in policies  # the field that changed, by name
    assert "No change." in _section(text, "h-segments")
    short = _section(text, "h-summary")
    assert "Policy vip changed." in short
    assert "Before: Leave the decision as it is when custom field vip is 1; tag VIP." in short
    assert "Now: Leave the decision as it is when custom field vip is yes; tag VIP." in short
    lines = re.findall(
        r'<tr class="l-(added|removed)">.*?<span aria-hidden="true">(.)</span><span class="sr-only">(\w+)</span>'
        r".*?<code>(.*?)</code>",
        text,
        re.S,
    )
    assert [(k, m, sr, html.unescape(c).strip()) for k, m, sr, c in lines] == [
        ("removed", "−", "removed", '"value": 1'),
        ("added", "+", "added", '"value": true'),
    ]
    # The management API's diff names the change too.
    r = http.get("/manage/v1/policy-sets/LOGIN/diff?from=v2&to=draft", headers=tenant.admin_headers)
    assert r.status_code == 200
    assert [c["name"] for c in r.json()["changes"]["policies"]["changed"]] == ["vip"]


def test_the_same_document_is_no_change(http: TestClient, tenant: Tenant, people: Any) -> None:
    publish(http, tenant, _doc("gold"))
    page = people("viewer").get("/console/policies/LOGIN/diff?a=v2&b=draft").text
    assert "No change: v2 and draft are the same." in html.unescape(page)
    assert "The two documents are the same, line for line." in page
    assert 'id="line-diff"' not in page


def test_a_draft_whose_only_change_is_1_to_true_is_saved_and_published(
    http: TestClient, tenant: Tenant
) -> None:
    # Python's `==` holds 1 == True: neither the save nor the "nothing to publish" check may rely on it.
    publish(http, tenant, _doc(1))
    h = tenant.admin_headers
    assert http.put("/manage/v1/policy-sets/LOGIN/draft", json=_doc(True), headers=h).status_code == 200
    draft = http.get("/manage/v1/policy-sets/LOGIN/draft", headers=h).json()
    assert "true" in str(draft).lower() and _value_of(draft) is True
    r = http.post("/manage/v1/policy-sets/LOGIN/publish", headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["versionName"] == "v3" and _value_of(r.json()) is True
    # And back to 1: a new version again.
    assert http.put("/manage/v1/policy-sets/LOGIN/draft", json=_doc(1), headers=h).status_code == 200
    r = http.post("/manage/v1/policy-sets/LOGIN/publish", headers=h)
    assert r.status_code == 201 and _value_of(r.json()) == 1 and _value_of(r.json()) is not True


def _value_of(answer: dict[str, Any]) -> Any:
    doc = answer.get("document") or answer.get("draft") or answer
    return doc["policies"][0]["conditions"][0]["value"]
