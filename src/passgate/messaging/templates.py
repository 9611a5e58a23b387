"""Message templates: data types, save-time validation, sandboxed rendering, SMS encoding, locale choice.

Everything here is pure: no database, no network, no clock. Templates are data written by the business's
admins (DESIGN §2), so they are treated as untrusted code: they render in an immutable Jinja2 sandbox with
no globals, a short list of filters, no loader, and no way to reach Python internals or to un-escape the
request's values in HTML. The same safety checks run at save time (as problems the console can show next
to the field) and again when a stored template is first compiled, so a template saved before a rule
existed cannot slip past it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import jinja2
import phonenumbers
from jinja2 import meta, nodes
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

from passgate.messaging import template_bounds
from passgate.messaging.sandbox import (
    Budget,
    BudgetExceeded,
    MessageSandbox,
    budget_scope,
    make_environment,
    render_budgeted,
    template_line,
)

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
    """A named message template (DESIGN §2): one channel, one kind, content per locale."""

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


# ---------------------------------------------------------------------------------------------------------
# Sandbox
# ---------------------------------------------------------------------------------------------------------

_HTML_ENV = make_environment(html=True)
_PLAIN_ENV = make_environment(html=False)


def _environment(part: str) -> MessageSandbox:
    return _HTML_ENV if part == "html" else _PLAIN_ENV


def _refusals(tree: nodes.Template) -> list[tuple[int | None, str]]:
    """Constructs refused in any template, as (line, message). Run at save time and before compiling."""
    found: list[tuple[int | None, str]] = []
    count = deepest = 0
    # Walked with a stack, not recursively: how deep the tree is, is one of the things checked here.
    stack: list[tuple[nodes.Node, int]] = [(child, 1) for child in tree.iter_child_nodes()]
    while stack:
        node, depth = stack.pop()
        line = getattr(node, "lineno", None)
        count += 1
        if count == MAX_TEMPLATE_NODES + 1:
            found.append((line, f"a part may have at most {MAX_TEMPLATE_NODES:,} tags, variables, filters and "
                                "operators (text between them is not limited)"))  # fmt: skip
        if depth > MAX_TEMPLATE_DEPTH >= deepest:
            found.append((line, f"tags and expressions may nest at most {MAX_TEMPLATE_DEPTH} deep"))
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
        if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            tag = {
                nodes.Extends: "extends",
                nodes.Include: "include",
                nodes.Import: "import",
                nodes.FromImport: "from … import",
            }[type(node)]
            found.append((line, f"{{% {tag} %}} is not allowed: a template must be self-contained"))
        elif isinstance(node, nodes.Block):
            found.append((line, "{% block %} is not allowed: templates do not inherit"))
        elif isinstance(node, nodes.EvalContextModifier):
            found.append((line, "{% autoescape %} is not allowed: HTML escaping is always on"))
        elif isinstance(node, nodes.Filter) and node.name == "safe":
            found.append((line, "the |safe filter is not allowed: request values must stay escaped"))
        elif isinstance(node, nodes.Name) and node.name in ("self", "super"):
            found.append((line, f"'{node.name}' is not available in message templates"))
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            found.append((line, f"attribute {node.attr!r} is not allowed: names starting with _ are private"))
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            found.append((line, f"key {node.arg.value!r} is not allowed: names starting with _ are private"))
    return found


class _RefusedTemplate(jinja2.TemplateError):
    pass


@functools.lru_cache(maxsize=1024)
def _compile(source: str, html: bool) -> jinja2.Template:
    # Rendering is on the hot path (every challenge); parsing and compiling once per distinct source keeps
    # it to a dict lookup and a render.
    env = _HTML_ENV if html else _PLAIN_ENV
    tree = env.parse(source)
    refused = _refusals(tree)
    if refused:
        line, message = refused[0]
        raise _RefusedTemplate(f"line {line}: {message}" if line else message)
    return env.from_string(tree)


def _context_data(context: RenderContext, locale: str) -> dict[str, object]:
    brand = context.brand
    # Plain dicts of plain str: the sandbox reads keys only, and autoescape escapes anything that is not
    # Markup, so nothing a request sends can be marked safe.
    brand_data = {
        "companyName": brand.company_name,
        "logoUrl": brand.logo_url,
        "primaryColor": brand.primary_color,
        "primaryTextColor": brand.primary_text_color,
        "supportUrl": brand.support_url,
        "senderName": brand.sender_name,
    }
    person = context.person
    name = {"first": person.first, "last": person.last, "preferred": person.preferred}
    return {
        "link": context.link,
        "code": context.code,
        "expiresInMinutes": context.expires_in_minutes,
        "host": context.host,
        "locale": locale,
        "dir": "rtl" if is_rtl(locale) else "ltr",
        "brand": {k: str(v) for k, v in brand_data.items() if v is not None},
        "person": {"name": {k: str(v) for k, v in name.items() if v is not None}},
        "values": {str(k): str(v) for k, v in context.values.items()},
    }


def _render_part(source: str, part: str, data: Mapping[str, object], budget: Budget | None = None) -> str:
    return render_budgeted(_compile(source, part == "html"), part, data, budget)


def _one_line(subject: str) -> str:
    # A subject is a mail header: whatever the template or values did, it leaves here as a single line.
    return " ".join(subject.split())


def render(template: MessageTemplate, locale: str, context: RenderContext) -> RenderedMessage:
    """Render every part of one locale; an unknown locale falls back to the template's default."""
    chosen = locale if locale in template.locales else template.default_locale
    content = template.locales[chosen]
    data = _context_data(context, chosen)
    rendered: dict[str, str] = {}
    with budget_scope() as budget:
        for part in PARTS_BY_CHANNEL[template.channel]:
            rendered[part] = _render_one(template, chosen, content, part, data, budget)
    if "subject" in rendered:
        rendered["subject"] = _one_line(rendered["subject"])
    return RenderedMessage(channel=template.channel, locale=chosen, **rendered)


