import re

import pytest
from markupsafe import Markup
from pydantic import ValidationError

from passgate.messaging import templates
from passgate.messaging.templates import (
    Brand,
    LocaleContent,
    MessageTemplate,
    PersonName,
    RenderContext,
    TemplateRenderError,
    TemplateValuesError,
    builtin_templates,
    clean_template_values,
    render,
    sample_context,
    sms_info,
    validate_template,
)

TOKEN = "A" * 43
LINK = f"https://passgate.example.com/v/{TOKEN}"
COMPANY_30 = "Northwind Online Banking Group"
HOST = "passgate.example.com"

EMAIL_OK = {
    "subject": "Sign in to {{ brand.companyName }}",
    "html": '<a href="{{ link }}">Go</a>',
    "text": "{{ link }}",
}


def email(kind="OTH", **locales):
    return MessageTemplate(
        name="custom", channel="EMAIL", kind=kind, locales=locales or {"en": EMAIL_OK}, default_locale="en"
    )


def sms(body, kind="OTH", locale="en"):
    return MessageTemplate(
        name="custom", channel="SMS", kind=kind, locales={locale: {"sms": body}}, default_locale=locale
    )


def context(**overrides):
    fields = dict(
        brand=Brand(company_name="Acme"),
        host=HOST,
        expires_in_minutes=10,
        link=LINK,
        code="123456",
        person=PersonName(first="Ana"),
    )
    fields.update(overrides)
    return RenderContext(**fields)


def problem_keys(template):
    return {(p.locale, p.part, p.field) for p in validate_template(template)}


# --- placeholders ---------------------------------------------------------------------------------------


def test_valid_custom_email_template_has_no_problems():
    assert validate_template(email()) == []


def test_oth_email_missing_link_in_one_locales_html_names_that_locale_and_part():
    es = {**EMAIL_OK, "html": "<p>Hola</p>"}
    problems = validate_template(email(en=EMAIL_OK, es=es))
    assert [(p.locale, p.part, p.field) for p in problems] == [("es", "html", "locales.es.html")]
    assert "{{ link }}" in problems[0].message


def test_oth_email_text_must_carry_the_link_too():
    problems = validate_template(email(en={**EMAIL_OK, "text": "Open the link in the HTML version"}))
    assert [(p.part, p.field) for p in problems] == [("text", "locales.en.text")]


def test_subject_does_not_need_the_link():
    assert validate_template(email(en={**EMAIL_OK, "subject": "Hello"})) == []


@pytest.mark.parametrize(
    "body", ["{{link}}", "{{ link }}", "{{- link -}}", "{{ link|e }}", "Go: {{ link ~ '' }}"]
)
def test_link_placeholder_is_found_in_the_ast_whatever_the_spacing(body):
    assert validate_template(sms(body)) == []


@pytest.mark.parametrize(
    "body",
    ["{# {{ link }} #}", "{% raw %}{{ link }}{% endraw %}", "link", "{% set x = link %}", "{{ 'link' }}"],
)
def test_text_that_merely_mentions_link_does_not_count(body):
    problems = validate_template(sms(body))
    assert [(p.locale, p.part) for p in problems] == [("en", "sms")]
    assert "{{ link }}" in problems[0].message


def test_otp_sms_without_code_is_refused_per_locale():
    template = MessageTemplate(
        name="otp",
        channel="SMS",
        kind="OTP",
        locales={"en": {"sms": "Code {{ code }}"}, "de": {"sms": "Ihr Link {{ link }}"}},
        default_locale="en",
    )
    problems = validate_template(template)
    assert [(p.locale, p.part, p.field) for p in problems] == [("de", "sms", "locales.de.sms")]
    assert "{{ code }}" in problems[0].message


def test_otp_email_needs_code_in_html_and_text():
    template = email(kind="OTP", en={"subject": "Code", "html": "<b>{{ code }}</b>", "text": "{{ link }}"})
    assert [(p.part, p.field) for p in validate_template(template)] == [("text", "locales.en.text")]


# --- structure ------------------------------------------------------------------------------------------


