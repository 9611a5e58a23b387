"""The policy editor's typed rule builder in headless Chromium: the operators and the value control follow the
field's type as it changes, a list check picks one of the client's lists, Publish is off (and says why)
while the form differs from the saved draft, leaving with unsaved edits asks first, and Add condition far
down the page comes back with the new field focused and in view. Screenshots at 1440 and 375 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from passgate.db import transaction
from passgate.policy import lists as list_svc
from tests.browser.conftest import LiveServer
from tests.browser.test_console import a11y, new_client, new_user, sign_in

pytestmark = pytest.mark.browser

NOTE = "Save the draft first — Publish publishes the saved draft."


def make_list(site: LiveServer, client_id: str, name: str, kind: str) -> None:
    with transaction(site.registry.sessions) as session:
        list_svc.create_list(session, client_id, name, kind, None, site.registry.clock.now())


def choices(select: Locator) -> list[str]:
    return [t.strip() for t in select.locator("option").all_text_contents()]


def policy(page: Page, number: int) -> Locator:
    return page.get_by_role("group", name=re.compile(rf"^Policy {number}:"))


def retype(field: Locator, text: str) -> None:
    """Replace a field's text with key presses, as a person does (a user gesture, input events)."""
    field.click()
    field.press("Control+a")
    field.press_sequentially(text)


