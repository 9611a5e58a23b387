"""The console's plain wording of refused form values: no library text, one sentence per field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from passgate.auth.settings import SettingsBody
from passgate.console.routes.common import page_problem
from passgate.console.wording import plain, template_message


@pytest.mark.parametrize(
    ("values", "field", "expected"),
    [
        ({"otpLength": 99}, "otpLength", "Enter a number of at most 10."),
        ({"otpLength": 2}, "otpLength", "Enter a number of at least 4."),
        ({"maxSends": "three"}, "maxSends", "Enter a whole number, digits only."),
        ({"rejectVoip": "maybe"}, "rejectVoip", "Choose yes or no."),
        ({"smsAllowedCountries": ["US"] * 300}, "smsAllowedCountries", "Give at most 250 items."),
    ],
)
def test_settings_errors_read_as_sentences(values: dict[str, object], field: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SettingsBody.model_validate(values)
    problem = page_problem(caught.value)
    assert problem is not None and problem.status == 400
    assert problem.errors == [{"field": field, "message": expected}]
    assert problem.message == "One value needs a change: see the field marked below."


def test_no_library_text_for_any_error_type() -> None:
    kinds = [
        {
            "type": t,
            "ctx": {
                "ge": 1,
                "le": 9,
                "gt": 0,
                "lt": 10,
                "min_length": 2,
                "max_length": 5,
                "expected": "'a' or 'b'",
            },
        }
        for t in (
            "greater_than_equal",
            "greater_than",
            "less_than_equal",
            "less_than",
            "int_parsing",
            "float_parsing",
            "bool_parsing",
            "missing",
            "string_too_short",
            "string_too_long",
            "too_long",
            "too_short",
            "url_parsing",
            "literal_error",
            "datetime_parsing",
            "extra_forbidden",
            "something_new",
        )
    ]
    for error in kinds:
        sentence = plain({**error, "msg": "Input should be something"})
        assert "Input should" not in sentence and sentence.endswith("."), (error, sentence)
    # Our own validators' messages are kept, as a sentence.
    assert plain({"type": "value_error", "msg": "Value error, use a hex colour"}) == "Use a hex colour."


# Broken templates as authors type them; each check's message is read in plain words.
BROKEN = [
    "Code {{ code ",
    "Code {{ code xyz",
    "Code {% if code x %}{% endif %}",
    "Code {{ code }} {% if x %}",
    "Code {{ code }} {% if %}",
    "Code {{ code|nope }}",
    "Code {{ code is nope }}",
    "Code {{ code }} {% endfor %}",
    "Code {{ code }} {% endif %}",
    "Code {{ code }} {# note",
    "Code {{ code }} {% for x in values %}",
    "Code {{ code }} {{ 'open }}",
    "Code {{ code }} {{ (1 }}",
    "Code {{ code }} {% set x = %}",
    "Code {{ code }} {% frobnicate %}",
    "Code {{ code }} {{ values.x|int(1,2,3,4) }}",
    "Code {{ code }} {{ code + 1 }}",
    "Code {{ code }} {% if x %}{% else %}{% else %}{% endif %}",
    "Code {{ code }} {{ ] }}",
    "Code {{ code }} {% macro %}{% endmacro %}",
]
ENGINE_WORDS = ("syntax error", "expected '", "jinja", "encountered", "do_", "positional", "got '", "char ")


@pytest.mark.parametrize("source", BROKEN)
def test_template_messages_carry_none_of_the_engines_words(source: str) -> None:
    from passgate.console.previews import draft_template
    from passgate.messaging.templates import validate_template

    problems = validate_template(draft_template("x", "SMS", "OTP", "en", {"sms": source}))
    assert problems, source
    for problem in problems:
        said = template_message(problem.message)
        assert not any(w in said.lower() for w in ENGINE_WORDS), (problem.message, said)
        assert said[0].isupper() and said.endswith("."), said


def test_template_messages_of_our_own_checks_pass_through_as_sentences() -> None:
    assert template_message("OTP templates must include {{ code }} in the sms") == (
        "OTP templates must include {{ code }} in the sms."
    )
    assert template_message("sms cannot be rendered: the sms would be longer than 1,600 characters") == (
        "The SMS text cannot be made: the sms would be longer than 1,600 characters."
    )