def test_syntax_error_reports_locale_part_and_line():
    html = '<p>one</p>\n<p>two</p>\n<a href="{{ link }}">x</a>\n{% endfor %}\n<p>five</p>\n'
    problems = validate_template(email(en=EMAIL_OK, fr={**EMAIL_OK, "html": html}))
    assert len(problems) == 1
    assert (problems[0].locale, problems[0].part, problems[0].line) == ("fr", "html", 4)
    assert problems[0].message.startswith("syntax error")


def test_syntax_error_line_points_at_the_bad_tag():
    problems = validate_template(sms("{{ link }}\n\n{{ code }\n"))
    assert [(p.part, p.line) for p in problems] == [("sms", 3)]


def test_unknown_filter_is_reported_with_its_line():
    problems = validate_template(sms("{{ link }}\n{{ link|nosuchfilter }}"))
    assert [(p.part, p.line) for p in problems] == [("sms", 2)]
    assert "nosuchfilter" in problems[0].message


def test_unknown_variable_is_reported():
    problems = validate_template(sms("{{ link }} {{ lnik }}"))
    assert len(problems) == 1
    assert "'lnik'" in problems[0].message


def test_misspelt_placeholder_reports_both_the_typo_and_the_missing_link():
    messages = [p.message for p in validate_template(sms("Go: {{ lnik }}"))]
    assert len(messages) == 2
    assert "'lnik'" in messages[0] and "{{ link }}" in messages[1]


def test_parts_that_the_channel_does_not_have_are_reported():
    template = email(en={**EMAIL_OK, "sms": "{{ link }}", "body": "hi"})
    assert problem_keys(template) == {("en", "sms", "locales.en.sms"), ("en", "body", "locales.en.body")}


def test_missing_required_email_part_is_reported():
    template = email(en={"subject": "Hi", "html": "{{ link }}"})
    assert problem_keys(template) == {("en", "text", "locales.en.text")}


def test_locale_keys_must_be_language_tags_and_default_must_exist():
    template = MessageTemplate(
        name="custom",
        channel="SMS",
        kind="OTH",
        locales={"en": {"sms": "{{ link }}"}, "pt_br": {"sms": "{{ link }}"}, "pt-BR": {"sms": "{{ link }}"}},
        default_locale="fr",
    )
    problems = validate_template(template)
    assert {p.field for p in problems} == {"locales.pt_br", "defaultLocale"}
    assert "'pt-BR'" in next(p.message for p in problems if p.field == "locales.pt_br")


@pytest.mark.parametrize("tag", ["en", "pt-BR", "zh-Hant-TW", "es-419", "fil"])
def test_well_formed_locale_tags_are_accepted(tag):
    assert validate_template(sms("{{ link }}", locale=tag)) == []


def test_bad_template_name_is_reported():
    template = sms("{{ link }}").model_copy(update={"name": "Bad Name"})
    assert [p.field for p in validate_template(template)] == ["name"]


def test_sms_longer_than_three_segments_with_sample_values_is_refused():
    body = "{{ link }}" + "x" * (153 * 3 - len(LINK) + 1)  # one unit over three segments
    problems = validate_template(sms(body))
    assert len(problems) == 1
    assert "4 GSM-7 segments" in problems[0].message


def test_sms_of_exactly_three_segments_is_accepted():
    body = "{{ link }}" + "x" * (153 * 3 - len(LINK))
    assert sms_info(render(sms(body), "en", context()).sms or "").segments == 3
    assert validate_template(sms(body)) == []


def test_values_referenced_by_the_template_get_sample_text_in_the_length_check():
    body = "{{ link }}" + " {{ values.orderId }}" * 40
    problems = validate_template(sms(body))
    assert any("renders to 4 GSM-7 segments with sample values" in p.message for p in problems)


# --- refused constructs and SSTI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "word"),
    [
        ("{% include 'other.html' %}", "include"),
        ("{% import 'macros.html' as m %}", "import"),
        ("{% from 'macros.html' import x %}", "import"),
        ("{% extends 'base.html' %}", "extends"),
        ("{% block body %}x{% endblock %}", "block"),
        ("{% autoescape false %}{{ values.x }}{% endautoescape %}", "autoescape"),
        ("{{ values.x|safe }}", "must stay escaped"),
        ("{% filter safe %}{{ values.x }}{% endfilter %}", "must stay escaped"),
    ],
)
def test_loader_and_unescaping_constructs_are_refused_at_save_time_and_at_render(snippet, word):
    template = email(en={**EMAIL_OK, "html": '<a href="{{ link }}">x</a>\n' + snippet})
    problems = validate_template(template)
    assert problems, snippet
    assert all((p.part, p.line) == ("html", 2) for p in problems)
    assert any(word in p.message for p in problems)
    with pytest.raises(TemplateRenderError):
        render(template, "en", context(values={"x": "<script>"}))


