"""Locale choice: which of a template's locales a recipient gets, from a preferred language, an
Accept-Language header or a phone number's country; and which locales are written right to left.

Pure: no database, no network, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

import phonenumbers

# Languages to try for a phone number's country, most likely first. Regional tags fall back to the
# bare language when the template has no regional variant.
_REGION_LANGUAGES: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(("US", "GB", "AU", "NZ", "IE", "ZA", "NG", "KE", "GH", "SG", "PH", "JM"), ("en",)),
    "CA": ("en-CA", "fr-CA"),
    "IN": ("en-IN", "hi"),
    "PK": ("ur", "en"),
    **dict.fromkeys(
        (
            "ES",
            "MX",
            "AR",
            "CO",
            "CL",
            "PE",
            "VE",
            "EC",
            "GT",
            "CU",
            "BO",
            "DO",
            "HN",
            "PY",
            "SV",
            "NI",
            "CR",
            "PA",
            "UY",
            "PR",
        ),
        ("es",),
    ),  # fmt: skip
    **dict.fromkeys(("FR", "MC", "SN", "CI", "CM", "ML", "BF", "NE", "HT"), ("fr",)),
    "BE": ("nl-BE", "fr-BE", "de-BE"),
    "CH": ("de-CH", "fr-CH", "it-CH"),
    "LU": ("fr-LU", "de-LU"),
    **dict.fromkeys(("DE", "AT", "LI"), ("de",)),
    "IT": ("it",),
    "NL": ("nl",),
    "PT": ("pt-PT",),
    "BR": ("pt-BR",),
    **dict.fromkeys(("AO", "MZ"), ("pt",)),
    **dict.fromkeys(
        ("SA", "AE", "EG", "QA", "KW", "BH", "OM", "JO", "LB", "IQ", "SY", "YE", "LY", "SD", "PS"), ("ar",)
    ),
    **dict.fromkeys(("MA", "DZ", "TN"), ("ar", "fr")),
    "IL": ("he", "ar"),
    "IR": ("fa",),
    "AF": ("fa-AF", "ps"),
    "TR": ("tr",),
    "GR": ("el",),
    "PL": ("pl",),
    "CZ": ("cs",),
    "SK": ("sk",),
    "HU": ("hu",),
    "RO": ("ro",),
    "BG": ("bg",),
    "HR": ("hr",),
    "RS": ("sr",),
    "SI": ("sl",),
    "UA": ("uk",),
    "RU": ("ru",),
    "SE": ("sv",),
    "NO": ("nb", "no"),
    "DK": ("da",),
    "FI": ("fi", "sv"),
    "IS": ("is",),
    "EE": ("et",),
    "LV": ("lv",),
    "LT": ("lt",),
    "JP": ("ja",),
    "KR": ("ko",),
    "CN": ("zh-CN", "zh-Hans"),
    "TW": ("zh-TW", "zh-Hant"),
    "HK": ("zh-HK", "zh-Hant", "en"),
    "VN": ("vi",),
    "TH": ("th",),
    "ID": ("id",),
    "MY": ("ms", "en"),
    "BD": ("bn",),
}

_RTL_LANGUAGES = frozenset({"ar", "he", "iw", "fa", "ur", "ps", "sd", "ug", "yi", "dv", "ckb", "syr"})
_RTL_SCRIPTS = frozenset({"arab", "hebr", "thaa", "syrc", "nkoo", "adlm", "rohg", "mand", "samr"})


def is_rtl(locale: str) -> bool:
    """Whether text in this locale runs right to left (by script subtag, else by language)."""
    subtags = locale.replace("_", "-").lower().split("-")
    for sub in subtags[1:]:
        if len(sub) == 4 and sub.isalpha():
            return sub in _RTL_SCRIPTS
    return subtags[0] in _RTL_LANGUAGES


def _lookup_locale(wanted: str, available: Sequence[str]) -> str | None:
    """The best available locale for a tag: exact, then shorter prefixes (RFC 4647 lookup), then any
    variant of the same language, so es-MX finds es and pt finds pt-BR. Case-insensitive."""
    by_lower = {tag.replace("_", "-").lower(): tag for tag in available}
    subtags = wanted.strip().replace("_", "-").lower().split("-")
    if not subtags[0]:
        return None
    while subtags:
        candidate = "-".join(subtags)
        if candidate in by_lower:
            return by_lower[candidate]
        subtags.pop()
        if subtags and len(subtags[-1]) == 1:  # drop a dangling singleton such as the x in en-x-foo
            subtags.pop()
    language = wanted.strip().replace("_", "-").lower().split("-")[0]
    for lower, tag in by_lower.items():
        if lower.split("-")[0] == language:
            return tag
    return None


def _phone_languages(phone_e164: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return ()
    region = phonenumbers.region_code_for_number(number)
    return _REGION_LANGUAGES.get(region or "", ())


def choose_locale(
    available: Sequence[str],
    default: str,
    preferred_language_code: str | None,
    phone_e164: str | None,
    accept_language: str | None = None,
) -> str:
    """The locale to send a message in: the request's preferredLanguageCode when the template
    has it, else the language of the phone number's country, else (when known) the browser's
    Accept-Language, else the template's default."""
    if preferred_language_code:
        found = _lookup_locale(preferred_language_code, available)
        if found:
            return found
    if phone_e164:
        for language in _phone_languages(phone_e164):
            found = _lookup_locale(language, available)
            if found:
                return found
    if accept_language:
        return negotiate_accept_language(accept_language, available, default)
    return default


_MAX_ACCEPT_LANGUAGE_CHARS = 4096
_MAX_ACCEPT_LANGUAGE_RANGES = 50
_LANGUAGE_RANGE_RE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_QVALUE_RE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


def _parse_accept_language(header: str) -> Iterator[tuple[str, float]]:
    # The header is client-controlled: cap its size before splitting.
    for index, item in enumerate(header[:_MAX_ACCEPT_LANGUAGE_CHARS].split(",")):
        if index >= _MAX_ACCEPT_LANGUAGE_RANGES:
            return
        language_range, *params = (piece.strip() for piece in item.split(";"))
        if not _LANGUAGE_RANGE_RE.fullmatch(language_range):
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE_RE.fullmatch(value) else -1.0
        if weight >= 0:  # a malformed weight makes the element invalid, so it is ignored
            yield language_range, weight


def negotiate_accept_language(header: str | None, available: Sequence[str], default: str) -> str:
    """The best of the template's locales for an RFC 9110 Accept-Language header (for the hosted page)."""
    if not header:
        return default
    ranges = list(_parse_accept_language(header))
    refused = {r.lower() for r, q in ranges if q == 0}
    # sorted() is stable, so equal weights keep the client's order.
    for language_range, _ in sorted((item for item in ranges if item[1] > 0), key=lambda item: -item[1]):
        if language_range == "*":
            candidates: Iterable[str] = [default, *available]
            for tag in candidates:
                if tag.lower() not in refused and tag.split("-")[0].lower() not in refused:
                    return tag
            continue
        found = _lookup_locale(language_range, available)
        if found and found.lower() not in refused:
            return found
    return default
