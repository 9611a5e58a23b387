"""The API reference at /docs in Chromium with every request off the loopback address refused: the page, its
script and Swagger UI's files come from Passgate alone, its Content-Security-Policy blocks nothing that it
needs, the operations and the Authorize button are shown, and the client-credentials flow of the Authorize
dialog gets a token that "Try it out" then uses. The screenshot lands in artifacts/screenshots/docs/."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect

from passgate.auth.services import create_api_key, create_client
from passgate.db import transaction
from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots" / "docs"


# Every Content-Security-Policy violation of the page, as "directive blocked-URI".
VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


class Offline:
    """Cuts a browser context off every host but 127.0.0.1, and keeps what was tried elsewhere."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.served: list[str] = []

    def __call__(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            self.served.append(url)
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")


def _open(chromium: Browser, live_server: LiveServer) -> tuple[Page, Offline, list[str]]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    offline = Offline()
    context.route("**/*", offline)
    page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # Chromium reports a blocked load or script (a Content-Security-Policy violation) as an error here.
        if message.type == "error":
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(VIOLATIONS)
    page.goto(f"{live_server.url}/docs")
    return page, offline, problems


def _violations(page: Page) -> list[str]:
    return list(page.evaluate("window.cspViolations"))


def _new_key(live_server: LiveServer) -> tuple[str, str]:
    now = live_server.registry.clock.now()
    with transaction(live_server.registry.sessions) as session:
        client = create_client(session, "Docs Reader", "US", False, now)
        return client.id, create_api_key(session, client.id, ["admin"], now).secret


def test_reference_loads_offline_with_operations_and_authorize(chromium: Browser, live_server: LiveServer) -> None:
    page, offline, problems = _open(chromium, live_server)
    login = page.locator(".opblock-post .opblock-summary-path[data-path='/login/v2']")
    expect(login).to_be_visible(timeout=20_000)
    expect(page.locator(".opblock-post .opblock-summary-path[data-path='/newaccountopening/v2']")).to_be_visible()
    expect(page.locator(".opblock-get .opblock-summary-path[data-path='/mfa/v2/{session_id}']")).to_be_visible()
    expect(page.locator("button.authorize").first).to_be_visible()
    # An operation that needs a token carries a lock; the public ones do not.
    expect(page.locator("#operations-decisions-login_login_v2_post .authorization__btn")).to_be_visible()
    expect(page.locator("#operations-operations-healthz_healthz_get .authorization__btn")).to_have_count(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "docs.png"))
    assert not offline.refused, f"requests to other hosts: {offline.refused}"
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in offline.served)
    assert any(url.endswith("/openapi.json") for url in offline.served)
    assert not _violations(page) and not problems, (_violations(page), problems)
    page.context.close()


def test_client_credentials_then_try_it_out(chromium: Browser, live_server: LiveServer) -> None:
    client_id, secret = _new_key(live_server)
    page, offline, problems = _open(chromium, live_server)
    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux")
    dialog.locator("#client_id_clientCredentials").fill(client_id)
    dialog.locator("#client_secret_clientCredentials").fill(secret)
    dialog.locator("label[for='admin-clientCredentials-checkbox-clientCredentials']").click()
    with page.expect_response(lambda r: r.url.endswith("/oauth2/token")) as token:
        dialog.locator("button[aria-label='Apply given OAuth2 credentials']").click()
    assert token.value.status == 200
    assert token.value.request.headers["authorization"].startswith("Basic ")
    # Authorized: the dialog offers to log out, and the Authorize button shows a closed lock.
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.locator("button.close-modal").click()
    expect(page.locator(".scheme-container button.authorize")).to_have_class(re.compile(r"\blocked\b"))

    settings = page.locator("#operations-settings-get_settings_manage_v1_settings_get")
    settings.locator(".opblock-summary-control").click()
    settings.locator("button.try-out__btn").click()
    with page.expect_response(lambda r: r.url.endswith("/manage/v1/settings")) as answer:
        settings.locator("button.execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers["authorization"].startswith("Bearer ")
    expect(settings.locator(".live-responses-table tr.response .response-col_status").first).to_contain_text("200")
    # The schemas of a request body, opened.
    login = page.locator("#operations-decisions-login_login_v2_post")
    login.locator(".opblock-summary-control").click()
    login.locator("button[data-name='model']").first.click()
    expect(login.locator(".model-box").first).to_be_visible()
    assert not offline.refused, f"requests to other hosts: {offline.refused}"
    assert not _violations(page) and not problems, (_violations(page), problems)
    page.context.close()
