"""Message templates as data: the template, its locales and parts, the brand, what a render sees and
gives back, and the request's template values (checked here). Pure: no database, no network, no clock.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

Channel = Literal["EMAIL", "SMS"]
Kind = Literal["OTH", "OTP"]
Part = Literal["subject", "html", "text", "sms"]

PARTS_BY_CHANNEL: Mapping[str, tuple[Part, ...]] = {
    "EMAIL": ("subject", "html", "text"),
    "SMS": ("sms",),
}
# The subject is shown in inbox lists and notifications, so it never has to carry the secret.
_PLACEHOLDER_PARTS: Mapping[str, tuple[Part, ...]] = {"EMAIL": ("html", "text"), "SMS": ("sms",)}
_PLACEHOLDER_BY_KIND: Mapping[str, str] = {"OTH": "link", "OTP": "code"}

VARIABLES = frozenset(
    {"link", "code", "expiresInMinutes", "brand", "person", "values", "host", "locale", "dir"}
)
MAX_SMS_SEGMENTS = 3
MAX_LOCALES = 50
MAX_PART_CHARS = 100_000
# Compiling a template is one call into Python's compiler, which holds the GIL throughout: about 80 ms
# for this many nodes of dense code, against 10 ms for the largest built-in part (95 nodes).
MAX_TEMPLATE_NODES = 1_000
# Jinja's parser, compiler and this module's checks walk the tree recursively.
MAX_TEMPLATE_DEPTH = 50
MAX_VALUES = 20
MAX_VALUE_KEY_CHARS = 64
MAX_VALUE_CHARS = 256

_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_LOCALE_RE = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")
_VALUE_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HEX_COLOR_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


# ---------------------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------------------


class _ApiModel(BaseModel):
    # camelCase on the wire (the management API speaks Kount's JSON), snake_case in Python.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class LocaleContent(_ApiModel):
    """One locale of a template: subject/html/text for email, sms for SMS."""

    # Unknown keys are kept rather than refused by the parser so that validate_template can report them
    # with the same field paths as every other problem.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="allow")

    subject: str | None = None
    html: str | None = None
    text: str | None = None
    sms: str | None = None

    def present_parts(self) -> dict[str, object]:
        """Every part that was given, including ones no channel knows."""
        parts: dict[str, object] = {
            name: value
            for name, value in (("subject", self.subject), ("html", self.html), ("text", self.text))
            if value is not None
        }
        if self.sms is not None:
            parts["sms"] = self.sms
        parts.update(self.model_extra or {})
        return parts


class MessageTemplate(_ApiModel):
    """A named message template: one channel, one kind, content per locale."""

    name: str
    channel: Channel
    kind: Kind
    locales: dict[str, LocaleContent]
    default_locale: str


@functools.lru_cache(maxsize=256)
def _readable_text_on(background: str) -> str:
    """White or near-black, whichever contrasts more with the background (WCAG relative luminance).
    Cached: it runs for every message rendered, and a client has one colour."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    dark_luminance = 0.0137  # #111827
    on_white = 1.05 / (luminance + 0.05)
    on_dark = (luminance + 0.05) / (dark_luminance + 0.05)
    return "#ffffff" if on_white >= on_dark else "#111827"


