"""The branding page in Chromium: the colour picker and its contrast check, and the email, hosted page and SMS
previews following the fields as they change (marked out of date when a value is not valid)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, expect

from passgate.console.branding_preview import contrast_ratio
from tests.browser.conftest import LiveServer
from tests.browser.test_console import a11y, new_client, new_user, sign_in

pytestmark = pytest.mark.browser


def test_contrast_ratio_matches_wcag_examples() -> None:
    assert round(contrast_ratio("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast_ratio("#777777", "#ffffff"), 2) == 4.48  # just below AA for normal text
    assert contrast_ratio("#fff", "#ffffff") == 1.0


def test_change_branding_and_see_it_in_all_three_previews(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Brand Co")
    page = sign_in(browser_context, site, new_user(site, client, "owner"))
    page.goto(f"{site.url}/console/branding")
    email = page.frame_locator('iframe[title="Email preview"]')
    hosted = page.frame_locator('iframe[title="Hosted confirm page preview"]')
    expect(email.locator("body")).to_contain_text("Brand Co")
    a11y(page, axe_source, "branding-previews")

    # Typed, not saved: the previews follow.
    page.get_by_label("Company name", exact=True).fill("Northwind Bank")
    page.get_by_label("Primary colour", exact=True).fill("#7c2d12")
    expect(email.locator("body")).to_contain_text("Northwind Bank", timeout=10_000)
    expect(hosted.locator("h1")).to_be_visible()
    expect(hosted.locator("body")).to_contain_text("Northwind Bank")
    expect(page.locator("#preview-sms")).to_contain_text("Northwind Bank")
    button = hosted.locator("#confirm")
    expect(button).to_have_css("background-color", "rgb(124, 45, 18)")
    expect(page.locator("#b-contrast")).to_contain_text("meets WCAG AA")
    expect(page.locator("#b-picker")).to_have_value("#7c2d12")

    # A colour that is not one: the previews stay, marked out of date, and say why.
    page.get_by_label("Primary colour", exact=True).fill("blue-ish")
    expect(page.locator("#preview-stale")).to_contain_text("out of date", timeout=10_000)
    page.get_by_label("Primary colour", exact=True).fill("#0f766e")
    expect(page.locator("#preview-stale")).to_have_count(0, timeout=10_000)

    # Without the script: the button gives the same previews.
    page.get_by_role("button", name="Preview without saving").click()
    expect(page.get_by_role("heading", name=re.compile("Preview"))).to_contain_text("not saved yet")
    page.get_by_role("button", name="Save branding").click()
    expect(page.get_by_role("status")).to_contain_text("Branding saved")
    expect(email.locator("body")).to_contain_text("Northwind Bank")
    for width in (1440, 375):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        a11y(page, axe_source, f"branding-{width}")