def _render_one(
    template: MessageTemplate,
    chosen: str,
    content: LocaleContent,
    part: str,
    data: Mapping[str, object],
    budget: Budget,
) -> str:
    source = getattr(content, part)
    if source is None:
        raise TemplateRenderError("part is missing", template=template.name, locale=chosen, part=part)
    try:
        return _render_part(source, part, data, budget)
    # Template code is author-supplied and can fail the way any Python expression can (a sandbox
    # refusal, 1/0, "a" + 1); callers need one exception to handle, whatever the cause.
    except Exception as exc:
        raise TemplateRenderError(
            str(exc),
            template=template.name,
            locale=chosen,
            part=part,
            line=template_line(exc),
            over_budget=isinstance(exc, BudgetExceeded),
            retryable=isinstance(exc, BudgetExceeded) and exc.retryable,
        ) from exc


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------

_SAMPLE_LINK_ID = "Xq3vT9pLm2Rk8sWd4YbN7cHf1JgZ5aEu6oIy0KtQwVx"  # 43 chars, like a 32-byte base64url token


def sample_context(brand: Brand | None = None, values: Mapping[str, str] | None = None) -> RenderContext:
    """Representative values for previews and for the save-time SMS length check."""
    return RenderContext(
        brand=brand or Brand(company_name="Northwind Online Banking Group"),  # 30 characters
        host="passgate.example.com",
        expires_in_minutes=10,
        link=f"https://passgate.example.com/v/{_SAMPLE_LINK_ID}",
        code="123456",
        person=PersonName(first="Alexandra", last="Fitzgerald", preferred="Alex"),
        values=dict(values or {}),
    )


def _outputs_name(tree: nodes.Template, name: str) -> bool:
    """Whether `name` is printed somewhere, e.g. {{ link }}, {{link}} or href="{{ link|e }}"."""
    for output in tree.find_all(nodes.Output):
        for node in output.find_all(nodes.Name):
            if node.name == name and node.ctx == "load":
                return True
    return False


def _value_keys(tree: nodes.Template) -> set[str]:
    keys: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "values":
            keys.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "values"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            keys.add(item.arg.value)
    return keys


def _canonical_locale(tag: str) -> str:
    subtags = tag.replace("_", "-").split("-")
    out = [subtags[0].lower()]
    for sub in subtags[1:]:
        out.append(sub.title() if len(sub) == 4 else sub.upper() if len(sub) == 2 else sub)
    return "-".join(out)


def validate_template(template: MessageTemplate) -> list[TemplateProblem]:
    """Every reason the template cannot be saved; an empty list means it can."""
    problems: list[TemplateProblem] = []
    if not _NAME_RE.fullmatch(template.name):
        problems.append(
            TemplateProblem("name", "name must be 1-64 characters of a-z, 0-9 and -, not starting with -")
        )
    if not template.locales:
        problems.append(TemplateProblem("locales", "a template needs at least one locale"))
    elif len(template.locales) > MAX_LOCALES:
        problems.append(TemplateProblem("locales", f"at most {MAX_LOCALES} locales are allowed"))
    if template.default_locale not in template.locales:
        problems.append(
            TemplateProblem(
                "defaultLocale",
                f"defaultLocale {template.default_locale!r} is not one of the template's locales",
                locale=template.default_locale,
            )
        )
    for locale, content in template.locales.items():
        if not _LOCALE_RE.fullmatch(locale):
            hint = _canonical_locale(locale)
            suggestion = f" (did you mean {hint!r}?)" if _LOCALE_RE.fullmatch(hint) else ""
            problems.append(
                TemplateProblem(
                    f"locales.{locale}",
                    f"locale {locale!r} is not a language tag such as 'en' or 'pt-BR'{suggestion}",
                    locale=locale,
                )
            )
        problems.extend(_validate_locale(template, locale, content))
    return problems