SSTI = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum }}",
    "{{ cycler }}",
    "{{ joiner }}",
    "{{ namespace }}",
    "{{ range }}",
    "{{ dict }}",
    "{{ config }}",
    "{{ request }}",
    "{{ ''.format }}",
    "{{ '{0.__class__}'.format(link) }}",
    "{{ '{0}'.format(link) }}",
    "{{ '%s'|format(link.__class__) }}",
    "{{ '%s' % link }}",
    "{{ '%(a)s' % values }}",
    "{{ values.items() }}",
    "{{ brand.keys() }}",
    "{{ link.upper }}",
    "{{ link|attr('__class__') }}",
    "{{ link['__class__'] }}",
    "{{ values.__class__ }}",
    "{{ values['__class__'] }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set x = link.__class__ %}{{ x }}",
    "{{ 'x' * 100000000 }}",
    "{{ 9 ** 9999999 }}",
]
# Checked without the angle brackets so that an HTML-escaped repr counts as a leak too.
LEAKS = ("class", "function", "built-in", "bound", "method", "module", "__", "TemplateReference", "Context",
         "object at 0x", "mro", "globals", "Cycler", "uid=")  # fmt: skip


@pytest.mark.parametrize("payload", SSTI)
@pytest.mark.parametrize("part", ["html", "text"])
def test_template_injection_is_refused_at_save_time(payload, part):
    content = {**EMAIL_OK, part: EMAIL_OK[part] + payload}
    assert validate_template(email(en=content)) != []


@pytest.mark.parametrize("payload", SSTI)
@pytest.mark.parametrize("part", ["html", "text", "subject"])
def test_template_injection_stored_anyway_renders_inert_or_fails(payload, part):
    # As if the template had been stored before a rule existed: render must not leak either way.
    content = {**EMAIL_OK, part: EMAIL_OK[part] + payload}
    try:
        message = render(email(en=content), "en", context(values={"a": "b"}))
    except TemplateRenderError:
        return
    output = getattr(message, part)
    for leak in LEAKS:
        assert leak not in output, (payload, output)


def test_attribute_syntax_reads_keys_not_methods():
    message = render(
        sms("{{ link }}|{{ values.items }}|{{ values.keys }}"), "en", context(values={"items": "3"})
    )
    assert message.sms == f"{LINK}|3|"


def test_render_errors_from_template_code_become_template_render_error():
    template = sms("{{ link }}{{ 1 / 0 }}")
    with pytest.raises(TemplateRenderError) as caught:
        render(template, "en", context())
    assert (caught.value.locale, caught.value.part) == ("en", "sms")
    assert validate_template(template)[0].message.startswith("sms cannot be rendered")


# --- escaping and rendering -----------------------------------------------------------------------------

SCRIPT = "<script>alert('x')</script>"


def test_request_values_and_names_are_escaped_in_html_only():
    template = email(
        en={
            "subject": "Hi {{ values.x }}",
            "html": '<a href="{{ link }}">{{ values.x }}</a> {{ person.name.first }} {{ values["x"] }}',
            "text": "{{ link }} {{ values.x }}",
        }
    )
    message = render(template, "en", context(values={"x": SCRIPT}, person=PersonName(first=SCRIPT)))
    assert "<script>" not in (message.html or "")
    assert message.html.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 3
    assert message.text == f"{LINK} {SCRIPT}"
    assert message.subject == f"Hi {SCRIPT}"


def test_markup_smuggled_into_values_is_still_escaped():
    message = render(email(en={**EMAIL_OK, "html": "{{ link }}{{ values.x }}"}), "en",
                     context(values={"x": Markup("<b>bold</b>")}))  # fmt: skip
    assert message.html == f"{LINK}&lt;b&gt;bold&lt;/b&gt;"


