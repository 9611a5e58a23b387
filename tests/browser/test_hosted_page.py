"""The hosted confirm page as a person meets it: a real server, the link from the dev inbox, Chromium.

Covers Confirm (and the redirect to the business's page), "This wasn't me", number matching with
bindToDevice, the right-to-left locale, and an accessibility check with axe-core. Screenshots land in
artifacts/screenshots/hosted/.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from passgate.auth.services import create_api_key, create_client
from passgate.db import transaction
from tests.browser.conftest import LiveServer
from tests.servers import free_port, self_signed, server_tls_context

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots" / "hosted"


def _api(server: LiveServer) -> tuple[httpx.Client, str]:
    now = server.registry.clock.now()
    with transaction(server.registry.sessions) as session:
        client = create_client(session, "Harbour Bank", "US", False, now)
        secret = create_api_key(session, client.id, [], now).secret
        cid = client.id
    token = httpx.post(
        f"{server.url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    ).json()["access_token"]
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10), cid


def _challenge(http: httpx.Client, email: str, **strategy: Any) -> dict[str, Any]:
    body = {
        "inquiryId": f"h{time.time_ns()}",
        "deviceSessionId": f"d{time.time_ns() % 10**12}",
        "person": {"emailAddress": email, "name": {"first": "Ana"}},
        "account": {"id": f"acct-{email}", "username": "ana"},
        "strategy": {"mfaTemplateName": "email-link", **strategy},
    }
    r = http.post("/login/v2", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["mfa"])


def _link(server: LiveServer, email: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = httpx.get(f"{server.url}/dev/inbox", headers={"Accept": "application/json"}).json()["items"]
        for item in items:
            if item["destination"] == email and item["link"]:
                return str(item["link"])
        time.sleep(0.1)
    raise AssertionError(f"no mail for {email} in the dev inbox")


def _page(chromium: Browser, locale: str = "en-US") -> Page:
    # bypass_csp only so the test can inject axe-core; the page's own policy forbids any other script.
    context = chromium.new_context(locale=locale, viewport={"width": 390, "height": 800}, bypass_csp=True)
    return context.new_page()


def _status(http: httpx.Client, session_id: str) -> str:
    return str(http.get(f"/mfa/v2/{session_id}").json()["status"])


def test_confirm_in_a_real_browser(chromium: Browser, live_server: LiveServer, axe_source: str) -> None:
    http, _ = _api(live_server)
    mfa = _challenge(http, "ana.confirm@example.com")
    link = _link(live_server, "ana.confirm@example.com")
    page = _page(chromium)
    page.goto(link)
    assert page.get_by_role("heading", name="Confirm it's you").is_visible()
    assert page.get_by_text("Harbour Bank").first.is_visible()
    assert page.locator("#confirm").evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "confirm-en.png"), full_page=True)
    page.add_script_tag(content=axe_source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    serious = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, json.dumps(result["violations"], indent=1)[:2000]
    assert _status(http, mfa["ID"]) == "MESSAGE_SENT"  # looking changed nothing
    page.locator("#confirm").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="You're confirmed").is_visible()
    page.screenshot(path=str(SHOTS / "confirmed-en.png"), full_page=True)
    assert _status(http, mfa["ID"]) == "VERIFIED"
    page.context.close()


def test_this_wasnt_me_in_arabic(chromium: Browser, live_server: LiveServer) -> None:
    http, _ = _api(live_server)
    mfa = _challenge(http, "ana.deny@example.com")
    page = _page(chromium, locale="ar")
    page.goto(_link(live_server, "ana.deny@example.com"))
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "confirm-ar.png"), full_page=True)
    page.locator("#deny").click()
    page.wait_for_load_state()
    assert _status(http, mfa["ID"]) == "TERMINATED"
    page.context.close()


def test_number_matching(chromium: Browser, live_server: LiveServer) -> None:
    http, _ = _api(live_server)
    mfa = _challenge(http, "ana.bind@example.com", bindToDevice=True)
    page = _page(chromium)
    page.goto(_link(live_server, "ana.bind@example.com"))
    # Keyboard only: the number the business showed is picked with the arrow keys and Space.
    page.locator(f"label[for] >> text='{mfa['matchNumber']}'").click()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "number-matching.png"), full_page=True)
    page.locator("#confirm").click()
    page.wait_for_load_state()
    assert _status(http, mfa["ID"]) == "VERIFIED"
    page.context.close()


def _brand_logo(server: LiveServer, client_id: str, logo_url: str) -> None:
    """Sets the client's logo as it is stored (an old http:// one included, which saving now refuses)."""
    from passgate.messaging.models import ClientBranding

    with transaction(server.registry.sessions) as session:
        session.merge(
            ClientBranding(
                client_id=client_id,
                company_name="Harbour Bank",
                logo_url=logo_url,
                primary_color="#0f766e",
                sending_domains=[],
                updated_at=server.registry.clock.now(),
            )
        )
    server.registry.templates.forget(client_id)  # type: ignore[attr-defined]


def _tls_image_server() -> tuple[ThreadingHTTPServer, str]:
    """An https server on 127.0.0.1 answering every GET with a 160×40 PNG (self-signed certificate)."""
    from tests.browser.test_builtin_emails import _png

    logo = _png(160, 40, (15, 118, 110))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(logo)))
            self.end_headers()
            self.wfile.write(logo)

    cert, key = self_signed("127.0.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_tls_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_address[1]}/logo.png"


@pytest.mark.parametrize("logo", ["unreachable", "http", "loads"])
def test_the_business_name_stands_in_for_a_logo_that_does_not_load(
    logo: str, chromium: Browser, live_server: LiveServer
) -> None:
    http, client_id = _api(live_server)
    images = None
    if logo == "unreachable":
        url = f"https://127.0.0.1:{free_port()}/logo.png"  # nothing listens there
    elif logo == "http":
        url = "http://127.0.0.1:9/logo.png"  # stored before http:// was refused; the page's CSP blocks it
    else:
        images, url = _tls_image_server()
    _brand_logo(live_server, client_id, url)
    email = f"ana.logo.{logo}@example.com"
    _challenge(http, email)
    # The page's own Content-Security-Policy applies here (no bypass): its one script runs by its hash.
    context = chromium.new_context(ignore_https_errors=True)
    violations: list[str] = []
    try:
        page = context.new_page()
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None
        )
        page.goto(_link(live_server, email))
        page.wait_for_load_state("load")
        name = page.locator("header strong")
        if logo == "loads":
            assert page.locator("#brand-logo").evaluate("el => el.complete && el.naturalWidth") == 160
            assert not name.is_visible()
        else:
            name.wait_for(state="visible", timeout=5000)
            assert name.inner_text() == "Harbour Bank"
            assert page.locator("#brand-logo").count() == 0  # no broken image left behind
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"logo-fallback-{logo}.png"), full_page=True)
        # Only the http:// logo may be refused by the policy; never the page's script.
        assert not [v for v in violations if "script" in v.lower()], violations
    finally:
        context.close()
        if images is not None:
            images.shutdown()
            images.server_close()
