"""What a person reads when a console form is refused: plain sentences that say what to do.

The API keeps pydantic's messages and its field paths (integrations parse them); the console turns each
validation error into a sentence from its type and limits, so no library text ("Input should be greater
than or equal to 4") reaches a person. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def _n(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plain(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence that says what to enter instead."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return (
            f"Enter a number of at least {_n(bound)}."
            if kind == "greater_than_equal"
            else (f"Enter a number above {_n(bound)}.")
        )
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return (
            f"Enter a number of at most {_n(bound)}."
            if kind == "less_than_equal"
            else (f"Enter a number below {_n(bound)}.")
        )
    if kind == "multiple_of":
        return f"Enter a multiple of {_n(ctx.get('multiple_of'))}."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "Enter a whole number, digits only."
    if kind in ("float_parsing", "float_type", "decimal_parsing"):
        return "Enter a number."
    if kind in ("bool_parsing", "bool_type"):
        return "Choose yes or no."
    if kind == "missing":
        return "Fill this in."
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "Fill this in." if least == 1 else f"Enter at least {least} characters."
    if kind == "string_too_long":
        return f"Shorten this to {ctx.get('max_length')} characters or fewer."
    if kind in ("too_long",):
        return f"Give at most {ctx.get('max_length')} items."
    if kind in ("too_short",):
        return f"Give at least {ctx.get('min_length')} items."
    if kind in ("url_parsing", "url_scheme", "url_type"):
        return "Enter a full web address, starting with https://."
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"Choose one of: {expected}." if expected else "Choose one of the options."
    if kind in ("datetime_parsing", "datetime_from_date_parsing", "timezone_aware"):
        return "Enter a date and time."
    if kind == "extra_forbidden":
        return "This field is not expected here: remove it."
    message = str(error.get("msg", "")).removeprefix("Value error, ").strip()
    if kind == "value_error" and message:
        # Our own validators speak to people already; make it a sentence.
        return message[0].upper() + message[1:] + ("" if message.endswith(".") else ".")
    return "Check this value."


def plain_errors(errors: Sequence[Mapping[str, Any]], field: Any) -> list[dict[str, str]]:
    """Pydantic's errors as the console's `{field, message}` list: one per field, the first error wins.

    `field` spells a pydantic `loc` as the key the form uses for that input."""
    out: dict[str, str] = {}
    for error in errors:
        key = field(tuple(error.get("loc", ())))
        out.setdefault(key, plain(error))
    return [{"field": k, "message": v} for k, v in out.items()]


# The template engine's own words (Jinja's), as the save-time check passes them on, and what a person
# reads instead. The line number is shown beside the message already.
_UNCLOSED = {
    "end of print statement": "A {{ … }} is not closed: end it with }}.",
    "end of statement block": "A {% … %} tag is not closed: end it with %}.",
    "end of comment": "A {# … #} comment is not closed: end it with #}.",
}
_PART_NAMES = {"subject": "subject", "html": "HTML body", "text": "plain-text body", "sms": "SMS text"}
_QUOTED = re.compile(r"'([^']{1,40})'")


def _unmatched(text: str) -> str:
    """`{% if %}` without `{% endif %}` and the like, from Jinja's list of the tags it looked for."""
    names = [n for n in _QUOTED.findall(text) if n.startswith("end")]
    if names:
        return f"A tag is not closed: add {{% {names[-1]} %}} after it."
    return "A tag is not closed: add its end tag, such as {% endif %} or {% endfor %}."


def template_message(message: str) -> str:
    """A template check's message with the template engine's wording replaced by a plain sentence that
    says what to fix. Messages of Passgate's own checks pass through, made sentences."""
    text = message.strip()
    lowered = text.lower()
    if lowered.startswith("syntax error:"):
        detail = text.split(":", 1)[1].strip()
        low = detail.lower()
        got = re.search(r", got '([^']{1,40})'$", detail)
        for expected, sentence in _UNCLOSED.items():
            if f"expected '{expected}'" in low or f"expected token '{expected}'" in low:
                if got and not got.group(1).startswith("end of"):
                    what = "A {{ … }}" if expected == "end of print statement" else "A {% … %} tag"
                    return (
                        f"{what} holds something it cannot take, starting at “{got.group(1)}”: remove that, "
                        "or close the braces before it."
                    )
                return sentence
        if "end of comment" in low:
            return _UNCLOSED["end of comment"]
        if "was looking for the following tags" in low or "unexpected end of template" in low:
            return _unmatched(detail)
        if low.startswith("encountered unknown tag"):
            names = _QUOTED.findall(detail)
            name = names[0] if names else "?"
            if name.startswith("end"):
                return (
                    f"The tag {{% {name} %}} has no opening tag to close: remove it or add the tag it ends."
                )
            return f"There is no {{% {name} %}} tag in message templates."
        if low.startswith("expected an expression"):
            return "Something is missing inside a tag or {{ … }}: for example {% if %} needs a condition."
        if low.startswith("unexpected"):
            return "A brace, bracket or quote is out of place here: check this line's {{ … }} and {% … %}."
        return "This line is not written as a template expects: check its {{ … }} and {% … %}."
    if lowered.startswith("no filter named"):
        names = _QUOTED.findall(text)
        return f"There is no filter named {names[0] if names else 'so'}: remove it or check its spelling."
    if lowered.startswith("no test named"):
        names = _QUOTED.findall(text)
        return f"There is no test named {names[0] if names else 'so'}: remove it or check its spelling."
    if " cannot be rendered: " in text:
        part, reason = text.split(" cannot be rendered: ", 1)
        part = _PART_NAMES.get(part, part)
        if reason.startswith("the ") or reason.startswith("a "):  # our own limits speak plainly already
            return _sentence(f"The {part} cannot be made: {reason}")
        return _sentence(
            f"The {part} cannot be made with sample values: a variable, filter or loop here fails"
        )
    return _sentence(text)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "Check this value."
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")