def test_missing_optional_variables_render_empty():
    template = sms("{{ link }}|{{ person.name.last }}|{{ values.nope }}|{{ brand.logoUrl }}|{{ a.b.c }}")
    assert render(template, "en", context()).sms == f"{LINK}||||"


def test_absent_link_or_code_renders_empty_not_none():
    message = render(sms("{{ code }}|{{ link }}", kind="OTP"), "en", context(link=None))
    assert message.sms == "123456|"


def test_loops_filters_and_defaults_work_for_authors():
    body = "{{ link }}{% for k, v in values|dictsort %} {{ loop.index }}:{{ k }}={{ v|upper }}{% endfor %}"
    body += " {{ values.missing|default('n/a') }} {{ brand.companyName|truncate(7) }}"
    message = render(sms(body), "en", context(values={"b": "two", "a": "one"}))
    assert message.sms == f"{LINK} 1:a=ONE 2:b=TWO n/a Acme"


def test_subject_is_flattened_to_one_line():
    template = email(en={**EMAIL_OK, "subject": "Hello\n{{ values.x }}\r\nthere"})
    assert render(template, "en", context(values={"x": "a\nb"})).subject == "Hello a b there"


def test_unknown_locale_falls_back_to_the_default():
    template = email(en=EMAIL_OK, fr={**EMAIL_OK, "subject": "Bonjour"})
    assert render(template, "fr", context()).subject == "Bonjour"
    message = render(template, "ja", context())
    assert (message.locale, message.subject) == ("en", "Sign in to Acme")


def test_context_exposes_brand_host_and_direction():
    body = "{{ link }} {{ brand.companyName }} {{ brand.primaryColor }} {{ host }} {{ expiresInMinutes }}"
    template = sms(body + " {{ dir }}", locale="ar")
    assert render(template, "ar", context()).sms == f"{LINK} Acme #2563eb {HOST} 10 rtl"


def test_compiled_templates_are_cached():
    template = sms("{{ link }} cached " + "x")
    render(template, "en", context())
    before = templates._compile.cache_info().hits
    render(template, "en", context())
    assert templates._compile.cache_info().hits == before + 1


# --- request values -------------------------------------------------------------------------------------


def test_clean_template_values_returns_plain_strings():
    cleaned = clean_template_values({"orderId": Markup("<b>1</b>"), "x_1": ""})
    assert cleaned == {"orderId": "<b>1</b>", "x_1": ""}
    assert type(cleaned["orderId"]) is str
    assert clean_template_values(None) == {}


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"bad-key": "v"}, "bad-key"),
        ({"k" * 65: "v"}, "k" * 65),
        ({"": "v"}, ""),
        ({"amount": 12}, "amount"),
        ({"note": "x" * 257}, "note"),
        ({"note": "two\nlines"}, "note"),
    ],
)
def test_clean_template_values_names_the_bad_key(values, key):
    with pytest.raises(TemplateValuesError) as caught:
        clean_template_values(values)
    assert caught.value.key == key
    assert isinstance(caught.value, ValueError)


def test_clean_template_values_limits_the_number_of_keys():
    assert len(clean_template_values({f"k{i}": "v" for i in range(20)})) == 20
    with pytest.raises(TemplateValuesError, match="at most 20"):
        clean_template_values({f"k{i}": "v" for i in range(21)})


def test_clean_template_values_accepts_the_limits_exactly():
    assert clean_template_values({"k" * 64: "v" * 256}) == {"k" * 64: "v" * 256}


# --- brand ----------------------------------------------------------------------------------------------


def test_brand_accepts_camel_case_and_normalises_colour():
    support = "mailto:help@acme.test"
    brand = Brand.model_validate({"companyName": "Acme", "primaryColor": "#ABC", "supportUrl": support})
    assert (brand.company_name, brand.primary_color, brand.support_url) == ("Acme", "#aabbcc", support)


@pytest.mark.parametrize(
    "fields",
    [
        {"primaryColor": "red"},
        {"primaryColor": "#123456;background:url(x)"},
        {"logoUrl": "javascript:alert(1)"},
        {"supportUrl": "data:text/html,x"},
        {"senderName": "Acme\r\nBcc: x@y"},
        {"companyName": ""},
    ],
)
def test_brand_rejects_values_that_could_break_out_of_html_or_headers(fields):
    with pytest.raises(ValidationError):
        Brand.model_validate({"companyName": "Acme", **fields})


