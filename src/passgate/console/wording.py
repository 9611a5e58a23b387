"""What a person reads when a console form is refused: plain sentences that say what to do.

The API keeps pydantic's messages and its field paths (integrations parse them); the console turns each
validation error into a sentence from its type and limits, so no library text ("Input should be greater
than or equal to 4") reaches a person. Pure: no I/O.
"""

from __future__ import annotations

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
