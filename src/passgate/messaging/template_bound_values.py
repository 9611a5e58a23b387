"""The values and costs the save-time bounds (`template_bounds`) work with.

A `Bound` is an upper bound of every value an expression can have (characters, items, size through
nested containers, integer magnitude, and which kinds of value it can be); `join` is the least bound
covering two. A `Cost` is an upper bound of what running some template code uses, in the sandbox's units.
`REQUEST_BOUNDS` is the largest each message variable can be for any request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from typing import Any

from jinja2 import nodes

from passgate.config import MAX_PUBLIC_URL_CHARS
from passgate.messaging import sandbox as sb

# A size no render can reach (saturates all arithmetic on bounds).
INF = 1 << 60
# An integer bound past the sandbox's limit (kept exact below it: magnitudes are compared, not bits).
NUM_TOP = 1 << (sb.MAX_INT_BITS + 2)

STR, INT, FLOAT, SEQ, MAP, NONE, MACRO = 1, 2, 4, 8, 16, 32, 64
CONTAINER_KINDS = SEQ | MAP


def saturate(value: int) -> int:
    return value if value < INF else INF


@dataclass(frozen=True)
class Bound:
    """An upper bound of every value an expression can have."""

    kinds: int = 0
    chars: int = 0  # len(str(value)) when printed or joined
    items: int = 0  # len(value): iterations over it
    size: int = 0  # sandbox.size_of(value)
    num: int = 0  # |value| when an int
    elem: Bound | None = None  # its items (a list's, a dict's keys); a string's are characters
    fields: tuple[tuple[str, Bound], ...] = ()  # known keys of a mapping
    default: Bound | None = None  # any other key of a mapping (None: missing, renders empty)
    safe: bool = False  # certainly Markup: printed in HTML without escaping
    macros: frozenset[MacroDef] = frozenset()
    top: bool = False  # unknown: everything at its largest


@dataclass(frozen=True, eq=False)
class MacroDef:
    """A `{% macro %}`; compared by identity."""

    node: nodes.Macro


EMPTY = Bound(kinds=NONE)
TOP = Bound(kinds=STR | INT | FLOAT | SEQ | MAP | NONE, chars=INF, items=INF, size=INF, num=NUM_TOP, top=True)
BOOL = Bound(kinds=INT, chars=5, size=sb.int_chars(1), num=1)
FLOAT_BOUND = Bound(kinds=FLOAT, chars=sb.PRINTED_SCALAR, size=1)


def string(chars: int, safe: bool = False) -> Bound:
    chars = saturate(chars)
    return Bound(kinds=STR, chars=chars, items=chars, size=chars, safe=safe)


CHAR = string(1)


def integer(num: int) -> Bound:
    num = min(abs(num), NUM_TOP)
    return Bound(kinds=INT, chars=sb.int_chars(num), size=sb.int_chars(num), num=num)


def sequence(items: int, elem: Bound) -> Bound:
    items = saturate(items)
    size = saturate(1 + items * (elem.size + 2))
    return Bound(kinds=SEQ, chars=saturate(10 * size + 2), items=items, size=size, elem=elem)


def mapping(fields: Mapping[str, Bound], default: Bound | None, keys: int, key: Bound) -> Bound:
    values = [*fields.values(), *([default] if default is not None else [])]
    value_size = max((v.size for v in values), default=0)
    size = saturate(1 + keys * (key.size + value_size + 4))  # as size_of counts: 2 a pair, 1 a key or value
    return Bound(
        kinds=MAP,
        chars=saturate(10 * size + 2),
        items=keys,
        size=size,
        elem=key,
        fields=tuple(sorted(fields.items())),
        default=default,
    )


def join(a: Bound | None, b: Bound | None) -> Bound:
    """The least bound covering both."""
    if a is None:
        return b if b is not None else EMPTY
    if b is None or a == b:
        return a
    if a.top or b.top:
        return TOP
    keys = {k for k, _ in a.fields} | {k for k, _ in b.fields}
    return Bound(
        kinds=a.kinds | b.kinds,
        chars=max(a.chars, b.chars),
        items=max(a.items, b.items),
        size=max(a.size, b.size),
        num=max(a.num, b.num),
        elem=join(a.elem, b.elem) if a.elem is not None or b.elem is not None else None,
        fields=tuple(sorted((k, join(field_of(a, k), field_of(b, k))) for k in keys)),
        default=join(a.default, b.default) if a.default is not None or b.default is not None else None,
        safe=a.safe and b.safe,
        macros=a.macros | b.macros,
    )


def join_all(bounds: Iterable[Bound]) -> Bound:
    out: Bound | None = None
    for b in bounds:
        out = join(out, b)
    return out if out is not None else EMPTY


def field_of(b: Bound, key: str) -> Bound | None:
    for k, v in b.fields:
        if k == key:
            return v
    return b.default


def elem_of(b: Bound) -> Bound:
    """What iterating (or indexing) the value gives."""
    if b.top:
        return TOP
    out = b.elem
    if b.kinds & STR:
        out = join(out, CHAR)
    return out if out is not None else EMPTY


def lookup_key(b: Bound, key: str) -> Bound:
    """`b.key` / `b['key']`: a mapping's key (missing: empty); a string's or list's attributes are
    methods, which the sandbox refuses."""
    if b.top:
        return TOP
    found = field_of(b, key) if b.kinds & MAP else None
    if b.kinds & MACRO:
        found = join(found, string(256))  # a macro's name, arguments, ... (short, from the source)
    return found if found is not None else EMPTY


def cost_of(b: Bound) -> int:
    """Units the sandbox charges for handling a value once (sandbox.cost_of)."""
    if b.top:
        return INF
    cost = sb.COST_CHAR
    if b.kinds & STR:
        cost = max(cost, sb.COST_CHAR * b.chars)
    if b.kinds & CONTAINER_KINDS:
        cost = max(cost, sb.COST_ITEM * b.size)
    return saturate(cost)


def printed_chars(b: Bound) -> int:
    return b.chars


# The worst a request, the client's branding and settings, and the operator's configuration can give each
# message variable (request and branding limits are enforced where they are accepted).
LINK_CHARS = MAX_PUBLIC_URL_CHARS + 3 + 43  # PASSGATE_PUBLIC_URL, /v/ and the token
_VALUE = string(256)
_NAME = string(256)
REQUEST_BOUNDS: Mapping[str, Bound] = {
    "link": string(LINK_CHARS),
    "code": string(10),
    "expiresInMinutes": integer(7 * 24 * 60),
    "host": string(253),
    "locale": string(64),
    "dir": string(3),
    "brand": mapping(
        {
            "companyName": string(100),
            "logoUrl": string(2048),
            "primaryColor": string(7),
            "primaryTextColor": string(7),
            "supportUrl": string(2048),
            "senderName": string(64),
        },
        None,
        6,
        string(16),
    ),
    "person": mapping(
        {"name": mapping({"first": _NAME, "last": _NAME, "preferred": _NAME}, None, 3, string(9))},
        None,
        1,
        string(4),
    ),
    "values": mapping({}, _VALUE, 20, string(64)),
}


@dataclass(frozen=True)
class Cost:
    """Upper bounds of what running some template code uses, in the sandbox's units: loop iterations,
    macro calls, work, characters output, and characters of long values printed (sandbox.Budget)."""

    iterations: int = 0
    calls: int = 0
    work: int = 0
    output: int = 0
    long_prints: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(saturate(a + b) for a, b in zip(astuple(self), astuple(other), strict=True)))

    def times(self, n: int) -> Cost:
        return Cost(*(saturate(a * n) for a in astuple(self)))

    def most(self, other: Cost) -> Cost:
        return Cost(*(max(a, b) for a, b in zip(astuple(self), astuple(other), strict=True)))


UNBOUNDED = Cost(INF, INF, INF, INF, INF)
NO_COST = Cost()


def work(units: int) -> Cost:
    return Cost(work=saturate(units))


class Scope:
    def __init__(self, parent: Scope | None = None, names: dict[str, Bound] | None = None) -> None:
        self.parent = parent
        self.names: dict[str, Bound] = names if names is not None else {}

    def chain(self) -> Iterable[Scope]:
        scope: Scope | None = self
        while scope is not None:
            yield scope
            scope = scope.parent

    def lookup(self, name: str) -> Bound | None:
        for scope in self.chain():
            if name in scope.names:
                return scope.names[name]
        return None



def const_bound(value: Any) -> Bound:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return FLOAT_BOUND
    if isinstance(value, str):
        return string(len(value))
    if isinstance(value, tuple | list):
        return sequence(len(value), join_all(const_bound(v) for v in value) if value else EMPTY)
    if isinstance(value, dict):
        return mapping({}, join_all(const_bound(v) for v in value.values()), len(value),
                       join_all(const_bound(k) for k in value))  # fmt: skip
    return EMPTY