class Brand(_ApiModel):
    """The business's branding as templates see it under `brand.*`."""

    company_name: str
    logo_url: str | None = None
    primary_color: str = "#2563eb"
    support_url: str | None = None
    sender_name: str | None = None

    @field_validator("company_name")
    @classmethod
    def _company_name(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 100 or _CONTROL_RE.search(value):
            raise ValueError("companyName must be 1-100 characters on one line")
        return value

    @field_validator("sender_name")
    @classmethod
    def _sender_name(cls, value: str | None) -> str | None:
        # Ends up in a From header; a line break there would be header injection.
        if value is not None and (len(value) > 64 or _CONTROL_RE.search(value)):
            raise ValueError("senderName must be at most 64 characters on one line")
        return value

    @field_validator("primary_color")
    @classmethod
    def _primary_color(cls, value: str) -> str:
        # The colour is written into inline CSS, where HTML escaping does not help; only a hex colour can
        # never break out of a style attribute.
        if not _HEX_COLOR_RE.fullmatch(value):
            raise ValueError("primaryColor must be a hex colour such as #1a73e8")
        if len(value) == 4:
            value = "#" + "".join(c * 2 for c in value[1:])
        return value.lower()

    @field_validator("logo_url")
    @classmethod
    def _logo_url(cls, value: str | None) -> str | None:
        return _checked_url(value, ("https://", "http://"), "logoUrl")

    @field_validator("support_url")
    @classmethod
    def _support_url(cls, value: str | None) -> str | None:
        return _checked_url(value, ("https://", "http://", "mailto:"), "supportUrl")

    @property
    def primary_text_color(self) -> str:
        """A text colour readable on the primary colour, for the button label."""
        return _readable_text_on(self.primary_color)


def _checked_url(value: str | None, schemes: tuple[str, ...], name: str) -> str | None:
    # These land in href/src attributes: a javascript: or data: URL would run in webmail clients.
    if value is None:
        return None
    if len(value) > 2048 or not value.lower().startswith(schemes) or re.search(r"[\s\x00-\x1f]", value):
        raise ValueError(f"{name} must be a URL starting with {' or '.join(schemes)}")
    return value


@dataclass(frozen=True, slots=True)
class PersonName:
    first: str | None = None
    last: str | None = None
    preferred: str | None = None


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a template can see. Values come from the request; clean them with clean_template_values."""

    brand: Brand
    host: str
    expires_in_minutes: int
    link: str | None = None
    code: str | None = None
    person: PersonName = field(default_factory=PersonName)
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    channel: Channel
    locale: str
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    sms: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One reason a template cannot be saved, pointing at the field the console should highlight."""

    field: str
    message: str
    locale: str | None = None
    part: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class SmsInfo:
    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    segments: int
    units: int


class TemplateRenderError(Exception):
    """A stored template could not be rendered (syntax, sandbox violation, a budget, or a runtime error).

    `over_budget`: it went over one of the sandbox's budgets; `retryable`: only its clock (see
    sandbox.BudgetExceeded), which a busy machine can cause."""

    def __init__(
        self,
        message: str,
        *,
        template: str,
        locale: str,
        part: str,
        line: int | None = None,
        over_budget: bool = False,
        retryable: bool = False,
    ) -> None:
        where = f" line {line}" if line else ""
        super().__init__(f"template {template!r} locale {locale!r} part {part!r}{where}: {message}")
        self.template = template
        self.locale = locale
        self.part = part
        self.line = line
        self.over_budget = over_budget
        self.retryable = retryable


class TemplateValuesError(ValueError):
    """The request's …TemplateValues break a limit; `key` names the offending key when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------------------
# Request values
# ---------------------------------------------------------------------------------------------------------


def clean_template_values(raw: Mapping[str, object] | None) -> dict[str, str]:
    """Check the request's mfaTemplateValues / verificationTemplateValues and return a plain copy."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TemplateValuesError("template values must be an object of strings")
    if len(raw) > MAX_VALUES:
        raise TemplateValuesError(f"at most {MAX_VALUES} template values are allowed, got {len(raw)}")
    cleaned: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _VALUE_KEY_RE.fullmatch(key) or len(key) > MAX_VALUE_KEY_CHARS:
            raise TemplateValuesError(
                f"template value key {key!r} must be 1-{MAX_VALUE_KEY_CHARS} characters of A-Z, a-z, 0-9, _",
                key=str(key),
            )
        if not isinstance(value, str):
            raise TemplateValuesError(f"template value {key!r} must be a string", key=key)
        if len(value) > MAX_VALUE_CHARS:
            raise TemplateValuesError(
                f"template value {key!r} is longer than {MAX_VALUE_CHARS} characters", key=key
            )
        if _CONTROL_RE.search(value):
            # Line breaks would let a value start new lines in a subject or forge the SMS WebOTP line.
            raise TemplateValuesError(f"template value {key!r} contains control characters", key=key)
        # str() drops any subclass such as markupsafe.Markup, which autoescape would trust as HTML.
        cleaned[key] = str(value)
    return cleaned