def test_operators_and_values_follow_the_field_and_publish_waits_for_a_save(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Typed Rules Co")
    make_list(site, client, "bad-domains", "emailDomain")
    make_list(site, client, "office-ips", "ip")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/policies/LOGIN")
    first = policy(page, 1)
    field = first.get_by_label("Field of condition 1")
    operator = first.get_by_label("Operator of condition 1")
    value = first.get_by_label("Value of condition 1")
    publish = page.get_by_role("button", name="Publish draft")
    note = page.locator("#dirty-note")

    # The saved yes/no condition: two operators, a true/false choice; Publish is on.
    assert choices(operator) == ["equals", "does not equal"]
    assert choices(value) == ["true", "false"]
    expect(publish).to_be_enabled()
    expect(note).to_have_text("")

    # A number field: the comparisons, and a number input.
    retype(field, "ip.version")
    expect(operator.locator("option")).to_have_count(8)
    assert choices(operator) == ["equals", "does not equal", "is one of", "is not one of", ">", "≥", "<", "≤"]
    expect(value).to_have_attribute("type", "number")
    # The form now differs from the saved draft: Publish is off, and the note says why.
    expect(publish).to_be_disabled()
    expect(note).to_have_text(NOTE)
    expect(publish).to_have_attribute("aria-describedby", "dirty-note")
    expect(note).to_have_attribute("aria-live", "polite")

    # A text field: every operator; "is in list" picks one of the client's lists.
    retype(field, "email.domain")
    expect(operator.locator("option")).to_have_count(13)
    operator.select_option("inList")
    expect(value).to_have_js_property("tagName", "SELECT")
    assert choices(value) == ["Choose a list", "bad-domains", "office-ips"]
    value.select_option("bad-domains")
    # "is one of" takes comma-separated values and says so.
    operator.select_option("in")
    expect(value).to_have_js_property("tagName", "INPUT")
    expect(value).to_have_accessible_description(re.compile("Separate values with commas"))
    a11y(page, axe_source, "policy-editor-typed-rule")

    # Back to the saved condition: the form matches the saved draft again, and Publish is back on.
    retype(field, "device.seenForAccount")
    expect(operator.locator("option")).to_have_count(2)
    operator.select_option("equals")
    value.select_option("false")
    expect(publish).to_be_enabled()
    expect(note).to_have_text("")

    # Saved with a list check: the server renders the same controls for the saved state.
    retype(field, "email.domain")
    operator.select_option("notInList")
    value.select_option("office-ips")
    expect(publish).to_be_disabled()
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    expect(policy(page, 1).get_by_label("Value of condition 1")).to_have_value("office-ips")
    expect(policy(page, 1).get_by_label("Operator of condition 1")).to_have_value("notInList")
    expect(page.get_by_role("button", name="Publish draft")).to_be_enabled()


def test_leaving_with_unsaved_edits_asks_and_saving_does_not(
    live_server: LiveServer, browser_context: BrowserContext
) -> None:
    site = live_server
    client = new_client(site, "Guard Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.type))  # the context's handler accepts them
    page.goto(f"{site.url}/console/policies/LOGIN")

    # Unchanged: leaving asks nothing.
    page.get_by_role("link", name="Lists").first.click()
    page.wait_for_url(re.compile(r"/console/lists$"))
    assert dialogs == []

    # Edited, then a link: the browser asks first (accepted here, so the page is left).
    page.goto(f"{site.url}/console/policies/LOGIN")
    retype(page.get_by_label("Set name"), "login-edited")
    page.get_by_role("link", name="Lists").first.click()
    page.wait_for_url(re.compile(r"/console/lists$"))
    assert dialogs == ["beforeunload"]

    # Edited, then saved: the form's own submit does not ask, and once saved leaving asks nothing.
    page.goto(f"{site.url}/console/policies/LOGIN")
    retype(page.get_by_label("Set name"), "login-saved")
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    page.get_by_role("link", name="Lists").first.click()
    page.wait_for_url(re.compile(r"/console/lists$"))
    assert dialogs == ["beforeunload"]

    # A part added by a button is not saved yet: leaving that page asks too.
    page.goto(f"{site.url}/console/policies/LOGIN")
    page.get_by_role("button", name="Add policy").click()
    expect(policy(page, 2)).to_be_visible()
    expect(page.get_by_role("button", name="Publish draft")).to_be_disabled()
    page.reload()
    assert dialogs == ["beforeunload", "beforeunload"]


def test_add_condition_far_down_keeps_the_place_and_the_focus(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Long Set Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/policies/LOGIN")
    for n in range(2, 6):
        page.get_by_role("button", name="Add policy").click()
        # The new policy's name has the focus.
        expect(policy(page, n).get_by_label("Name", exact=True)).to_be_focused()
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")

    last = policy(page, 5)
    last.get_by_role("button", name="Add condition").click()
    new_field = policy(page, 5).get_by_label("Field of condition 2")
    expect(new_field).to_be_focused()
    expect(new_field).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0

    # Removing it puts the focus on its neighbour, the condition before it, in view.
    policy(page, 5).get_by_role("button", name="Remove condition 2").click()
    neighbour = policy(page, 5).get_by_label("Field of condition 1")
    expect(neighbour).to_be_focused()
    expect(neighbour).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0

    # The editor at a desktop and a phone width: nothing scrolls sideways, no axe violation.
    for width in (1440, 375):
        page.set_viewport_size({"width": width, "height": 900})
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, f"{width} px: {wide} px of horizontal scroll"
        a11y(page, axe_source, f"policy-editor-{width}")


def test_without_javascript_the_server_places_the_focus_and_checks_the_operator(
    live_server: LiveServer, chromium: Browser
) -> None:
    site = live_server
    client = new_client(site, "No Script Co")
    context = chromium.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 700})
    context.set_default_timeout(8000)
    try:
        page = sign_in(context, site, new_user(site, client, "analyst"))
        page.goto(f"{site.url}/console/policies/LOGIN")
        for n in range(2, 5):
            page.get_by_role("button", name="Add policy").click()
            expect(policy(page, n)).to_be_visible()
        # Each button's page comes back unsaved: Publish is off and says why.
        expect(page.get_by_role("button", name="Publish draft")).to_be_disabled()
        expect(page.locator("#dirty-note")).to_have_text(NOTE)

        policy(page, 4).get_by_role("button", name="Add condition").click()
        new_field = policy(page, 4).get_by_label("Field of condition 2")
        expect(new_field).to_be_focused()
        expect(new_field).to_be_in_viewport()
        assert page.evaluate("window.scrollY") > 0

        # The operator list is the saved field's; a field changed without a script keeps the old list, so
        # the server says what fits when the draft is saved.
        new_field.fill("ip.version")
        policy(page, 4).get_by_label("Operator of condition 2").select_option("notEquals")
        policy(page, 4).get_by_label("Value of condition 2").select_option("true")
        page.get_by_role("button", name="Save draft").last.click()
        error = page.locator("#e-p3-c1-value")
        expect(error).to_contain_text("ip.version is a number")
        expect(policy(page, 4).get_by_label("Value of condition 2")).to_have_attribute("aria-invalid", "true")
        # What was chosen comes back as it was, in a text input (it is no number), for the person to fix.
        expect(policy(page, 4).get_by_label("Value of condition 2")).to_have_value("true")
        expect(policy(page, 4).get_by_label("Operator of condition 2")).to_have_value("notEquals")
    finally:
        context.close()
