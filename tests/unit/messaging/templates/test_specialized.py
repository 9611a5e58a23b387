"""`render_reusing` (a part's output kept and reused with each message's own link, code and names) against
the plain `render`, on generated templates and contexts: the same message, or the same error, every time.

Templates come from two generators: one of the constructs a reusable part may hold (changing values
printed as they are, `or` chains, truth tests, loops and branches around them) salted with the ones that
must send a part the plain way (filters, `~`, comparisons, assignments, macros, filter and set blocks, a
changing value's root shadowed), and the broad generator of the budget tests. Contexts repeat (so kept
pieces are reused) and vary in exactly what is substituted: links, codes and names with HTML specials,
empty, missing, long (past what a budget counts) and many."""

import random

import pytest

from passgate.messaging.templates import (
    Brand,
    LocaleContent,
    MessageTemplate,
    PersonName,
    RenderContext,
    TemplateRenderError,
    builtin_templates,
    clean_template_values,
    render,
    specialized,
)
from passgate.messaging.templates.specialized import PIECES, render_reusing, specialisable
from tests.unit.messaging.test_template_bounds_differential import Generator

PRINTED = [
    "{{ link }}", "{{ code }}", "{{ person.name.first }}", "{{ person.name.last }}",
    "{{ person.name.preferred or person.name.first }}", "{{ values.a }}", "{{ values['b'] }}",
    "{{ person.name.preferred or person.name.first or values.a }}", "{{ values.missing }}",
    "{{ person['name']['first'] }}",
    "{{ brand.companyName }}", "{{ host }}", "{{ expiresInMinutes }}", "{{ locale }} {{ dir }}",
]  # fmt: skip
TESTS = [
    "link", "code", "not link", "person.name.first", "person.name.preferred or person.name.first",
    "values.a and not values.b", "brand.supportUrl", "expiresInMinutes == 1", "not (code or link)",
]  # fmt: skip
# Each of these uses a changing value in a way a reusable part may not: the part goes the plain way.
PLAIN_ONLY = [
    "{{ link|upper }}", "{{ person.name.first ~ '!' }}", "{% set link = 'z' %}{{ link }}",
    "{% for person in [1, 2] %}{{ person }}{% endfor %}", "{% filter upper %}{{ code }}{% endfilter %}",
    "{{ link if code else 'no' }}", "{% if link == 'x' %}eq{% endif %}", "{{ values|length }}",
    "{% macro m(x) %}[{{ x }}]{% endmacro %}{{ m(link) }}", "{% set t %}{{ code }}{% endset %}{{ t|upper }}",
    "{{ person.name }}", "{{ values.a|e }}", "{% for i in values %}{{ i }}{% endfor %}",
    "{% if link is defined %}d{% endif %}", "{{ (link or '')[:5] }}", "{{ code * 2 }}",
    "{% for x in [1] if link %}{{ x }}{% endfor %}", "{% with code = 1 %}{{ code }}{% endwith %}",
    "{{ link and code }}", "{{ person.name.middle }}",
]  # fmt: skip
TEXT = ["plain ", "<b>&amp;</b> ", "\n", "é “q” ", "{{ '<i>' }}", "{% for i in [1, 2] %}{{ i }}{% endfor %}"]


def reusable_body(rng: random.Random, depth: int = 0, plain_only: float = 0.0) -> str:
    out = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.randrange(6) if depth < 3 else 0
        if rng.random() < plain_only:
            out.append(rng.choice(PLAIN_ONLY))
        elif kind in (0, 1):
            out.append(rng.choice(PRINTED))
        elif kind == 2:
            out.append(rng.choice(TEXT))
        elif kind == 3:
            test = rng.choice(TESTS)
            out.append(
                f"{{% if {test} %}}{reusable_body(rng, depth + 1)}"
                + rng.choice(["", f"{{% elif {rng.choice(TESTS)} %}}{reusable_body(rng, depth + 1)}"])
                + f"{{% else %}}{reusable_body(rng, depth + 1)}{{% endif %}}"
            )
        elif kind == 4:
            out.append(f"{{% for i in [1, 2, 3] %}}{reusable_body(rng, depth + 1)}{{{{ i }}}}{{% endfor %}}")
        else:
            out.append(rng.choice(PRINTED) * rng.randint(1, 30))  # many gaps; the subject's limit
    return "".join(out)


def value(rng: random.Random) -> str | None:
    return rng.choice(
        [None, "", "Jo", "Zoë", "<b>Jo</b> & \"'", "a b\nc", "x" * rng.choice([5, 1023, 1024, 3000]), "0"]
    )


