"""The dev inbox in Chromium: both parts of an email, no self-reload, no sideways scroll on a phone.

Screenshots land in artifacts/screenshots/console/ beside the console's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from passgate.db import transaction
from passgate.messaging.models import DevInboxMessage
from passgate.messaging.templates import Brand, PersonName, RenderContext, builtin_templates, render
from tests.browser.conftest import LiveServer
from tests.browser.test_console import a11y

pytestmark = pytest.mark.browser

LONG_LINK = "http://127.0.0.1:8000/v/" + "Xq3vT9pLm2Rk8sWd4YbN7cHf1JgZ5aEu6oIy0KtQwVx" * 2


def _email(site: LiveServer, destination: str) -> str:
    """A built-in email as the dev provider stores it; its message id is returned."""
    template = builtin_templates()["email-link"]
    context = RenderContext(
        brand=Brand(company_name="Northwind", primary_color="#0f766e"),
        host="127.0.0.1",
        expires_in_minutes=10,
        link=LONG_LINK,
        code="482915",
        person=PersonName(first="Alexandra"),
    )
    rendered = render(template, "en", context)
    message_id = str(uuid.uuid4())
    with transaction(site.registry.sessions) as session:
        session.add(
            DevInboxMessage(
                message_id=message_id,
                client_id="cl_inbox_test",
                channel="EMAIL",
                destination=destination,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                link=LONG_LINK,
                code=None,
                meta={},
                created_at=site.registry.clock.now(),
            )
        )
    return message_id


@pytest.fixture
def contexts(chromium: Browser) -> Iterator[dict[int, BrowserContext]]:
    made = {width: chromium.new_context(viewport={"width": width, "height": 900}) for width in (1440, 375)}
    for context in made.values():
        context.set_default_timeout(8000)
    yield made
    for context in made.values():
        context.close()


def test_dev_inbox_shows_both_parts_and_never_reloads_itself(
    live_server: LiveServer, contexts: dict[int, BrowserContext], axe_source: str
) -> None:
    destination = f"inbox-{uuid.uuid4().hex[:8]}@example.com"
    message_id = _email(live_server, destination)
    for width, context in contexts.items():
        page = context.new_page()
        page.goto(f"{live_server.url}/dev/inbox")
        article = page.locator(f'article[data-message-id="{message_id}"]')
        expect(article).to_be_visible()
        # The HTML part is shown as the person would see it, in a frame that runs nothing.
        frame = article.locator("iframe")
        expect(frame).to_have_attribute("sandbox", "")
        expect(
            page.frame_locator(f'article[data-message-id="{message_id}"] iframe').locator("body")
        ).to_contain_text("Northwind")
        # The text part is one click away.
        article.get_by_text("Text part").click()
        expect(article.locator("pre")).to_contain_text(LONG_LINK[:40])
        # No automatic reload (it moved focus and lost the reader's place); a Refresh button instead.
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
        expect(page.get_by_role("link", name="Refresh")).to_be_visible()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
                 document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.' + e.className)"""
        )
        assert overflow <= 0, f"{wide} {width} px: the page scrolls sideways by {overflow} px"
        a11y(page, axe_source, f"dev-inbox-{width}")
        page.close()
