"""The template editor's live preview when the text has errors, in headless Chromium: the last good preview
stays, dimmed and marked out of date, the error sits beside its field in plain words and is announced once;
fixed, the mark goes and the preview follows. Without JavaScript a refused save keeps a marked preview too.
Screenshots land in artifacts/screenshots/console/; axe-core finds no serious or critical violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_console import SHOTS, a11y, new_client, new_user, sign_in
from tests.browser.test_console_widths import _wide_elements

pytestmark = pytest.mark.browser

STALE = "Preview out of date — fix the errors below"
# Counts what the live region is given to say (each change is one announcement).
COUNT_ANNOUNCEMENTS = """() => {
  window.__said = [];
  new MutationObserver(() => window.__said.push(document.getElementById('preview-status').textContent))
    .observe(document.getElementById('preview-status'), {childList: true, characterData: true, subtree: true});
}"""


def test_a_broken_template_marks_the_preview_stale_until_it_is_fixed(
    live_server: LiveServer, browser_context: BrowserContext, chromium: Browser, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Stale Preview Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/templates/sms-code")
    sms = page.get_by_label("SMS text")
    stale = page.locator("#preview-stale")
    body = page.locator("#preview-body")
    info = page.locator("#preview-sms-info")
    expect(stale).to_be_hidden()

    sms.fill("Good code {{ code }}")
    expect(page.locator("#preview-sms")).to_contain_text("Good code ")
    expect(info).to_contain_text("1 segment")
    page.evaluate(COUNT_ANNOUNCEMENTS)

    # Broken: the last good preview stays, dimmed and marked; its count is no longer shown as current.
    sms.fill("Broken code {{ code ")
    expect(stale).to_be_visible()
    expect(stale).to_have_text(STALE)
    expect(body).to_have_class("preview-body is-stale")
    expect(body).to_have_attribute("aria-describedby", "preview-stale")
    expect(page.locator("#preview-sms")).to_contain_text("Good code ")
    expect(info).to_have_text("Not counted: the text has errors.")
    # Beside the field, in plain words, tied to it for a screen reader.
    error = page.locator("#part-sms-error")
    expect(error).to_have_text("line 1: A {{ … }} is not closed: end it with }}.")
    expect(sms).to_have_attribute("aria-invalid", "true")
    expect(sms).to_have_attribute("aria-describedby", "part-sms-error")
    expect(page.locator("#preview-errors")).to_contain_text("SMS text, line 1: A {{ … }} is not closed")
    assert "syntax error" not in page.content()
    said_first = "Preview out of date: 1 error. SMS text, line 1: A {{ … }} is not closed: end it with }}."
    expect(page.locator("#preview-status")).to_have_text(said_first)
    a11y(page, axe_source, "template-editor-stale", strict=True)

    # More typing with the same error says nothing new.
    sms.press("End")
    sms.type("   ")
    page.wait_for_timeout(1200)  # past the typing pause and the preview's answer
    expect(error).to_be_visible()
    said = page.evaluate("window.__said")
    assert [s for s in said if s] == [said_first]

    # At a phone's width the marked preview still fits.
    page.set_viewport_size({"width": 375, "height": 900})
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, _wide_elements(page, 375)
    a11y(page, axe_source, "template-editor-stale-w375", strict=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # Fixed: the mark goes, the preview and its count follow the text, the error and its link go.
    sms.fill("Fixed code {{ code }} ✓")
    expect(stale).to_be_hidden()
    expect(body).to_have_class("preview-body")
    expect(page.locator("#preview-sms")).to_contain_text("Fixed code ")
    expect(info).to_contain_text("UCS-2")
    expect(info).to_contain_text("1 segment")
    expect(page.locator("#part-sms-error")).to_have_count(0)
    expect(sms).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#preview-status")).to_have_text("The preview is up to date.")
    assert [s for s in page.evaluate("window.__said") if s][-1] == "The preview is up to date."

    # An email template: the frame keeps the last good email, titled as out of date.
    page.goto(f"{site.url}/console/templates/email-link")
    page.get_by_label("Subject").fill("Hello {{ person.name.first }}")
    expect(page.locator("#preview-subject")).to_have_text("Hello Alexandra")
    page.get_by_label("HTML body").fill('<a href="{{ link }}">Sign in</a>\n{% if %}')
    expect(page.locator("#preview-stale")).to_be_visible()
    expect(page.locator("#preview-frame")).to_have_attribute("title", "Email preview (out of date)")
    expect(page.locator("#part-html-error")).to_contain_text("line 2")
    expect(page.locator("#preview-subject")).to_have_text("Hello Alexandra")
    page.get_by_label("HTML body").fill('<a href="{{ link }}">Sign in</a>')
    expect(page.locator("#preview-stale")).to_be_hidden()
    expect(page.locator("#preview-frame")).to_have_attribute("title", "Email preview")


def test_without_javascript_a_refused_save_keeps_a_marked_preview(
    live_server: LiveServer, browser_context: BrowserContext, chromium: Browser, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "No Script Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/templates/sms-code")
    page.get_by_label("SMS text").fill("Saved code {{ code }}")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")

    nojs = chromium.new_context(java_script_enabled=False, viewport={"width": 375, "height": 900})
    try:
        nojs.add_cookies(browser_context.cookies())
        plain = nojs.new_page()
        plain.goto(f"{site.url}/console/templates/sms-code")
        plain.get_by_label("SMS text").fill("Saved code {{ code }} {% for x in values %}")
        plain.get_by_role("button", name="Save").click()
        expect(plain.get_by_role("alert")).to_contain_text("see the field marked below")
        expect(plain.locator("#preview-stale")).to_have_text(STALE)
        expect(plain.locator("#preview-sms")).to_contain_text("Saved code ")
        expect(plain.locator("#preview-sms-info")).to_have_text("Not counted: the text has errors.")
        expect(plain.locator("#part-sms-error")).to_have_text(
            "line 1: A tag is not closed: add {% endfor %} after it."
        )
        overflow = plain.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, _wide_elements(plain, 375)
        plain.screenshot(path=str(SHOTS / "template-save-refused-nojs-w375.png"), full_page=True)
    finally:
        nojs.close()