def _validate_locale(template: MessageTemplate, locale: str, content: LocaleContent) -> list[TemplateProblem]:
    problems: list[TemplateProblem] = []
    allowed = PARTS_BY_CHANNEL[template.channel]
    given = content.present_parts()

    def problem(part: str, message: str, line: int | None = None) -> None:
        problems.append(TemplateProblem(f"locales.{locale}.{part}", message, locale, part, line))

    for part in given:
        if part not in allowed:
            problem(part, f"unknown part {part!r} for {template.channel}; expected {', '.join(allowed)}")

    trees: dict[str, nodes.Template] = {}
    renderable: set[str] = set()
    for part in allowed:
        source = given.get(part)
        if not isinstance(source, str) or not source.strip():
            problem(part, f"{part} is required for {template.channel} templates")
            continue
        if len(source) > MAX_PART_CHARS:
            problem(part, f"{part} is longer than {MAX_PART_CHARS} characters")
            continue
        env = _environment(part)
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            problem(part, f"syntax error: {exc.message}", exc.lineno)
            continue
        except RecursionError:  # Jinja's parser recurses once per level of nesting
            problem(part, f"{part} nests too deeply")
            continue
        refused = _refusals(tree)
        for line, message in refused:
            problem(part, message, line)
        if refused:
            continue
        try:
            _compile(source, part == "html")  # the one the sample render below uses
        except jinja2.TemplateSyntaxError as exc:  # unknown filter or test, found while compiling
            problem(part, exc.message or str(exc), exc.lineno)
            continue
        except RecursionError:
            problem(part, f"{part} nests too deeply")
            continue
        trees[part] = tree
        unknown = sorted(meta.find_undeclared_variables(tree) - VARIABLES)
        for name in unknown:
            problem(part, f"unknown variable {name!r}; available: {', '.join(sorted(VARIABLES))}")
        if unknown:
            continue
        # What the sample render below cannot show: the cost with other values, for every request.
        try:
            bounded = template_bounds.analyse(tree, part).problems
        except RecursionError:
            bounded = [(None, f"{part} nests too deeply")]
        for line, message in bounded:
            problem(part, message, line)
        renderable.add(part)

    placeholder = _PLACEHOLDER_BY_KIND[template.kind]
    for part in _PLACEHOLDER_PARTS[template.channel]:
        if part in trees and not _outputs_name(trees[part], placeholder):
            problem(part, f"{template.kind} templates must include {{{{ {placeholder} }}}} in the {part}")

    if len(renderable) != len(allowed):
        return problems
    keys = set().union(*(_value_keys(tree) for tree in trees.values()))
    data = _context_data(sample_context(values={k: "Sample value" for k in keys}), locale)
    for part in allowed:
        try:
            body = _render_part(str(given[part]), part, data)
        except Exception as exc:  # any failure at all is something the author has to fix
            problem(part, f"{part} cannot be rendered: {exc}", template_line(exc))
            continue
        if part == "sms":
            info = sms_info(body)
            if info.segments > MAX_SMS_SEGMENTS:
                problem(
                    part,
                    f"sms renders to {info.segments} {info.encoding} segments with sample values; "
                    f"at most {MAX_SMS_SEGMENTS} are allowed",
                )
    return problems


# ---------------------------------------------------------------------------------------------------------
# SMS encoding
# ---------------------------------------------------------------------------------------------------------

