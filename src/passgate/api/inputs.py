"""Inputs no route can take, refused once for every route before any of them runs (RequestContextMiddleware).

No database stores a NUL character in text (PostgreSQL refuses it), and no JSON column takes a non-finite
number (PostgreSQL's jsonb refuses `Infinity`, SQLite would store what no JSON reader reads back). Python's
`json` and pydantic's parser both accept `NaN`, `Infinity` and numbers such as `1e999999` (read as
infinity), so a body carrying one would reach a route and only fail in the database, with a 500. Integers
beyond 64 bits fit no integer column nor any engine's integer arithmetic, and a lone UTF-16 surrogate
(`"\\ud800"`) is no character at all: neither can be written to a database either.

Each check first looks cheaply for what could be such a value, so an ordinary request costs little; only a
body with a candidate is walked, to name the fields. For JSON, that look is a parse by Python's C scanner
whose number hooks raise at a non-finite number or a long integer (cheaper than any regular expression
over the body), plus a search for a `\\u` escape (the only way JSON writes a NUL or a lone surrogate).
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Columns declared Integer are 32-bit on PostgreSQL: the largest id or count such a column holds.
INT32_MAX = 2**31 - 1

NUL_MESSAGE = "must not contain a NUL character"
NON_FINITE_MESSAGE = "must be a finite number"
INT_RANGE_MESSAGE = "must be an integer from -9223372036854775808 to 9223372036854775807"
SURROGATE_MESSAGE = "must be valid Unicode text (a lone UTF-16 surrogate is not)"


class _Candidate(Exception):
    """Raised by the scan's number hooks: this body has a number to look at closely."""


def _scan_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Candidate()
    return value


def _scan_int(text: str) -> int:
    if len(text) > 18:  # 19 digits or more: past int64 or close to it; 18 never are
        raise _Candidate()
    return int(text)


def _scan_constant(_: str) -> Any:
    raise _Candidate()


class _NonFinite:
    __slots__ = ()


_NON_FINITE = _NonFinite()


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NON_FINITE


def _non_finite(_: str) -> _NonFinite:
    return _NON_FINITE


_SCAN = json.JSONDecoder(parse_float=_scan_float, parse_int=_scan_int, parse_constant=_scan_constant)
_READ = json.JSONDecoder(parse_float=_float, parse_constant=_non_finite)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def _walk(value: Any, path: str, found: list[dict[str, str]]) -> None:
    if isinstance(value, str):
        message = _text_problem(value)
        if message:
            found.append({"field": path or "body", "message": message})
    elif value is _NON_FINITE:
        found.append({"field": path or "body", "message": NON_FINITE_MESSAGE})
    elif isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            found.append({"field": path or "body", "message": INT_RANGE_MESSAGE})
    elif isinstance(value, dict):
        for key, item in value.items():
            message = _text_problem(key)
            if message:
                found.append(
                    {"field": _join(path, key.encode("utf-8", "replace").decode()), "message": message}
                )
            else:
                _walk(item, _join(path, key), found)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", found)


def json_problems(body: bytes, scan: bool = True) -> list[dict[str, str]]:
    """The fields of a JSON body holding a value no route can take ([] for none, or for a body that is not
    JSON at all: the route's own parser answers that). `scan=False` skips the byte scan and always parses:
    the plain path tests/unit/api/test_inputs.py holds the scan to."""
    try:
        # What json.loads does with bytes, with decoders made once (json.loads builds one per call when
        # given hooks, which was a third of this check's cost).
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except ValueError:
        return []
    if scan and "\\u" not in text:
        try:
            _SCAN.decode(text)
            return []
        except _Candidate:
            pass
        except (ValueError, RecursionError):
            return []
    try:
        parsed = _READ.decode(text)
    except (ValueError, RecursionError):
        return []
    found: list[dict[str, str]] = []
    _walk(parsed, "", found)
    return found


def query_problems(query: bytes) -> list[dict[str, str]]:
    """The parameters of a query string, or the fields of an application/x-www-form-urlencoded body, whose
    name or value holds a NUL."""
    lowered = query.lower()
    if b"%00" not in lowered and b"\x00" not in lowered:
        return []
    found: list[dict[str, str]] = []
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8"):
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "\\u0000") or "query"
            found.append({"field": shown, "message": NUL_MESSAGE})
    return found or [{"field": "query", "message": NUL_MESSAGE}]


def text_problems(body: bytes) -> list[dict[str, str]]:
    """A text body (CSV, plain text) holding a NUL byte."""
    return [{"field": "body", "message": NUL_MESSAGE}] if b"\x00" in body else []


def header_problems(headers: list[tuple[bytes, bytes]]) -> list[dict[str, str]]:
    """The headers whose value holds a NUL (an HTTP server should refuse them; not every one does)."""
    return [
        {"field": name.decode("latin-1"), "message": NUL_MESSAGE}
        for name, value in headers
        if b"\x00" in value
    ]
