"""ISO 3166-1 country codes as Kount's request bodies send them: alpha-2 (`"US"`) or alpha-3 (`"USA"`),
held as alpha-2, the form every other country code in Passgate takes (phone and IP signals, lists, SMS
allowed countries). The table is pycountry's copy of the ISO 3166-1 list, not a hand-kept one."""

from __future__ import annotations

from functools import lru_cache

import pycountry

UNKNOWN_COUNTRY = "not an ISO 3166-1 country code (two letters, e.g. US, or three, e.g. USA)"


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    # Loaded once: pycountry reads its JSON database on first use, and a lookup through it scans.
    table: dict[str, str] = {}
    for country in pycountry.countries:
        table[country.alpha_2] = country.alpha_2
        table[country.alpha_3] = country.alpha_2
    return table


def alpha2(code: str) -> str | None:
    """The alpha-2 code of an alpha-2 or alpha-3 code (any letter case), or None when ISO 3166-1 has no
    such country."""
    if not 2 <= len(code) <= 3 or not code.isascii():
        return None
    return _table().get(code.upper())