def test_button_text_colour_contrasts_with_the_primary_colour():
    assert Brand(company_name="A", primary_color="#1a73e8").primary_text_color == "#ffffff"
    assert Brand(company_name="A", primary_color="#ffeb3b").primary_text_color == "#111827"


# --- built-in templates ---------------------------------------------------------------------------------

BUILTIN_LOCALES = {"en", "es", "fr", "de", "ar"}
FULL_BRAND = Brand(
    company_name=COMPANY_30,
    logo_url="https://cdn.example.com/logo.png",
    primary_color="#0f766e",
    support_url="https://help.example.com/",
    sender_name="Northwind",
)


def builtin_context(brand=None, minutes=10):
    return RenderContext(
        brand=brand or Brand(company_name=COMPANY_30),
        host=HOST,
        expires_in_minutes=minutes,
        link=LINK,
        code="123456",
        person=PersonName(first="Ana", last="García"),
    )


def test_builtin_names_channels_and_kinds():
    found = {name: (t.channel, t.kind, t.default_locale) for name, t in builtin_templates().items()}
    assert found == {
        "email-link": ("EMAIL", "OTH", "en"),
        "email-code": ("EMAIL", "OTP", "en"),
        "sms-link": ("SMS", "OTH", "en"),
        "sms-code": ("SMS", "OTP", "en"),
    }


@pytest.mark.parametrize("name", ["email-link", "email-code", "sms-link", "sms-code"])
def test_builtin_passes_validation_in_every_locale(name):
    template = builtin_templates()[name]
    assert set(template.locales) == BUILTIN_LOCALES
    assert validate_template(template) == []


@pytest.mark.parametrize("name", ["email-link", "email-code", "sms-link", "sms-code"])
@pytest.mark.parametrize("locale", sorted(BUILTIN_LOCALES))
@pytest.mark.parametrize("brand", [None, FULL_BRAND], ids=["plain-brand", "full-brand"])
def test_builtin_renders_in_every_locale(name, locale, brand):
    template = builtin_templates()[name]
    message = render(template, locale, builtin_context(brand))
    assert message.locale == locale
    secret = LINK if template.kind == "OTH" else "123456"
    if template.channel == "SMS":
        assert secret in message.sms
        assert COMPANY_30 in message.sms
        assert "{" not in message.sms and "None" not in message.sms
        return
    assert COMPANY_30 in message.subject and "\n" not in message.subject
    for body in (message.html, message.text):
        assert secret in body
        assert "10" in body
        assert "{{" not in body and "{%" not in body and "None" not in body
    assert message.html.startswith("<!DOCTYPE html>")
    assert ("Ana" in message.html) and ("Ana" in message.text)
    assert (FULL_BRAND.support_url in message.html) is (brand is not None)
    assert (FULL_BRAND.support_url in message.text) is (brand is not None)
    assert ('<img src="https://cdn.example.com/logo.png"' in message.html) is (brand is not None)


@pytest.mark.parametrize("name", ["email-link", "email-code"])
@pytest.mark.parametrize("locale", sorted(BUILTIN_LOCALES))
def test_builtin_email_html_is_self_contained_and_inline_styled(name, locale):
    html = render(builtin_templates()[name], locale, builtin_context(FULL_BRAND)).html
    lowered = html.lower()
    for forbidden in ("<style", "<link", "@import", "@font-face", "fonts.googleapis", "<script", "class="):
        assert forbidden not in lowered
    assert 'role="presentation"' in html
    assert "max-width:560px" in html
    assert re.search(r'<div style="display:none;[^"]*">[^<]{10,}', html), "hidden preheader"
    direction = "rtl" if locale == "ar" else "ltr"
    assert f'<html lang="{locale}" dir="{direction}">' in html
    assert f'<body lang="{locale}" dir="{direction}"' in html
    assert html.count(f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
                      f'lang="{locale}" dir="{direction}"') == 2  # fmt: skip
    assert "border-top:4px solid #0f766e" in html