# GSM 03.38 default alphabet (ESC at 0x1B left out: it is not a character) and its extension table,
# whose characters cost an escape plus the character.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def sms_info(body: str) -> SmsInfo:
    """Encoding, length and segment count of an SMS body, as a carrier would bill it."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        encoding: Literal["GSM-7", "UCS-2"] = "GSM-7"
        costs = [2 if c in _GSM_EXTENSION else 1 for c in body]
    else:
        encoding = "UCS-2"
        costs = [2 if ord(c) > 0xFFFF else 1 for c in body]
    units = sum(costs)
    single, per_part = _LIMITS[encoding]
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        # An escape pair or a surrogate pair is never split across parts, so pack greedily rather than
        # divide: a part can end a unit short.
        segments, used = 1, 0
        for cost in costs:
            if used + cost > per_part:
                segments, used = segments + 1, 0
            used += cost
    return SmsInfo(encoding=encoding, characters=len(body), segments=segments, units=units)


# ---------------------------------------------------------------------------------------------------------
# Locales
# ---------------------------------------------------------------------------------------------------------

# Languages to try for a phone number's country, most likely first. Regional tags fall back to the
# bare language when the template has no regional variant.
_REGION_LANGUAGES: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(("US", "GB", "AU", "NZ", "IE", "ZA", "NG", "KE", "GH", "SG", "PH", "JM"), ("en",)),
    "CA": ("en-CA", "fr-CA"),
    "IN": ("en-IN", "hi"),
    "PK": ("ur", "en"),
    **dict.fromkeys(
        (
            "ES",
            "MX",
            "AR",
            "CO",
            "CL",
            "PE",
            "VE",
            "EC",
            "GT",
            "CU",
            "BO",
            "DO",
            "HN",
            "PY",
            "SV",
            "NI",
            "CR",
            "PA",
            "UY",
            "PR",
        ),
        ("es",),
    ),  # fmt: skip
    **dict.fromkeys(("FR", "MC", "SN", "CI", "CM", "ML", "BF", "NE", "HT"), ("fr",)),
    "BE": ("nl-BE", "fr-BE", "de-BE"),
    "CH": ("de-CH", "fr-CH", "it-CH"),
    "LU": ("fr-LU", "de-LU"),
    **dict.fromkeys(("DE", "AT", "LI"), ("de",)),
    "IT": ("it",),
    "NL": ("nl",),
    "PT": ("pt-PT",),
    "BR": ("pt-BR",),
    **dict.fromkeys(("AO", "MZ"), ("pt",)),
    **dict.fromkeys(
        ("SA", "AE", "EG", "QA", "KW", "BH", "OM", "JO", "LB", "IQ", "SY", "YE", "LY", "SD", "PS"), ("ar",)
    ),
    **dict.fromkeys(("MA", "DZ", "TN"), ("ar", "fr")),
    "IL": ("he", "ar"),
    "IR": ("fa",),
    "AF": ("fa-AF", "ps"),
    "TR": ("tr",),
    "GR": ("el",),
    "PL": ("pl",),
    "CZ": ("cs",),
    "SK": ("sk",),
    "HU": ("hu",),
    "RO": ("ro",),
    "BG": ("bg",),
    "HR": ("hr",),
    "RS": ("sr",),
    "SI": ("sl",),
    "UA": ("uk",),
    "RU": ("ru",),
    "SE": ("sv",),
    "NO": ("nb", "no"),
    "DK": ("da",),
    "FI": ("fi", "sv"),
    "IS": ("is",),
    "EE": ("et",),
    "LV": ("lv",),
    "LT": ("lt",),
    "JP": ("ja",),
    "KR": ("ko",),
    "CN": ("zh-CN", "zh-Hans"),
    "TW": ("zh-TW", "zh-Hant"),
    "HK": ("zh-HK", "zh-Hant", "en"),
    "VN": ("vi",),
    "TH": ("th",),
    "ID": ("id",),
    "MY": ("ms", "en"),
    "BD": ("bn",),
}

_RTL_LANGUAGES = frozenset({"ar", "he", "iw", "fa", "ur", "ps", "sd", "ug", "yi", "dv", "ckb", "syr"})
_RTL_SCRIPTS = frozenset({"arab", "hebr", "thaa", "syrc", "nkoo", "adlm", "rohg", "mand", "samr"})


def is_rtl(locale: str) -> bool:
    """Whether text in this locale runs right to left (by script subtag, else by language)."""
    subtags = locale.replace("_", "-").lower().split("-")
    for sub in subtags[1:]:
        if len(sub) == 4 and sub.isalpha():
            return sub in _RTL_SCRIPTS
    return subtags[0] in _RTL_LANGUAGES


def _lookup_locale(wanted: str, available: Sequence[str]) -> str | None:
    """The best available locale for a tag: exact, then shorter prefixes (RFC 4647 lookup), then any
    variant of the same language, so es-MX finds es and pt finds pt-BR. Case-insensitive."""
    by_lower = {tag.replace("_", "-").lower(): tag for tag in available}
    subtags = wanted.strip().replace("_", "-").lower().split("-")
    if not subtags[0]:
        return None
    while subtags:
        candidate = "-".join(subtags)
        if candidate in by_lower:
            return by_lower[candidate]
        subtags.pop()
        if subtags and len(subtags[-1]) == 1:  # drop a dangling singleton such as the x in en-x-foo
            subtags.pop()
    language = wanted.strip().replace("_", "-").lower().split("-")[0]
    for lower, tag in by_lower.items():
        if lower.split("-")[0] == language:
            return tag
    return None


def _phone_languages(phone_e164: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return ()
    region = phonenumbers.region_code_for_number(number)
    return _REGION_LANGUAGES.get(region or "", ())


def choose_locale(
    available: Sequence[str],
    default: str,
    preferred_language_code: str | None,
    phone_e164: str | None,
    accept_language: str | None = None,
) -> str:
    """The locale to send a message in (DESIGN §2): the request's preferredLanguageCode when the template
    has it, else the language of the phone number's country, else (when known) the browser's
    Accept-Language, else the template's default."""
    if preferred_language_code:
        found = _lookup_locale(preferred_language_code, available)
        if found:
            return found
    if phone_e164:
        for language in _phone_languages(phone_e164):
            found = _lookup_locale(language, available)
            if found:
                return found
    if accept_language:
        return negotiate_accept_language(accept_language, available, default)
    return default


