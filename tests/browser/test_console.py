"""The console in headless Chromium against a real server: sign-in with the email-link step, each page's
main action, roles and tenant isolation. Every page visited is screenshotted into
artifacts/screenshots/console/ and checked with axe-core: no serious or critical violation."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from passgate.auth.services import create_api_key, create_client
from passgate.console.routes.common import auth_service
from passgate.db import transaction
from passgate.messaging.models import DevInboxMessage
from tests.browser.conftest import LiveServer
from tests.servers import HttpReceiver, Recorded

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots" / "console"
PASSWORD = "a long enough console password"
_n = iter(range(1, 10_000))


def new_client(site: LiveServer, name: str) -> str:
    with transaction(site.registry.sessions) as session:
        return create_client(session, name, "US", False, site.registry.clock.now()).id


def new_user(site: LiveServer, client_id: str, role: str) -> str:
    email = f"{role}{next(_n)}.{client_id[-6:]}@example.com"
    with transaction(site.registry.sessions) as session:
        auth_service(site.registry).create_user(
            session, client_id, email, PASSWORD, role, site.registry.clock.now()
        )
    return email


def inbox_link(site: LiveServer, email: str, after: int = 0, timeout: float = 15.0) -> tuple[str, int]:
    """The newest sign-in link the worker delivered to this address (the dev inbox)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with site.registry.sessions() as session:
            row = session.scalars(
                select(DevInboxMessage)
                .where(DevInboxMessage.destination == email, DevInboxMessage.id > after)
                .order_by(DevInboxMessage.id.desc())
            ).first()
        if row is not None and row.link:
            return str(row.link), int(row.id)
        time.sleep(0.1)
    raise AssertionError(f"no sign-in email reached {email}")