@pytest.mark.parametrize("locale", sorted(BUILTIN_LOCALES))
def test_builtin_email_link_has_a_branded_button_and_the_plain_link(locale):
    html = render(builtin_templates()["email-link"], locale, builtin_context(FULL_BRAND)).html
    assert 'bgcolor="#0f766e"' in html
    assert re.search(rf'<a href="{re.escape(LINK)}"[^>]*color:#ffffff;[^>]*>[^<]+</a>', html), "button"
    assert f">{LINK}</a>" in html, "link written out for copy-paste"
    assert html.count(f'href="{LINK}"') == 2


def test_builtin_email_link_english_wording():
    message = render(builtin_templates()["email-link"], "en", builtin_context(FULL_BRAND))
    for body in (message.html, message.text):
        assert "This link expires in 10 minutes" in body
        assert "Wasn't you? Open the link and choose “This wasn't me”, then change your password" in body
    assert message.subject == f"Confirm it's you – {COMPANY_30}"
    assert 'Need help? <a href="https://help.example.com/"' in message.html
    assert message.text.splitlines()[:3] == ["Confirm it's you", "", "Hi Ana,"]


def test_builtin_email_code_shows_the_code():
    message = render(builtin_templates()["email-code"], "en", builtin_context())
    assert ">123456</td>" in message.html
    assert "\n123456\n" in message.text
    assert "This code expires in 10 minutes." in message.text


def test_builtin_without_a_name_greets_plainly():
    context = RenderContext(brand=Brand(company_name="Acme"), host=HOST, expires_in_minutes=1, link=LINK)
    message = render(builtin_templates()["email-link"], "en", context)
    assert "\nHi,\n" in message.text
    assert "This link expires in 1 minute and" in message.text


@pytest.mark.parametrize(
    ("minutes", "phrase"),
    [
        (1, "دقيقة واحدة"),
        (2, "دقيقتين"),
        (5, "5 دقائق"),
        (10, "10 دقائق"),
        (15, "15 دقيقة"),
        (103, "103 دقائق"),
    ],
)
def test_builtin_arabic_uses_the_right_plural(minutes, phrase):
    message = render(builtin_templates()["email-link"], "ar", builtin_context(minutes=minutes))
    assert f"خلال {phrase}،" in message.text
    assert f"خلال {phrase}،" in message.html


@pytest.mark.parametrize("name", ["sms-link", "sms-code"])
def test_builtin_english_sms_fits_one_gsm7_segment_with_a_30_character_company(name):
    assert len(COMPANY_30) == 30 and len(TOKEN) == 43
    body = render(builtin_templates()[name], "en", builtin_context()).sms
    info = sms_info(body)
    assert (info.encoding, info.segments) == ("GSM-7", 1), body


@pytest.mark.parametrize("locale", ["es", "fr", "de"])
@pytest.mark.parametrize("name", ["sms-link", "sms-code"])
def test_builtin_latin_sms_also_stays_gsm7(name, locale):
    info = sms_info(render(builtin_templates()[name], locale, builtin_context()).sms)
    assert (info.encoding, info.segments) == ("GSM-7", 1)


@pytest.mark.parametrize("locale", sorted(BUILTIN_LOCALES))
def test_builtin_otp_sms_ends_with_the_webotp_line(locale):
    body = render(builtin_templates()["sms-code"], locale, builtin_context()).sms
    assert body.endswith(f"\n\n@{HOST} #123456")
    assert body.splitlines()[-1] == f"@{HOST} #123456"
    assert body.count("123456") == 2


def test_builtin_english_otp_sms_exact_text():
    body = render(builtin_templates()["sms-code"], "en", builtin_context(Brand(company_name="Acme")))
    assert body.sms == f"Acme code: 123456. Expires in 10 min. Don't share it.\n\n@{HOST} #123456"


def test_builtin_templates_are_parsed_into_the_public_model():
    template = builtin_templates()["sms-link"]
    assert isinstance(template.locales["en"], LocaleContent)
    assert template.model_dump(by_alias=True)["defaultLocale"] == "en"


def test_sample_context_uses_a_realistic_company_and_link():
    sample = sample_context()
    assert len(sample.brand.company_name) == 30
    assert sample.link is not None and len(sample.link.rsplit("/", 1)[1]) == 43
