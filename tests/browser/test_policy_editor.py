"""The policy editor in headless Chromium: a renamed policy keeps the segments that apply it, a policy no
segment applies is pointed out, the diff shows changed links, publishing an unchanged draft makes no
version, and restoring an old version leaves the draft alone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from passgate.policy import services as policy_svc
from tests.browser.conftest import LiveServer
from tests.browser.test_console import a11y, new_client, new_user, sign_in

pytestmark = pytest.mark.browser


def draft_of(site: LiveServer, client_id: str) -> dict:  # type: ignore[type-arg]
    with site.registry.sessions() as session:
        return dict(policy_svc.get_draft(session, client_id, "LOGIN").draft)


def policy_group(page: Page, number: int) -> object:
    return page.get_by_role("group", name=re.compile(rf"^Policy {number}:"))


def save(page: Page) -> None:
    page.get_by_role("button", name="Save draft").last.click()


def test_renaming_a_policy_keeps_its_links(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Rename Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/policies/LOGIN")
    segment = page.get_by_role("group", name=re.compile(r"^Segment 1"))

    # A new policy, linked, saved; then renamed and saved again: the segment follows the new name.
    page.get_by_role("button", name="Add policy").click()
    segment.get_by_label("policy-2").check()
    save(page)
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    assert draft_of(site, client)["segments"][0]["policies"] == ["new-device", "policy-2"]
    renamed = page.get_by_role("group", name=re.compile(r"^Policy 2:"))
    renamed.get_by_label("Name", exact=True).fill("block-red-tier")
    renamed.get_by_label("Outcome").select_option("BLOCK")
    renamed.get_by_label("Field of condition 1").fill("customFields.riskTier")
    renamed.get_by_label("Value of condition 1").fill("red")
    save(page)
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    assert draft_of(site, client)["segments"][0]["policies"] == ["new-device", "block-red-tier"]
    expect(segment.get_by_label("block-red-tier")).to_be_checked()

    # Linked and renamed before the first save: the link follows the name typed.
    page.get_by_role("button", name="Add policy").click()
    segment.get_by_label("policy-3").check()
    page.get_by_role("group", name=re.compile(r"^Policy 3:")).get_by_label("Name", exact=True).fill("tag-x")
    # The segment's choices follow the name as it is typed.
    expect(segment.get_by_label("tag-x")).to_be_checked()
    save(page)
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    assert draft_of(site, client)["segments"][0]["policies"] == ["new-device", "block-red-tier", "tag-x"]

    # A policy that no segment applies is pointed out, at the policy and at the top.
    page.get_by_role("button", name="Add policy").click()
    save(page)
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    expect(page.locator("#draft-warnings")).to_contain_text("policy-4")
    expect(page.get_by_role("group", name=re.compile(r"^Policy 4:"))).to_contain_text("No segment applies")
    a11y(page, axe_source, "policies-unapplied-warning")

    # The diff names the links that changed.
    page.get_by_role("link", name="What the draft changes").click()
    segments = page.locator("#h-segments").locator("xpath=..")
    expect(segments).not_to_contain_text("No change")
    expect(segments).to_contain_text("now applies block-red-tier, tag-x")
    a11y(page, axe_source, "policy-diff-links")

    # Publishing twice: the second publish has nothing to publish.
    page.goto(f"{site.url}/console/policies/LOGIN")
    page.get_by_role("button", name="Publish draft").click()
    expect(page.get_by_role("status")).to_contain_text("Published v2")
    page.get_by_role("button", name="Publish draft").click()
    expect(page.get_by_role("status")).to_contain_text("Nothing to publish")
    expect(page.get_by_role("status")).to_contain_text("v2")

    # Restoring v1 makes it live and keeps the draft (with its four policies) as it was.
    before = draft_of(site, client)
    page.goto(f"{site.url}/console/policies/LOGIN/versions/v1")
    page.get_by_role("button", name="Restore v1").click()
    expect(page.get_by_role("status")).to_contain_text("v1 restored as v3")
    expect(page.get_by_role("status")).to_contain_text("draft is unchanged")
    assert draft_of(site, client) == before
    expect(page.get_by_role("group", name=re.compile(r"^Policy 4:"))).to_be_visible()
