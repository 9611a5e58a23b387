"""Every built-in email, in every locale, rendered in headless Chromium as a mail client's web view would.

Checks what a person must see (the brand, the button or the code, the expiry), that the layout fits a
phone without sideways scrolling, and that the right-to-left locale is laid out right to left. Screenshots
land in artifacts/screenshots/emails/ for a human look.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from passgate.locales import is_rtl
from passgate.messaging.templates import Brand, PersonName, RenderContext, builtin_templates, render
from tests.servers import HttpReceiver, Recorded

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots" / "emails"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
COMPANY = "Northwind Online Banking Group"
COLOR = "#0f766e"
COLOR_RGB = "rgb(15, 118, 110)"
LINK = "https://passgate.example.com/v/Xq3vT9pLm2Rk8sWd4YbN7cHf1JgZ5aEu6oIy0KtQwVx"
CODE = "482915"
MINUTES = 17  # a number that appears nowhere else in the templates, so the expiry line is findable
EMAILS = [
    (name, locale)
    for name, template in sorted(builtin_templates().items())
    if template.channel == "EMAIL"
    for locale in sorted(template.locales)
]


def find_chromium() -> str | None:
    """scripts/ensure_browser.py's find(): PASSGATE_CHROMIUM, then a system Chromium on PATH."""
    spec = importlib.util.spec_from_file_location("ensure_browser", ROOT / "scripts" / "ensure_browser.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = module.find()
    return str(found) if found else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = find_chromium()
    if path is None:
        message = "no Chromium found: install Debian's chromium or set PASSGATE_CHROMIUM"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must run these, never quietly skip them
        pytest.skip(message)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _html(name: str, locale: str, logo_url: str | None = None) -> str:
    brand = Brand(
        company_name=COMPANY,
        primary_color=COLOR,
        support_url="https://help.northwind.example",
        logo_url=logo_url,
    )
    context = RenderContext(
        brand=brand,
        host="passgate.example.com",
        expires_in_minutes=MINUTES,
        link=LINK,
        code=CODE,
        person=PersonName(first="Alexandra"),
    )
    rendered = render(builtin_templates()[name], locale, context)
    assert rendered.locale == locale and rendered.html
    return rendered.html


@pytest.fixture(scope="module")
def pages(browser: Browser) -> Iterator[dict[str, Page]]:
    """A desktop and a phone-sized page, reused by every email (a new context per email costs more)."""
    contexts = {
        kind: browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
        for kind, width in (("desktop", 800), ("mobile", 375))
    }
    for context in contexts.values():
        # Mail clients block scripts and remote content by default; nothing but markup and CSS is judged.
        context.route("**/*", lambda route: route.abort())
    yield {kind: context.new_page() for kind, context in contexts.items()}
    for context in contexts.values():
        context.close()


def _text_box(page: Page, selector: str) -> dict[str, float]:
    """Where the text of the first match actually sits (a block's own box spans the whole line)."""
    box: dict[str, float] = page.eval_on_selector(
        selector,
        "el => { const r = document.createRange(); r.selectNodeContents(el);"
        " const b = r.getBoundingClientRect(); return {left: b.left, right: b.right, width: b.width}; }",
    )
    return box


def _cell_box(page: Page, selector: str) -> dict[str, float]:
    box: dict[str, float] = page.eval_on_selector(
        selector,
        "el => { const b = el.closest('td').getBoundingClientRect(); return {left: b.left, right: b.right}; }",
    )
    return box


@pytest.mark.parametrize(("name", "locale"), EMAILS, ids=[f"{n}-{loc}" for n, loc in EMAILS])
def test_builtin_email_renders_in_chromium(pages: dict[str, Page], name: str, locale: str) -> None:
    html = _html(name, locale)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    rtl = is_rtl(locale)

    page = pages["desktop"]
    page.set_content(html, wait_until="load")
    # The brand: its name in the header (no logo given) and its colour on the card and the button.
    header = page.locator("td span", has_text=COMPANY).first
    assert header.is_visible()
    card_top = page.eval_on_selector("h1", "el => getComputedStyle(el.parentElement).borderTopColor")
    assert card_top == COLOR_RGB

    if name == "email-link":
        button = page.locator(f'a[href="{LINK}"]').first
        assert button.is_visible()
        box = button.bounding_box()
        assert box is not None and box["height"] >= 40 and box["width"] >= 100  # a real tap target
        cell = button.evaluate("el => getComputedStyle(el.parentElement).backgroundColor")
        assert cell == COLOR_RGB
        assert button.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
        plain = page.locator(f'a[href="{LINK}"]', has_text=LINK)
        assert plain.is_visible()  # the plain link for clients that drop the button
    else:
        code = page.locator("td", has_text=CODE).last
        assert code.is_visible()
        assert code.bounding_box() is not None

    expiry = page.locator("p", has_text=str(MINUTES))
    assert expiry.count() == 1 and expiry.first.is_visible()

    direction = page.evaluate("getComputedStyle(document.body).direction")
    assert direction == ("rtl" if rtl else "ltr")
    # Right to left means laid out from the right: the heading and the brand hug the right edge of
    # their cells, the left-to-right locales the left one.
    for selector in ("h1", "td span"):
        cell = _cell_box(page, selector)
        text = _text_box(page, selector)
        left_gap, right_gap = text["left"] - cell["left"], cell["right"] - text["right"]
        near, far = (right_gap, left_gap) if rtl else (left_gap, right_gap)
        assert near < 40 and near < far, (selector, left_gap, right_gap)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{locale}-desktop.png"), full_page=True)

    # On a phone: no sideways scrolling, the button or code still in full view.
    page = pages["mobile"]
    page.set_content(html, wait_until="load")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    target = (
        page.locator(f'a[href="{LINK}"]').first
        if name == "email-link"
        else page.locator("td", has_text=CODE).last
    )
    box = target.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{locale}-mobile.png"), full_page=True)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG, enough to stand in for a logo."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def test_logo_is_shown_when_the_brand_has_one(browser: Browser) -> None:
    logo = _png(160, 40, (15, 118, 110))

    def serve(_: Recorded) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "image/png"}, logo

    server = HttpReceiver(responder=serve).start()
    try:
        html = _html("email-link", "en", logo_url=f"{server.url}/logo.png")
        context = browser.new_context(viewport={"width": 800, "height": 900})
        try:
            page = context.new_page()
            page.set_content(html, wait_until="load")
            img = page.locator(f'img[alt="{COMPANY}"]')
            assert img.is_visible()
            assert img.evaluate("el => el.complete && el.naturalWidth") == 160
            box = img.bounding_box()
            assert box is not None and round(box["height"]) == 40
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "email-link-en-with-logo.png"), full_page=True)
        finally:
            context.close()
    finally:
        server.stop()
    assert [r.path for r in server.requests] == ["/logo.png"]
