"""Every console page at a desktop width (1440 px) and a phone width (375 px): nothing scrolls sideways, axe-core
finds no serious or critical violation, and a screenshot of each lands in artifacts/screenshots/console/."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext

from passgate.auth.services import create_api_key
from passgate.db import transaction
from tests.browser.conftest import LiveServer
from tests.browser.test_console import _decision, a11y, new_client, new_user, sign_in
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
        ]
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
        problems: list[str] = []
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for path in paths:
                page.goto(f"{site.url}{path}")
                assert page.url.endswith(path), (path, page.url)  # not sent to the sign-in or elsewhere
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                if overflow > 0:
                    problems.append(
                        f"{width} px {path}: {overflow} px sideways, {_wide_elements(page, width)}"
                    )
                if width < 500:
                    # The navigation wraps on a phone: every section is in sight, none past the edge.
                    hidden = page.evaluate(
                        """() => [...document.querySelectorAll('.main-nav a')]
                             .filter(a => a.getBoundingClientRect().right > window.innerWidth).map(a => a.textContent)"""
                    )
                    if hidden:
                        problems.append(f"{width} px {path}: navigation cut off at {hidden}")
                name = re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/console/").lower()).strip("-")
                try:
                    a11y(page, axe_source, f"w{width}-{name[:60]}")
                except AssertionError as exc:
                    problems.append(f"{width} px {path}: {exc}")
        assert not problems, "\n".join(problems)
    finally:
        receiver.stop()