def a11y(page: Page, axe: str, name: str, strict: bool = False) -> None:
    """Screenshot the page, then run axe-core in it: no serious or critical violation is allowed (with
    `strict`, no violation at all, whatever its impact).

    The email previews' sandboxed iframes are left out: they hold the client's email, not the console, and
    a frame without scripts cannot answer axe (which would wait a minute for it)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if page.evaluate("typeof axe") != "object":
        page.evaluate(axe)  # through DevTools: the console's CSP (scripts from 'self' only) stays on
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run({exclude: [['iframe']]},
                                {resultTypes: ['violations'], iframes: false, preload: false})).violations
             .map(v => ({id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"""
    )
    bad = [v for v in violations if strict or v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {bad}"


def sign_in(
    context: BrowserContext, site: LiveServer, email: str, axe: str | None = None, shots: bool = False
) -> Page:
    """Password, then the email link when the browser is new; ends on the overview."""
    page = context.new_page()
    page.goto(f"{site.url}/console")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if "/check-email" in page.url:
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
        if axe and shots:
            a11y(page, axe, "sign-in-check-email")
        link, _ = inbox_link(site, email)
        mail = context.new_page()
        mail.goto(link)
        expect(mail.get_by_role("button", name="Confirm")).to_be_visible()
        if axe and shots:
            mail.screenshot(path=str(SHOTS / "sign-in-email-link-confirm.png"), full_page=True)
        mail.get_by_role("button", name="Confirm").click()
        # On the device that typed the password, confirming finishes the sign-in at once.
        mail.wait_for_url(re.compile(r"/console/overview$"))
        expect(mail.get_by_role("status")).to_contain_text("Signed in")
        mail.close()
        page.reload()
    page.wait_for_url(re.compile(r"/console/overview"))
    return page


def test_sign_in_wrong_password_lockout_and_email_link(
    live_server: LiveServer, browser_context: BrowserContext, chromium: Browser, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Sign-in Co")
    email = new_user(site, client, "owner")
    locked = new_user(site, client, "viewer")

    page = browser_context.new_page()
    page.goto(f"{site.url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    a11y(page, axe_source, "sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    a11y(page, axe_source, "sign-in-wrong-password")

    # Five tries per email in 15 minutes; the sixth is refused even with the right password.
    for _ in range(5):
        page.get_by_label("Email").fill(locked)
        page.get_by_label("Password").fill("wrong guess")
        page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Email").fill(locked)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Sign-in is locked")
    a11y(page, axe_source, "sign-in-locked")
    page.close()

    # A new device: the password, then the link from the email.
    page = sign_in(browser_context, site, email, axe_source, shots=True)
    a11y(page, axe_source, "overview")

    # Signed out, the same browser is remembered: the password alone signs in.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    page.goto(f"{site.url}/console/keys")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/keys$"))

    # Another browser is a new device again, and "This wasn't me" stops that sign-in.
    _, earlier = inbox_link(site, email)  # the first sign-in's email
    other = chromium.new_context()
    try:
        stranger = other.new_page()
        stranger.goto(f"{site.url}/console/sign-in")
        stranger.get_by_label("Email").fill(email)
        stranger.get_by_label("Password").fill(PASSWORD)
        stranger.get_by_role("button", name="Sign in").click()
        expect(stranger).to_have_url(re.compile(r"/check-email$"))
        link, _ = inbox_link(site, email, after=earlier)
        mail = browser_context.new_page()
        mail.goto(link)
        mail.get_by_role("button", name="This wasn't me").click()
        stranger.reload()
        expect(stranger.get_by_role("heading", name="This sign-in was stopped")).to_be_visible()
    finally:
        other.close()


def test_templates_create_preview_save_errors_and_test_send(
    live_server: LiveServer, browser_context: BrowserContext, chromium: Browser, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Template Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.get_by_role("link", name="Templates").click()
    a11y(page, axe_source, "templates")

    page.get_by_label("Name").fill("acme-login")
    page.get_by_role("button", name="Start editing").click()
    expect(page.get_by_role("heading", name="New template")).to_be_visible()
    # The live preview follows the typing (the first-party script and the preview API).
    page.get_by_label("Subject").fill("Sign in to Acme, {{ person.name.first }}")
    expect(page.locator("#preview-subject")).to_have_text("Sign in to Acme, Alexandra")
    # The email itself is in the iframe's srcdoc (Playwright is kept out of the sandboxed frame: reaching
    # into a frame that may run no script stalls it).
    srcdoc = page.evaluate("document.getElementById('preview-frame').srcdoc")
    assert "/v/TEST-SAMPLE-LINK" in srcdoc and "Template Co" in srcdoc
    # Sandboxed without any allowance: no scripts, no same-origin access, no navigation of the console.
    assert page.evaluate("document.getElementById('preview-frame').getAttribute('sandbox')") == ""
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Template acme-login saved")
    a11y(page, axe_source, "template-editor-email")

    # A save error names its line.
    html = page.get_by_label("HTML body")
    html.fill('<p>Hello</p>\n<p>\n<a href="{{ link }}">Confirm</a> {% if %}\n</p>')
    page.get_by_role("button", name="Save").click()
    # Said once, beside the field, in words (no internal path such as locales.en.html).
    expect(page.get_by_role("alert")).to_contain_text("see the field marked below")
    expect(page.get_by_role("alert")).not_to_contain_text("locales.")
    expect(page.locator("#part-html-error")).to_contain_text("line 3")
    a11y(page, axe_source, "template-save-error")

    # A test send goes through the outbox to the dev inbox.
    page.goto(f"{site.url}/console/templates/acme-login")
    page.get_by_label("Email address").fill("qa@example.com")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_contain_text("Test message queued")
    inbox_link(site, "qa@example.com")

    # The SMS editor counts encoding and segments; without JavaScript the Preview button does it.
    nojs = chromium.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        nojs.add_cookies(browser_context.cookies())
        sms = nojs.new_page()
        sms.goto(f"{site.url}/console/templates/sms-code")
        sms.get_by_label("SMS text").fill("Your code: {{ code }} 🔐 " + "x" * 60)
        sms.get_by_role("button", name="Preview").click()
        expect(sms.locator("#preview-sms-info")).to_contain_text("UCS-2")
        expect(sms.locator("#preview-sms-info")).to_contain_text("2 segments")
        # axe needs timers, which a page without JavaScript does not run: checked below with them on.
        sms.screenshot(path=str(SHOTS / "template-editor-sms-nojs.png"), full_page=True)
    finally:
        nojs.close()
    page.goto(f"{site.url}/console/templates/sms-code")
    a11y(page, axe_source, "template-editor-sms")


def test_policies_publish_simulate_versions_and_lists(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Policy Co")
    page = sign_in(browser_context, site, new_user(site, client, "analyst"))
    page.goto(f"{site.url}/console/policies/LOGIN")
    a11y(page, axe_source, "policies")

    page.get_by_role("button", name="Add policy").click()
    policy = page.get_by_role("group", name=re.compile(r"^Policy 2"))
    policy.get_by_label("Name", exact=True).fill("block-red-tier")
    policy.get_by_label("Outcome").select_option("BLOCK")
    policy.get_by_label("Field of condition 1").fill("customFields.riskTier")
    policy.get_by_label("Operator of condition 1").select_option("equals")
    policy.get_by_label("Value of condition 1").fill("red")
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    page.get_by_role("group", name=re.compile(r"^Segment 1")).get_by_label("block-red-tier").check()
    page.get_by_role("button", name="Save draft").last.click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    page.get_by_role("button", name="Publish draft").click()
    expect(page.get_by_role("status")).to_contain_text("Published v2")

    page.get_by_label("Against", exact=True).select_option("v2")
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#simulation")).to_contain_text("Decision: BLOCK")
    expect(page.locator("#simulation")).to_contain_text("block-red-tier")
    a11y(page, axe_source, "policies-simulation")

    page.get_by_role("link", name="v1").first.click()
    expect(page.get_by_role("heading", name="Version v1")).to_be_visible()
    a11y(page, axe_source, "policy-version")
    page.get_by_role("link", name=re.compile("Compare with v2")).click()
    expect(page.get_by_text("Added: block-red-tier")).to_be_visible()
    a11y(page, axe_source, "policy-diff")
    page.goto(f"{site.url}/console/policies/LOGIN/versions/v1")
    page.get_by_role("button", name="Restore v1").click()
    expect(page.get_by_role("status")).to_contain_text("v1 restored as v3")

    page.get_by_role("link", name="Lists").first.click()
    page.get_by_label("Name").fill("blocked-domains")
    page.get_by_label("Holds").select_option("emailDomain")
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("heading", name="List blocked-domains")).to_be_visible()
    page.get_by_label(re.compile("CSV file")).set_input_files(
        {"name": "domains.csv", "mimeType": "text/csv", "buffer": b"value\nmailinator.com\nnot a domain\n"}
    )
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_contain_text("1 added")
    expect(page.get_by_role("status")).to_contain_text("line 3")
    a11y(page, axe_source, "list")
    page.goto(f"{site.url}/console/lists")
    a11y(page, axe_source, "lists")


def _decision(site: LiveServer, client_id: str) -> None:
    with transaction(site.registry.sessions) as session:
        created = create_api_key(session, client_id, [], site.registry.clock.now())
        secret = created.secret
    with httpx.Client(base_url=site.url) as api:
        token = api.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        ).json()["access_token"]
        r = api.post(
            "/login/v2",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "inquiryId": f"inq{next(_n)}",
                "deviceSessionId": f"dev{next(_n)}",
                "person": {"emailAddress": "jo@example.com"},
                "account": {"id": "acct-1", "username": "jo"},
                "strategy": {"mfaTemplateName": "email-link"},
            },
        )
        assert r.status_code == 200, r.text


def test_webhooks_keys_settings_branding(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Owner Co")
    page = sign_in(browser_context, site, new_user(site, client, "owner"))
    answers = {"status": 500}

    def respond(_: Recorded) -> tuple[int, dict[str, str], bytes]:
        return answers["status"], {}, b"receiver says so"

    receiver = HttpReceiver(responder=respond).start()
    try:
        page.goto(f"{site.url}/console/webhooks")
        page.get_by_label("URL").fill(f"{receiver.url}/hooks")
        page.get_by_label("standard-webhooks").check()
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.locator("#new-secret")).to_have_text(re.compile(r"^whsec_"))
        a11y(page, axe_source, "webhooks")

        _decision(site, client)  # Decision.Created, and the challenge's MFA.StatusUpdate events
        page.get_by_role("link", name="Open the endpoint").click()
        for _ in range(100):
            page.reload()
            if page.locator(".deliveries .badge", has_text="FAILED").count():
                break
            time.sleep(0.2)
        expect(page.locator(".deliveries .badge", has_text="FAILED").first).to_be_visible()
        expect(page.locator(".deliveries").first).to_contain_text("500")
        assert len(receiver.requests) >= 2  # the first try and its retry, to the real receiver

        # Health at the top says what is wrong.
        expect(page.locator("#h-last-error")).to_contain_text("HTTP 500")
        # One delivery: its payload and every try, with the receiver's answer.
        # Open a delivery that failed (the newest row may be a later event not tried yet).
        failed_row = page.locator(".deliveries li", has=page.locator(".badge", has_text="FAILED"))
        failed_row.locator("a").first.click()
        expect(page.get_by_role("heading", name=re.compile("delivery$"))).to_be_visible()
        expect(page.locator("pre.payload")).to_contain_text('"eventType"')
        expect(page.locator("table.cards")).to_contain_text("receiver says so")
        a11y(page, axe_source, "webhook-delivery")
        page.go_back()

        answers["status"] = 200
        page.get_by_role("button", name="Send every failed or waiting delivery now").click()
        expect(page.get_by_role("status")).to_contain_text("sent again now")
        for _ in range(100):
            page.reload()
            if not page.locator(".deliveries .badge", has_text=re.compile("FAILED|PENDING")).count():
                break
            time.sleep(0.2)
        expect(page.locator(".deliveries .badge", has_text="DELIVERED").first).to_be_visible()
        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_role("status")).to_contain_text("Test event queued")
        for _ in range(100):
            page.reload()
            if (
                page.locator(".deliveries li", has_text="Webhook.Test")
                .locator(".badge", has_text="DELIVERED")
                .count()
            ):
                break
            time.sleep(0.2)
        expect(page.locator(".deliveries li", has_text="Webhook.Test").first).to_contain_text("DELIVERED")
        assert any(r.json().get("eventType") == "Webhook.Test" for r in receiver.requests)
        a11y(page, axe_source, "webhook-deliveries")
        endpoint_url = page.url
        page.set_viewport_size({"width": 375, "height": 800})
        for name in ("webhook-phone", "webhook-delivery-phone"):
            if name == "webhook-delivery-phone":
                page.locator(".deliveries a").first.click()
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, name
            a11y(page, axe_source, name)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(endpoint_url)
    finally:
        receiver.stop()

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("checkout")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text()
    assert secret.startswith("pgk_")
    a11y(page, axe_source, "keys-created")
    page.get_by_role("button", name=re.compile(f"Revoke key {secret[:10]}")).click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    with httpx.Client(base_url=site.url) as api:
        r = api.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client, secret))
        assert r.status_code == 401

    page.get_by_role("link", name="MFA settings").click()
    page.get_by_label("Code length (digits)").fill("8")
    page.get_by_label(re.compile("Countries SMS may go to")).fill("US, CA")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved")
    expect(page.get_by_text("with 8 digits")).to_be_visible()
    page.get_by_label("Code length (digits)").fill("99")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#st-otpLength-error")).to_be_visible()
    a11y(page, axe_source, "settings")
    page.get_by_label(re.compile("Email address or phone number")).fill("jo@example.com")
    page.get_by_role("button", name="Unlock", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("had no failures to clear")
    page.get_by_label(re.compile("Email address or phone number")).fill("12")
    page.get_by_role("button", name="Unlock", exact=True).click()
    expect(page.locator("#ul-destination-error")).to_be_visible()
    a11y(page, axe_source, "settings-unlock")

    page.get_by_role("link", name="Branding").click()
    page.get_by_label("Company name").fill("Owner Co Bank")
    page.get_by_label("Primary colour", exact=True).fill("#0f766e")
    page.get_by_role("button", name="Save branding").click()
    expect(page.get_by_role("status")).to_contain_text("Branding saved")
    a11y(page, axe_source, "branding")

    page.goto(f"{site.url}/console/overview?period=7d")
    expect(page.locator("svg.chart").first).to_be_visible()
    a11y(page, axe_source, "overview-7d")
    page.goto(f"{site.url}/console/sessions")
    a11y(page, axe_source, "sessions")
    page.locator("table a").first.click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    a11y(page, axe_source, "session")
    page.goto(f"{site.url}/console/audit")
    expect(page.get_by_text("apikey.revoked")).to_be_visible()
    a11y(page, axe_source, "audit")
    page.goto(f"{site.url}/console/account")
    a11y(page, axe_source, "account")

    # A phone-sized screen: nothing scrolls sideways but the tables that say so.
    page.set_viewport_size({"width": 375, "height": 800})
    for path, name in (
        ("/console/overview", "overview-phone"),
        ("/console/templates/email-link", "template-phone"),
    ):
        page.goto(f"{site.url}{path}")
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376
                 && !e.closest('.scroll, .main-nav')).slice(0, 5).map(e => e.tagName + '.' + e.className)"""
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, (path, wide)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_viewer_is_refused_an_owner_action_and_clients_never_meet(
    live_server: LiveServer, browser_context: BrowserContext, chromium: Browser, axe_source: str
) -> None:
    site = live_server
    mine = new_client(site, "Viewer Co")
    theirs = new_client(site, "Secret Co")
    page = sign_in(browser_context, site, new_user(site, mine, "viewer"))

    page.goto(f"{site.url}/console/keys")
    expect(page.get_by_role("button", name="Create key")).to_have_count(0)
    expect(page.get_by_text("Only owners can create or revoke keys")).to_be_visible()
    # The viewer forges the owner's form anyway (a valid session and CSRF token): refused.
    page.evaluate(
        """() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/console/keys';
                   const t = document.querySelector('input[name=csrf]').cloneNode();
                   f.appendChild(t); document.body.appendChild(f); f.submit(); }"""
    )
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_text("Your role (viewer) cannot do this")).to_be_visible()
    a11y(page, axe_source, "viewer-refused")

    # The other client's data: an MFA session (its owner's sign-in) and a webhook endpoint.
    other = chromium.new_context()
    try:
        their_page = sign_in(other, site, new_user(site, theirs, "owner"))
        their_page.goto(f"{site.url}/console/sessions")
        their_session = their_page.locator("table a").first.get_attribute("href")
        assert their_session and their_session.startswith("/console/sessions/")
    finally:
        other.close()
    page.goto(f"{site.url}/console/sessions")
    assert page.locator(f'a[href="{their_session}"]').count() == 0
    response = page.goto(f"{site.url}{their_session}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(f"{site.url}/console/overview")
    expect(page.locator(".client")).to_have_text("Viewer Co")
