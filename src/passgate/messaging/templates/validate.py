"""Save-time checks of a template, as problems the console can show next to the field."""

from __future__ import annotations

from collections.abc import Mapping

import jinja2
from jinja2 import meta, nodes

from passgate.messaging import template_bounds
from passgate.messaging.sandbox import (
    template_line,
)
from passgate.messaging.templates.models import (
    _LOCALE_RE,
    _NAME_RE,
    _PLACEHOLDER_BY_KIND,
    _PLACEHOLDER_PARTS,
    MAX_LOCALES,
    MAX_PART_CHARS,
    MAX_SMS_SEGMENTS,
    PARTS_BY_CHANNEL,
    VARIABLES,
    Brand,
    LocaleContent,
    MessageTemplate,
    PersonName,
    RenderContext,
    TemplateProblem,
)
from passgate.messaging.templates.rendering import (
    _compile,
    _context_data,
    _environment,
    _refusals,
    _render_part,
)
from passgate.messaging.templates.sms import (
    sms_info,
)

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
