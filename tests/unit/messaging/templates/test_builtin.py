"""Built-in parts that extend the shared frame (builtin/_base.html) are composed when they load; the
text a client sees is self-contained and keeps the message sandbox's own `{% %}` and `{{ }}`."""

from __future__ import annotations

import jinja2
import pytest

from passgate.messaging.templates import builtin_templates, validate_template
from passgate.messaging.templates.builtin import compose


def test_a_part_that_extends_nothing_is_kept_as_it_is() -> None:
    assert compose("Hi {{ person.name.first }} [x]", "en") == "Hi {{ person.name.first }} [x]"


def test_the_frame_takes_the_locales_language_and_direction() -> None:
    source = '[% extends "_base.html" %][% block title %]T {{ code }}[% endblock %]'
    ltr, rtl = compose(source, "de"), compose(source, "ar")
    assert '<html lang="de" dir="ltr">' in ltr and "<title>T {{ code }}</title>" in ltr
    assert (
        '<html lang="ar" dir="rtl">' in rtl and "text-align:right;" in rtl and "text-align:left;" not in rtl
    )


@pytest.mark.parametrize("name", ["passgate.db", "../template.json", "email-code/en/body.html"])
def test_only_frames_in_the_builtin_folder_can_be_extended(name: str) -> None:
    with pytest.raises(jinja2.TemplateNotFound):
        compose(f'[% extends "{name}" %]', "en")


def test_every_builtin_email_body_is_composed_and_self_contained() -> None:
    for template in builtin_templates().values():
        assert validate_template(template) == []
        for content in template.locales.values():
            for text in (content.html, content.text, content.subject, content.sms):
                assert text is None or ("[%" not in text and "[[" not in text)
            if template.channel == "EMAIL":
                assert content.html is not None and content.html.startswith(("<!DOCTYPE html>", "{% set"))
