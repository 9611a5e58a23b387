"""The operator's task in the activity explorer, at a desktop width (1440 px) and a phone width (375 px):
look up a blocked login and see why. Nothing scrolls sideways, axe-core finds no serious or critical
violation, and a screenshot of each step lands in artifacts/screenshots/console/."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from passgate.auth.services import create_api_key
from passgate.db import transaction
from tests.browser.conftest import LiveServer
from tests.browser.test_console import a11y, new_client, new_user, sign_in
from tests.browser.test_console_widths import _admin, _wide_elements

pytestmark = pytest.mark.browser

WIDTHS = (1440, 375)
BLOCKED_EMAIL = "mallory.attacker@blocked.example"
BLOCKING_SET = {
    "name": "block-bad-domains",
    "segments": [{"name": "default", "mfaEnabled": True, "policies": ["block-bad-domain"]}],
    "policies": [
        {
            "name": "block-bad-domain",
            "outcome": "BLOCK",
            "conditions": [{"field": "email.domain", "operator": "equals", "value": "blocked.example"}],
            "tags": [{"name": "BAD_DOMAIN", "weight": 80}],
        }
    ],
}


def _decide(site: LiveServer, client_id: str, bodies: list[dict[str, Any]]) -> list[str]:
    with transaction(site.registry.sessions) as session:
        secret = create_api_key(session, client_id, [], site.registry.clock.now()).secret
    ids = []
    with httpx.Client(base_url=site.url) as api:
        token = api.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        ).json()["access_token"]
        for body in bodies:
            r = api.post("/login/v2", headers={"Authorization": f"Bearer {token}"}, json=body)
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-correlation-id"])
    return ids


def _fits(page: Page, width: int, what: str) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{width} px {what}: {overflow} px sideways, {_wide_elements(page, width)}"


def test_look_up_a_blocked_login_and_see_why(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Activity Co")
    page = sign_in(browser_context, site, new_user(site, client, "viewer"))
    api = _admin(site, client)
    try:
        r = api.put("/manage/v1/policy-sets/LOGIN/draft", json=BLOCKING_SET)
        assert r.status_code == 200, r.text
        r = api.post("/manage/v1/policy-sets/LOGIN/publish")
        assert r.status_code == 201, r.text
    finally:
        api.close()
    long_account = "acct-" + "x" * 120  # a long value wraps instead of widening the page
    blocked, *_ = _decide(
        site,
        client,
        [
            {
                "inquiryId": "inqblocked1",
                "deviceSessionId": "devblocked1",
                "userIp": "203.0.113.7",
                "person": {"name": {"first": "Mallory", "last": "Attacker"}, "emailAddress": BLOCKED_EMAIL},
                "account": {"id": long_account, "username": "mallory", "userPassword": "hash-of-a-password"},
            },
            *[
                {
                    "inquiryId": f"inqok{i}",
                    "deviceSessionId": f"devok{i}",
                    "person": {"emailAddress": f"jo{i}@example.com"},
                    "account": {"id": f"acct-ok{i}", "username": f"jo{i}"},
                    "strategy": {"mfaTemplateName": "email-link"},
                }
                for i in range(3)
            ],
        ],
    )

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        # From the overview: the blocked outcome leads into the explorer, pre-filtered.
        page.goto(f"{site.url}/console/overview")
        _fits(page, width, "overview")
        a11y(page, axe_source, f"activity-w{width}-overview")  # the chart's bars are links now
        bar = page.locator('svg a[href*="decision=BLOCK"]')
        expect(bar).to_have_count(1)
        assert "to=" in (bar.get_attribute("href") or "")
        page.get_by_role("link", name=re.compile(r"^BLOCK \(1\)$")).click()
        page.wait_for_url(re.compile(r"/console/activity\?.*decision=BLOCK"))
        expect(page.get_by_role("heading", name="Activity", level=1)).to_be_visible()
        expect(page.get_by_label("Decision", exact=True)).to_have_value("BLOCK")
        rows = page.locator("table.cards tbody tr")
        expect(rows).to_have_count(1)
        _fits(page, width, "activity filtered from the overview")
        a11y(page, axe_source, f"activity-w{width}-from-overview")

        # Or by the person's email address, from the explorer's own search.
        page.get_by_role("link", name="Activity", exact=True).click()
        expect(page.locator("table.cards tbody tr")).to_have_count(4)
        page.get_by_label("Email", exact=True).fill(BLOCKED_EMAIL)
        page.get_by_role("button", name="Search").click()
        expect(page.locator("table.cards tbody tr")).to_have_count(1)
        expect(page.locator("table.cards")).to_contain_text("BLOCK")
        _fits(page, width, "activity searched by email")
        a11y(page, axe_source, f"activity-w{width}-by-email")

        # The decision page: the policy that fired, its condition's actual value, the request masked.
        page.locator("table.cards tbody tr").first.get_by_role("link").first.click()
        page.wait_for_url(re.compile(rf"/console/activity/{blocked}$"))
        expect(page.get_by_role("heading", level=1)).to_contain_text("Decision")
        why = page.locator("section", has=page.get_by_role("heading", name="Why"))
        expect(why).to_contain_text("Re-evaluated now")
        expect(why).to_contain_text("block-bad-domain (BLOCK): fired")
        expect(why).to_contain_text("actual blocked.example: holds")
        expect(page.locator("dl.facts").first).to_contain_text("BAD_DOMAIN (weight 80)")
        content = page.content()
        assert BLOCKED_EMAIL not in content and "mallory.attacker" not in content
        assert "hash-of-a-password" not in content and "userPassword" not in content
        expect(page.get_by_text("This decision started no MFA session.")).to_be_visible()
        _fits(page, width, "decision page")
        a11y(page, axe_source, f"activity-w{width}-decision")


SEGMENTED_SET = {
    "name": "segmented",
    "segments": [
        {
            "name": "vip",
            "conditions": [{"field": "account.id", "operator": "equals", "value": "acct-vip"}],
            "policies": ["vip-block"],
        },
        {
            "name": "risky",
            "mfaEnabled": True,
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "high"}],
            "policies": ["challenge-risky"],
        },
        {"name": "default", "policies": ["default-block"]},
    ],
    "policies": [
        {"name": "vip-block", "outcome": "BLOCK", "cel": "true", "tags": [{"name": "VIP", "weight": 5}]},
        {
            "name": "challenge-risky",
            "outcome": "CHALLENGE",
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "high"}],
            "tags": [{"name": "RISKY", "weight": 20}],
        },
        {
            "name": "default-block",
            "outcome": "BLOCK",
            "conditions": [{"field": "customFields.risk", "operator": "equals", "value": "extreme"}],
        },
    ],
}


def test_the_why_lists_every_segment_and_folds_the_policies_not_evaluated(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Segments Co")
    page = sign_in(browser_context, site, new_user(site, client, "viewer"))
    api = _admin(site, client)
    try:
        r = api.put("/manage/v1/policy-sets/LOGIN/draft", json=SEGMENTED_SET)
        assert r.status_code == 200, r.text
        assert api.post("/manage/v1/policy-sets/LOGIN/publish").status_code == 201
    finally:
        api.close()
    [decided] = _decide(
        site,
        client,
        [
            {
                "inquiryId": "inqrisky1",
                "deviceSessionId": "devrisky1",
                "person": {"emailAddress": "risky@example.com"},
                "account": {"id": "acct-risky", "username": "risky"},
                "customFields": {"risk": "high"},
            }
        ],
    )
    page.goto(f"{site.url}/console/activity/{decided}")
    segments = page.locator("ol.why-segments > li")
    expect(segments).to_have_count(3)
    expect(segments.nth(0)).to_contain_text("vip: did not match")
    expect(segments.nth(0)).to_contain_text("actual acct-risky: does not hold")
    expect(segments.nth(1)).to_contain_text("risky: chosen")
    expect(segments.nth(2)).to_contain_text(
        "default (default): not evaluated (an earlier segment was chosen)"
    )
    expect(page.locator("ul.why-policies > li")).to_have_count(1)
    expect(page.locator("ul.why-policies")).to_contain_text(
        "challenge-risky (CHALLENGE): fired · tags RISKY (weight 20)"
    )
    # The other segments' policies are folded away until asked for.
    others = page.locator("details.why-others")
    summary = others.locator("summary")
    expect(summary).to_have_text("2 policies not evaluated (segment not chosen)")
    vip = others.locator("li[data-policy='vip-block']")
    expect(vip).to_be_hidden()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        _fits(page, width, "decision page, folded")
        a11y(page, axe_source, f"decision-why-w{width}", strict=True)
    summary.click()
    expect(vip).to_be_visible()
    expect(vip).to_contain_text(
        "vip-block (BLOCK): not evaluated (segment not chosen) · in vip · tags VIP (weight 5)"
    )
    _fits(page, WIDTHS[-1], "decision page, unfolded")
    a11y(page, axe_source, "decision-why-unfolded-w375", strict=True)
