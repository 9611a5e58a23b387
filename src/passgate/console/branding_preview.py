"""The branding page's previews: the email, the hosted confirm page and the SMS as a person would get them
with the branding on screen (saved or not yet saved), and the colour's contrast against WCAG AA.

The built-in templates render in the same bounded pool as the template editor's previews; the hosted page
is the real `link.html`, rendered without its script (the preview frame runs none)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from passgate.messaging import samples
from passgate.messaging.render_pool import EDITING
from passgate.messaging.templates import Brand, builtin_templates, render
from passgate.web.i18n import strings

_PAGES = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent.parent / "web" / "templates")),
    autoescape=select_autoescape(["html"]),
)
AA_NORMAL = 4.5  # WCAG 2.x level AA, normal text
AA_LARGE = 3.0  # level AA, large text and interface parts (a button's outline)


def _luminance(hex_colour: str) -> float:
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    value = hex_colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio of two hex colours (#rgb or #rrggbb), from 1 to 21."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@dataclass(frozen=True)
class ColourCheck:
    colour: str
    text_colour: str  # what the button label is drawn in (white or near-black, whichever reads better)
    on_button: float  # the label against the colour
    on_white: float  # the colour as text or a border on the white card

    @property
    def button_passes(self) -> bool:
        return self.on_button >= AA_NORMAL

    @property
    def on_white_passes(self) -> bool:
        return self.on_white >= AA_LARGE


def check_colour(brand: Brand) -> ColourCheck:
    text = brand.primary_text_color
    return ColourCheck(
        colour=brand.primary_color,
        text_colour=text,
        on_button=round(contrast_ratio(brand.primary_color, text), 2),
        on_white=round(contrast_ratio(brand.primary_color, "#ffffff"), 2),
    )


def brand_from_form(values: dict[str, Any]) -> Brand:
    """A Brand from the page's fields (wire names); raises pydantic's ValidationError when one is not valid."""

    def opt(key: str) -> str | None:
        v = str(values.get(key) or "").strip()
        return v or None

    given: dict[str, Any] = {
        "company_name": opt("companyName") or "",
        "logo_url": opt("logoUrl"),
        "support_url": opt("supportUrl"),
        "sender_name": opt("senderName"),
    }
    if opt("primaryColor"):
        given["primary_color"] = opt("primaryColor")
    return Brand.model_validate(given)


def previews(brand: Brand, public_url: str, minutes: int = 10) -> dict[str, Any]:
    """The built-in link email, the hosted confirm page and the built-in code SMS, in English."""
    host = urlsplit(public_url).hostname or "localhost"
    context = samples.sample_context(brand, public_url, host, minutes, 6, {})
    builtins = builtin_templates()
    email = EDITING.run(render, builtins["email-link"], "en", context)
    sms = EDITING.run(render, builtins["sms-code"], "en", context)
    page = _PAGES.get_template("link.html").render(
        brand=brand,
        lang="en",
        dir="ltr",
        t=strings("en"),
        logo_fallback="",
        confirm_action="#",
        deny_action="#",
        csrf="",
        choices=None,
    )
    return {"subject": email.subject, "email": email.html, "page": page, "sms": sms.sms or ""}