def contexts(rng: random.Random) -> list[RenderContext]:
    brands = [
        Brand(company_name="Acme & <Co>"),
        Brand(company_name="Beta", support_url="https://b.example/h"),
    ]
    out = []
    for _ in range(6):
        link = rng.choice(
            [None, "", "https://p.example/v/" + "T" * 43, 'https://p.example/v/<&">', "L" * 1500]
        )
        values = {k: v[:256].replace("\n", " ") for k in ("a", "b") if (v := value(rng)) is not None}
        context = RenderContext(
            brand=rng.choice(brands),
            host=rng.choice(["p.example", "q.example"]),
            expires_in_minutes=rng.choice([1, 10]),
            link=link,
            code=rng.choice([None, "", "123456", "0000000001"]),
            person=PersonName(first=value(rng), last=value(rng), preferred=value(rng)),
            values=clean_template_values(values),
        )
        out += [context] * rng.randint(1, 3)  # kept pieces reused by the same context
        # ...and by one differing only in what is substituted
        out.append(
            RenderContext(
                brand=context.brand,
                host=context.host,
                expires_in_minutes=context.expires_in_minutes,
                link=(context.link or "") + "Q" if context.link else context.link,
                code="654321" if context.code else context.code,
                person=PersonName(
                    first=context.person.first + "!" if context.person.first else context.person.first,
                    last=context.person.last,
                    preferred=context.person.preferred,
                ),
                values=context.values,
            )
        )
    return out


def outcome(fn, template, locale, context):
    try:
        return fn(template, locale, context)
    except TemplateRenderError as exc:
        return ("error", str(exc), exc.part, exc.retryable)


def email(sources: dict[str, str]) -> MessageTemplate:
    content = LocaleContent(**sources)
    return MessageTemplate(
        name="t", channel="EMAIL", kind="OTH", locales={"en": content, "ar": content}, default_locale="en"
    )


def check(template: MessageTemplate, rng: random.Random) -> int:
    compared = 0
    for context in contexts(rng):
        locale = rng.choice(["en", "ar", "fr"])
        plain = outcome(render, template, locale, context)
        reused = outcome(render_reusing, template, locale, context)
        assert reused == plain, (template.locales["en"], context)
        compared += 1
    return compared


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@pytest.mark.parametrize("seed", range(6))
def test_reused_parts_render_the_same_message(seed):
    rng = random.Random(seed)
    PIECES.clear()
    hits = PIECES.hits
    specialisable_parts = plain_parts = 0
    for _ in range(40):
        plain_only = rng.choice([0.0, 0.0, 0.1, 0.4])
        sources = {part: reusable_body(rng, plain_only=plain_only) for part in ("subject", "html", "text")}
        for part, source in sources.items():
            if specialisable(source, part == "html") is None:
                plain_parts += 1
            else:
                specialisable_parts += 1
        check(email(sources), rng)
        sms = MessageTemplate(
            name="s",
            channel="SMS",
            kind="OTP",
            locales={"en": LocaleContent(sms=reusable_body(rng, plain_only=plain_only)[:600])},
            default_locale="en",
        )
        check(sms, rng)
    # The test exercised both ways, and reused kept pieces.
    assert specialisable_parts >= 40 and plain_parts >= 10, (specialisable_parts, plain_parts)
    assert PIECES.hits - hits >= 100


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@pytest.mark.parametrize("seed", range(2))
def test_broadly_generated_templates_render_the_same_message(seed):
    rng = random.Random(1000 + seed)
    compared = 0
    for _ in range(40):
        sources = {part: Generator(rng).body() for part in ("subject", "html", "text")}
        compared += check(email(sources), rng)
    assert compared >= 400


def test_plain_only_constructs_are_not_reused():
    for source in PLAIN_ONLY:
        assert specialisable(source, True) is None, source
        assert specialisable(source, False) is None, source


def test_the_built_in_templates_are_reused_and_render_the_same():
    PIECES.clear()
    rng = random.Random(7)
    for name, template in builtin_templates().items():
        for locale, content in template.locales.items():
            for part in ("subject", "html", "text", "sms"):
                source = getattr(content, part)
                if source is not None:
                    assert specialisable(source, part == "html") is not None, (name, locale, part)
        check(template, rng)
    assert PIECES.hits > 0


def test_a_syntax_error_goes_the_plain_way_with_its_own_words():
    template = email({"subject": "{{ link ", "html": "x", "text": "y"})
    assert specialisable("{{ link ", False) is None
    context = RenderContext(brand=Brand(company_name="A"), host="h", expires_in_minutes=1, link="l")
    assert outcome(render_reusing, template, "en", context) == outcome(render, template, "en", context)


def test_the_sentinel_is_left_as_it_is_by_escaping():
    from markupsafe import escape

    assert str(escape(specialized._SENTINEL)) == specialized._SENTINEL
    assert specialized._SENTINEL.isalnum()
