"""The operator's policy task in headless Chromium: real decisions made through the API, a policy added in
the editor that blocks a domain, the draft tested against that traffic (the changed count and an example
that opens its decision), the diff read in plain words and line by line, the draft published, further
edits saved, an old version restored, and the draft the operator was editing still there.

At 1440 px and 375 px the policies, diff and version pages scroll no sideways and axe-core finds no
serious or critical violation; each step is screenshotted into artifacts/screenshots/console/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_activity import _decide, _fits
from tests.browser.test_console import a11y, new_client, new_user, sign_in
from tests.browser.test_policy_editor import draft_of

pytestmark = pytest.mark.browser

WIDTHS = (1440, 375)


def _check_widths(page: Page, axe_source: str, name: str) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        _fits(page, width, name)
        a11y(page, axe_source, f"{name}-{width}")
    page.set_viewport_size({"width": 1440, "height": 900})


def _body(n: int, email: str) -> dict[str, object]:
    return {
        "inquiryId": f"walkinq{n}",
        "deviceSessionId": f"walkdev{n}",
        "userIp": "203.0.113.9",
        "person": {"emailAddress": email},
        "account": {"id": f"walk-acct-{n}", "username": f"walker{n}"},
    }


def test_edit_test_publish_and_roll_back_a_policy(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Walk Co")
    # Six real logins on the default set (v1: challenge a new device): three from a throwaway domain.
    throwaway = _decide(site, client, [_body(i, f"walker{i}@mailinator.com") for i in range(3)])
    _decide(site, client, [_body(i, f"walker{i}@example.com") for i in range(3, 6)])
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/policies/LOGIN")
    expect(page.locator("#p0-summary")).to_have_text(
        "Challenge when the device is new for this account; tag NEW_DEVICE."
    )
    expect(page.locator("#s0-summary")).to_contain_text(
        "Applies to every request that no segment above takes"
    )

    # A policy that blocks the throwaway domain, applied by the segment, saved.
    page.get_by_role("button", name="Add policy").click()
    policy = page.get_by_role("group", name=re.compile(r"^Policy 2:"))
    policy.get_by_label("Name", exact=True).fill("block-mailinator")
    policy.get_by_label("Outcome").select_option("BLOCK")
    policy.get_by_label("Field of condition 1").fill("email.domain")
    policy.get_by_label("Value of condition 1").fill("mailinator.com")
    page.get_by_role("group", name=re.compile(r"^Segment 1")).get_by_label("block-mailinator").check()
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    expect(page.locator("#p1-summary")).to_have_text("Block when the email's domain is “mailinator.com”.")
    expect(page.locator("#s0-summary")).to_contain_text("runs new-device, block-mailinator")

    # Tested against the six logins: the three throwaway ones would be blocked.
    page.get_by_label("How many recent decisions").fill("50")
    page.get_by_role("button", name="Test the draft").click()
    result = page.locator("#backtest-result")
    expect(result).to_contain_text("3 of 6 decisions would change")
    expect(page.locator("#backtest-transitions")).to_have_text("CHALLENGE → BLOCK: 3")
    example = page.locator("#backtest-examples").get_by_role("link").first
    expect(page.locator("#backtest-examples").get_by_role("link")).to_have_count(3)
    assert example.inner_text() in {f"walkinq{i}" for i in range(3)}
    expect(page.locator("#backtest-examples")).to_contain_text("draft: new-device, block-mailinator")
    _check_widths(page, axe_source, "policy-walk-backtest")
    example.click()
    expect(page).to_have_url(re.compile(r"/console/activity/(" + "|".join(throwaway) + ")$"))

    # The diff: in plain words and line by line.
    page.goto(f"{site.url}/console/policies/LOGIN")
    page.get_by_role("link", name="What the draft changes").click()
    summary = page.locator("#change-summary")
    expect(summary).to_contain_text("Policy block-mailinator added.")
    expect(summary).to_contain_text("Block when the email's domain is “mailinator.com”.")
    expect(summary).to_contain_text("Segment default changed.")
    lines = page.locator("#line-diff")
    expect(lines.locator("tr.l-added").first).to_be_visible()
    expect(lines.locator("tr.l-added", has_text='"block-mailinator"').first).to_contain_text("+")
    _check_widths(page, axe_source, "policy-walk-diff")

    # Published: v2 is live.
    page.goto(f"{site.url}/console/policies/LOGIN")
    page.get_by_role("button", name="Publish draft").click()
    expect(page.get_by_role("status")).to_contain_text("Published v2")
    expect(page.get_by_text("Live version:")).to_contain_text("v2")

    # The operator goes on editing (a tag on the new policy) and saves, then rolls the live set back to v1.
    page.get_by_role("group", name=re.compile(r"^Policy 2:")).get_by_role("button", name="Add tag").click()
    page.get_by_role("group", name=re.compile(r"^Policy 2:")).get_by_label("Tag 1", exact=True).fill(
        "THROWAWAY"
    )
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    editing = draft_of(site, client)
    assert editing["policies"][1]["tags"] == [{"name": "THROWAWAY", "weight": 0}]

    page.goto(f"{site.url}/console/policies/LOGIN/versions/v1")
    expect(page.locator(".summaries")).to_contain_text("Challenge when the device is new for this account")
    _check_widths(page, axe_source, "policy-walk-version")
    page.get_by_role("button", name="Restore v1").click()
    expect(page.get_by_role("status")).to_contain_text("v1 restored as v3")
    expect(page.get_by_role("status")).to_contain_text("draft is unchanged")
    expect(page.get_by_text("Live version:")).to_contain_text("v3")
    # The draft being edited is still there, with its tag; the live version is v1's document again.
    assert draft_of(site, client) == editing
    expect(page.locator("#p1-summary")).to_have_text(
        "Block when the email's domain is “mailinator.com”; tag THROWAWAY."
    )
    page.goto(f"{site.url}/console/policies/LOGIN/diff?a=v3&b=draft")
    expect(page.locator("#change-summary")).to_contain_text("Policy block-mailinator added.")
    _check_widths(page, axe_source, "policy-walk-diff-after-restore")
