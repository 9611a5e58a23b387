"""Every console page at a desktop width (1440 px) and a phone width (375 px): nothing scrolls sideways, axe-core
finds no violation of any impact, and a screenshot of each lands in artifacts/screenshots/console/. The pages
are those of every GET route of src/passgate/console/routes/ (signed in, and the sign-in pages signed out); the
policy set's version and diff pages are left to the policy editor's browser tests."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from starlette.routing import compile_path

from passgate.auth.services import create_api_key
from passgate.db import transaction
from tests.browser.conftest import LiveServer
from tests.browser.test_console import PASSWORD, _decision, a11y, new_client, new_user, sign_in
from tests.servers import HttpReceiver

pytestmark = pytest.mark.browser

WIDTHS = (1440, 375)


def _admin(site: LiveServer, client_id: str) -> httpx.Client:
    with transaction(site.registry.sessions) as session:
        secret = create_api_key(session, client_id, ["admin"], site.registry.clock.now()).secret
    api = httpx.Client(base_url=site.url)
    token = api.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=(client_id, secret)
    ).json()["access_token"]
    api.headers["Authorization"] = f"Bearer {token}"
    return api


def _wide_elements(page: Any, width: int) -> list[str]:
    return list(
        page.evaluate(
            """(w) => [...document.querySelectorAll('body *')]
                 .filter(e => e.getBoundingClientRect().right > w + 1)
                 .slice(0, 6).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                                   + (e.className && typeof e.className === 'string' ? '.' + e.className : ''))""",
            width,
        )
    )


def test_every_page_fits_a_phone_and_a_desktop(
    live_server: LiveServer, browser_context: BrowserContext, axe_source: str
) -> None:
    site = live_server
    client = new_client(site, "Widths Co")
    page = sign_in(browser_context, site, new_user(site, client, "owner"))
    _decision(site, client)
    receiver = HttpReceiver().start()
    try:
        api = _admin(site, client)
        try:
            r = api.post(
                "/manage/v1/webhooks",
                json={
                    "url": f"{receiver.url}/hooks",
                    "events": ["Decision.Created"],
                    "signatureScheme": "kount-rsa-pss",
                },
            )
            assert r.status_code == 201, r.text
            endpoint_id = r.json()["id"]
            r = api.post(f"/manage/v1/webhooks/{endpoint_id}/test")
            assert r.status_code == 202, r.text
            r = api.post("/manage/v1/lists", json={"name": "blocked-domains", "kind": "emailDomain"})
            assert r.status_code in (200, 201), r.text
        finally:
            api.close()
        paths = [
            "/console/overview",
            "/console/sessions",
            "/console/templates",
            "/console/templates/email-link",
            "/console/templates/new",
            "/console/branding",
            "/console/policies/LOGIN",
            "/console/lists",
            "/console/lists/blocked-domains",
            "/console/webhooks",
            f"/console/webhooks/{endpoint_id}",
            "/console/keys",
            "/console/settings",
            "/console/audit",
            "/console/account",
            "/console/activity",
            "/console/templates/sms-code",
            "/console/templates/email-link?locale=fr",  # a locale the template does not have yet
            "/console/templates/no-such-template",  # the console's own "not found" page
        ]
        page.goto(f"{site.url}/console/activity")
        decision_link = page.locator("table a").first.get_attribute("href")
        assert decision_link and decision_link.startswith("/console/activity/")
        paths.append(decision_link)
        page.goto(f"{site.url}/console/sessions")
        session_link = page.locator("table a").first.get_attribute("href")
        assert session_link
        paths.append(session_link)
        page.goto(f"{site.url}/console/webhooks/{endpoint_id}")
        for _ in range(50):
            if page.locator(".deliveries a").count():
                break
            page.wait_for_timeout(200)
            page.reload()
        delivery_link = page.locator(".deliveries a").first.get_attribute("href")
        assert delivery_link
        paths.append(delivery_link)
        assert _uncovered(paths) == [], "a console page no width check visits"
        problems: list[str] = []
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for path in paths:
                page.goto(f"{site.url}{path}")
                assert page.url.endswith(path), (path, page.url)  # not sent to the sign-in or elsewhere
                _check_width(page, width, path, problems)
                if width < 500:
                    # The navigation wraps on a phone: every section is in sight, none past the edge.
                    hidden = page.evaluate(
                        """() => [...document.querySelectorAll('.main-nav a')]
                             .filter(a => a.getBoundingClientRect().right > window.innerWidth).map(a => a.textContent)"""
                    )
                    if hidden:
                        problems.append(f"{width} px {path}: navigation cut off at {hidden}")
                name = re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/console/").lower()).strip("-")
                _check_a11y(page, axe_source, f"w{width}-{name[:60]}", width, path, problems)
        assert not problems, "\n".join(problems)
    finally:
        receiver.stop()


# GET routes of the console that are not pages of their own here: redirects, the sign-in pages (checked
# signed out below), and the policy set's versions and diff (the policy editor's browser tests).
ELSEWHERE = {
    "/console",
    "/console/",
    "/console/policies",
    "/console/sign-in",
    "/console/sign-in/check-email",
    "/console/policies/{event_type}/versions/{version}",
    "/console/policies/{event_type}/diff",
}


def _uncovered(paths: list[str]) -> list[str]:
    """The console's GET routes (every module of src/passgate/console/routes/) that none of `paths` opens."""
    import passgate.console.routes as package

    missing = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for route in getattr(getattr(module, "router", None), "routes", []):
            full = "/console" + route.path
            if "GET" not in (getattr(route, "methods", None) or set()) or full in ELSEWHERE:
                continue
            regex = compile_path(full)[0]
            if not any(regex.match(p.split("?", 1)[0]) for p in paths):
                missing.append(full)
    return missing


def _check_width(page: Page, width: int, what: str, problems: list[str]) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if overflow > 0:
        problems.append(f"{width} px {what}: {overflow} px sideways, {_wide_elements(page, width)}")


def _check_a11y(page: Page, axe: str, name: str, width: int, what: str, problems: list[str]) -> None:
    try:
        a11y(page, axe, name, strict=True)
    except AssertionError as exc:
        problems.append(f"{width} px {what}: {exc}")


def test_the_sign_in_pages_fit_a_phone_and_a_desktop(
    live_server: LiveServer, chromium: Browser, axe_source: str
) -> None:
    """Signed out: the sign-in form, a refused password, and "check your email" on a new device."""
    site = live_server
    client = new_client(site, "Sign-in Widths Co")
    email = new_user(site, client, "viewer")
    problems: list[str] = []
    for width in WIDTHS:
        context = chromium.new_context(viewport={"width": width, "height": 900})
        try:
            page = context.new_page()
            page.goto(f"{site.url}/console/sign-in")
            _check_width(page, width, "/console/sign-in", problems)
            _check_a11y(page, axe_source, f"w{width}-sign-in", width, "/console/sign-in", problems)
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_be_visible()
            _check_width(page, width, "sign-in refused", problems)
            _check_a11y(page, axe_source, f"w{width}-sign-in-refused", width, "sign-in refused", problems)
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/console/sign-in/check-email$"))
            expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
            _check_width(page, width, "/console/sign-in/check-email", problems)
            _check_a11y(page, axe_source, f"w{width}-sign-in-check-email", width, "check-email", problems)
        finally:
            context.close()
    assert not problems, "\n".join(problems)
