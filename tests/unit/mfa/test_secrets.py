"""Codes, link tokens and match numbers."""

from __future__ import annotations

import re

import pytest

from passgate.mfa import secrets


@pytest.mark.parametrize("length", [4, 6, 10])
def test_codes_are_digits_of_the_length_asked(length: int) -> None:
    codes = {secrets.new_code(length) for _ in range(200)}
    assert all(re.fullmatch(rf"\d{{{length}}}", c) for c in codes)
    assert len(codes) > 150  # drawn, not fixed


@pytest.mark.parametrize("length", [0, 3, 11])
def test_a_code_length_outside_4_to_10_is_refused(length: int) -> None:
    with pytest.raises(ValueError):
        secrets.new_code(length)


def test_link_tokens_are_43_url_safe_characters_and_never_repeat() -> None:
    tokens = {secrets.new_link_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)


def test_match_numbers_have_two_digits() -> None:
    assert all(10 <= int(secrets.new_match_number()) <= 99 for _ in range(300))


def test_match_choices_are_three_numbers_with_the_answer_the_same_on_every_open() -> None:
    for answer in ("10", "42", "99"):
        for seed in ("a", "b", "c" * 64):
            choices = secrets.match_choices(answer, seed)
            assert len(set(choices)) == 3 and answer in choices
            assert all(10 <= int(c) <= 99 for c in choices)
            assert secrets.match_choices(answer, seed) == choices
    positions = {secrets.match_choices("42", str(i)).index("42") for i in range(50)}
    assert positions == {0, 1, 2}


def test_same_number_compares_the_pick_with_the_answer() -> None:
    assert secrets.same_number("42", "42")
    assert secrets.same_number(" 42 ", "42")
    assert not secrets.same_number("24", "42")
    assert not secrets.same_number(None, "42")
    assert not secrets.same_number("42", None)


def test_codes_are_read_as_their_digits_and_sandbox_codes_are_zeros() -> None:
    assert secrets.normalise_code(" 12-34 56 ") == "123456"
    assert secrets.normalise_code("abc") == ""
    assert secrets.sandbox_code(6) == "000000"


def test_the_last_three_codes_stay_valid() -> None:
    assert secrets.VALID_CODES == 3
