"""Locale choice (`passgate.locales`): preferred language, phone country, Accept-Language, text direction."""

import pytest

from passgate.locales import choose_locale, is_rtl, negotiate_accept_language

AVAILABLE = ["en", "es", "fr", "de", "ar"]


@pytest.mark.parametrize(
    ("preferred", "phone", "accept", "expected"),
    [
        ("fr", None, None, "fr"),
        ("FR", None, None, "fr"),
        ("es-MX", None, None, "es"),
        ("de_AT", None, None, "de"),
        ("fr", "+34612345678", None, "fr"),  # preferred beats the phone's country
        ("ja", "+34612345678", None, "es"),  # preferred not available -> phone
        (None, "+33612345678", None, "fr"),
        (None, "+4915112345678", None, "de"),
        (None, "+525512345678", None, "es"),
        (None, "+966501234567", None, "ar"),
        (None, "+15145551234", None, "en"),  # Canada: en-CA -> en
        (None, "+14155552671", None, "en"),
        (None, "+819012345678", None, "en"),  # Japanese is not available -> default
        (None, "not a phone", None, "en"),
        (None, None, None, "en"),
        (None, "+819012345678", "de-CH,fr;q=0.5", "de"),  # only when the first two rules fail
        ("es", None, "de", "es"),
    ],
)
def test_choose_locale(preferred, phone, accept, expected):
    assert choose_locale(AVAILABLE, "en", preferred, phone, accept) == expected


def test_choose_locale_finds_a_regional_variant_and_keeps_its_spelling():
    assert choose_locale(["en", "pt-BR"], "en", "pt", None) == "pt-BR"
    assert choose_locale(["en", "pt-BR", "pt-PT"], "en", None, "+351912345678") == "pt-PT"
    assert choose_locale(["en", "zh-Hant", "zh-Hans"], "en", "zh-Hant-TW", None) == "zh-Hant"


def test_choose_locale_returns_the_default_when_nothing_matches():
    assert choose_locale(["de", "fr"], "de", "it", "+819012345678") == "de"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "fr"),
        ("de;q=0.5, es;q=0.9", "es"),
        ("da, en-GB;q=0.8, en;q=0.7", "en"),
        ("ja, ar;q=0.2", "ar"),
        ("DE-de", "de"),
        ("*", "en"),
        ("es;q=0, *", "en"),
        ("en;q=0, *;q=0.1", "es"),
        ("fr;q=abc, de;q=0.5", "de"),
        ("fr;q=1.5, de;q=0.5", "de"),
        ("ja, zh", "en"),
        ("", "en"),
        ("en;q=0.1, fr;q=0.1", "en"),
        ("fr;q=0.1, en;q=0.1", "fr"),
    ],
)
def test_negotiate_accept_language(header, expected):
    assert negotiate_accept_language(header, AVAILABLE, "en") == expected


def test_negotiate_accept_language_ignores_huge_headers_past_the_cap():
    header = ",".join(["xx"] * 60 + ["fr"])
    assert negotiate_accept_language(header, AVAILABLE, "en") == "en"
    assert negotiate_accept_language(None, AVAILABLE, "de") == "de"


@pytest.mark.parametrize(
    ("locale", "rtl"),
    [
        ("ar", True), ("ar-EG", True), ("he", True), ("he-IL", True), ("fa", True), ("ur-PK", True),
        ("pa-Arab", True), ("en", False), ("fr-CA", False), ("de", False), ("az-Latn", False),
        ("az-Arab", True), ("ar-Latn", False),
    ],
)  # fmt: skip
def test_is_rtl(locale, rtl):
    assert is_rtl(locale) is rtl