_MAX_ACCEPT_LANGUAGE_CHARS = 4096
_MAX_ACCEPT_LANGUAGE_RANGES = 50
_LANGUAGE_RANGE_RE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_QVALUE_RE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


def _parse_accept_language(header: str) -> Iterator[tuple[str, float]]:
    # The header is client-controlled: cap its size before splitting.
    for index, item in enumerate(header[:_MAX_ACCEPT_LANGUAGE_CHARS].split(",")):
        if index >= _MAX_ACCEPT_LANGUAGE_RANGES:
            return
        language_range, *params = (piece.strip() for piece in item.split(";"))
        if not _LANGUAGE_RANGE_RE.fullmatch(language_range):
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE_RE.fullmatch(value) else -1.0
        if weight >= 0:  # a malformed weight makes the element invalid, so it is ignored
            yield language_range, weight


def negotiate_accept_language(header: str | None, available: Sequence[str], default: str) -> str:
    """The best of the template's locales for an RFC 9110 Accept-Language header (for the hosted page)."""
    if not header:
        return default
    ranges = list(_parse_accept_language(header))
    refused = {r.lower() for r, q in ranges if q == 0}
    # sorted() is stable, so equal weights keep the client's order.
    for language_range, _ in sorted((item for item in ranges if item[1] > 0), key=lambda item: -item[1]):
        if language_range == "*":
            candidates: Iterable[str] = [default, *available]
            for tag in candidates:
                if tag.lower() not in refused and tag.split("-")[0].lower() not in refused:
                    return tag
            continue
        found = _lookup_locale(language_range, available)
        if found and found.lower() not in refused:
            return found
    return default


# ---------------------------------------------------------------------------------------------------------
# Built-in templates
# ---------------------------------------------------------------------------------------------------------

# File name in builtin/<template>/<locale>/ -> the part it holds.
_BUILTIN_FILES: Mapping[str, Part] = {
    "subject.txt": "subject",
    "body.html": "html",
    "body.txt": "text",
    "sms.txt": "sms",
}


@functools.cache
def _load_builtin_templates() -> tuple[MessageTemplate, ...]:
    root = resources.files(__package__ or "passgate.messaging").joinpath("builtin")
    loaded: list[MessageTemplate] = []
    for folder in sorted(root.iterdir(), key=lambda entry: entry.name):
        if not folder.is_dir():
            continue
        meta_data = json.loads(folder.joinpath("template.json").read_text(encoding="utf-8"))
        locales: dict[str, dict[str, str]] = {}
        for locale_dir in sorted(folder.iterdir(), key=lambda entry: entry.name):
            if not locale_dir.is_dir():
                continue
            parts = locales.setdefault(locale_dir.name, {})
            for file in locale_dir.iterdir():
                part = _BUILTIN_FILES.get(file.name)
                if part is not None:
                    # Editors end files with a newline; an SMS or a subject should not.
                    parts[part] = file.read_text(encoding="utf-8").removesuffix("\n")
        loaded.append(MessageTemplate.model_validate({**meta_data, "name": folder.name, "locales": locales}))
    return tuple(loaded)


def builtin_templates() -> dict[str, MessageTemplate]:
    """The templates shipped with Passgate, by name. Treat them as read-only: they are shared."""
    return {template.name: template for template in _load_builtin_templates()}
