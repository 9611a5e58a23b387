"""The byte scan in front of passgate.api.inputs.json_problems is a shortcut: on generated JSON texts it
must find exactly what parsing every body finds."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from passgate.api.inputs import json_problems

# Numbers written as JSON texts, including the ones Python's json reads as non-finite or past int64.
number_texts = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999", "-1e999999", "1e308", "1e309", "1E-400"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-99, 99), st.integers(-400, 400)),
    st.integers(min_value=300, max_value=320).map(lambda n: "9" * n + ".5"),
)
string_texts = st.one_of(
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(['"a\\u0000b"', '"\\ud800"', '"\\ud83d\\ude00"', '"\\uDC00x"', '"NaN"', '"Infinity 1e999"']),
)
scalars = st.one_of(number_texts, string_texts, st.sampled_from(["true", "false", "null"]))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(string_texts, inner), max_size=4).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=1000, deadline=None)
@given(documents)
def test_the_scan_finds_what_parsing_finds(text: str) -> None:
    body = text.encode("utf-8", "surrogatepass")
    assert json_problems(body) == json_problems(body, scan=False)


def test_each_kind_of_value_is_named() -> None:
    body = b'{"a": NaN, "b": [1, 1e999999], "c": {"d": "x\\u0000"}, "e": 9223372036854775808, "f": "\\ud800"}'
    assert json_problems(body) == [
        {"field": "a", "message": "must be a finite number"},
        {"field": "b[1]", "message": "must be a finite number"},
        {"field": "c.d", "message": "must not contain a NUL character"},
        {"field": "e", "message": "must be an integer from -9223372036854775808 to 9223372036854775807"},
        {"field": "f", "message": "must be valid Unicode text (a lone UTF-16 surrogate is not)"},
    ]
    assert json_problems(b'{"n": 1e308, "m": -9223372036854775808, "s": "NaN \\ud83d\\ude00"}') == []
    assert math.isfinite(1e308)
