"""Rendering in the sandbox: templates are data written by the business's admins, so they are treated as
untrusted code. They render in an immutable Jinja2 sandbox (`messaging.sandbox`) with no globals, a
short list of filters, no loader, and no way to reach Python internals or to un-escape the request's
values in HTML. The same safety checks run at save time (`validate`) and again when a stored template
is first compiled, so a template saved before a rule existed cannot slip past it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jinja2
from jinja2 import nodes

from passgate.locales import (
    is_rtl,
)
from passgate.messaging.sandbox import (
    Budget,
    BudgetExceeded,
    MessageSandbox,
    budget_scope,
    make_environment,
    render_budgeted,
    template_line,
)
from passgate.messaging.templates.models import (
    MAX_TEMPLATE_DEPTH,
    MAX_TEMPLATE_NODES,
    PARTS_BY_CHANNEL,
    LocaleContent,
    MessageTemplate,
    RenderContext,
    RenderedMessage,
    TemplateRenderError,
)

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
