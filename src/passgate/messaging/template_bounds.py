"""Save-time bounds: what a template could cost for any request, worked out from its source.

A render with sample values shows what one request costs; it says nothing about a request whose values
are longer, hold a bigger number, or take the other branch of an `{% if %}`. So before a template is
saved, this module runs it abstractly: every variable stands for every value a request (or the client's
branding and settings) can give it, at its largest (`REQUEST_BOUNDS`), every `{% if %}` takes its
costlier branch, every loop runs as often as its iterable can be long, and every macro call is followed
with its arguments' bounds. Each value gets an upper bound (characters, items, size through nested
containers, integer magnitude) and each statement an upper bound of the loop iterations, macro calls,
work and output it can cause, charged by the same weights the sandbox charges at run time
(`passgate.messaging.sandbox`). A template whose bound passes a budget is refused, naming the line.

The rule is sound, not exact: a bound is never below what a render can use (a differential test holds the
sandbox's counts to it on generated templates and inputs), and a few constructs whose cost cannot be
bounded this way are refused outright: recursive macros, `{% call %}`, a macro's `varargs`/`kwargs`,
macros reading variables set outside them, and assigning to a message variable's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, replace
from typing import Any

from jinja2 import nodes

from passgate.config import MAX_PUBLIC_URL_CHARS
from passgate.messaging import sandbox as sb

# A size no render can reach (saturates all arithmetic on bounds).
INF = 1 << 60
# An integer bound past the sandbox's limit (kept exact below it: magnitudes are compared, not bits).
NUM_TOP = 1 << (sb.MAX_INT_BITS + 2)
# Digits int() accepts from a string (CPython's default limit); longer strings fail, never convert.
_MAX_INT_DIGITS = 4_300

STR, INT, FLOAT, SEQ, MAP, NONE, MACRO = 1, 2, 4, 8, 16, 32, 64
_CONTAINER_KINDS = SEQ | MAP


def _sat(value: int) -> int:
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
    chars = _sat(chars)
    return Bound(kinds=STR, chars=chars, items=chars, size=chars, safe=safe)


CHAR = string(1)


def integer(num: int) -> Bound:
    num = min(abs(num), NUM_TOP)
    return Bound(kinds=INT, chars=sb.int_chars(num), size=sb.int_chars(num), num=num)


def sequence(items: int, elem: Bound) -> Bound:
    items = _sat(items)
    size = _sat(1 + items * (elem.size + 2))
    return Bound(kinds=SEQ, chars=_sat(10 * size + 2), items=items, size=size, elem=elem)


def mapping(fields: Mapping[str, Bound], default: Bound | None, keys: int, key: Bound) -> Bound:
    values = [*fields.values(), *([default] if default is not None else [])]
    value_size = max((v.size for v in values), default=0)
    size = _sat(1 + keys * (key.size + value_size + 4))  # as size_of counts: 2 a pair, 1 a key or value
    return Bound(
        kinds=MAP,
        chars=_sat(10 * size + 2),
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


def _lookup(b: Bound, key: str) -> Bound:
    """`b.key` / `b['key']`: a mapping's key (missing: empty); a string's or list's attributes are
    methods, which the sandbox refuses."""
    if b.top:
        return TOP
    found = field_of(b, key) if b.kinds & MAP else None
    if b.kinds & MACRO:
        found = join(found, string(256))  # a macro's name, arguments, ... (short, from the source)
    return found if found is not None else EMPTY


def _cost(b: Bound) -> int:
    """Units the sandbox charges for handling a value once (sandbox.cost_of)."""
    if b.top:
        return INF
    cost = sb.COST_CHAR
    if b.kinds & STR:
        cost = max(cost, sb.COST_CHAR * b.chars)
    if b.kinds & _CONTAINER_KINDS:
        cost = max(cost, sb.COST_ITEM * b.size)
    return _sat(cost)


def _printed(b: Bound) -> int:
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
        return Cost(*(_sat(a + b) for a, b in zip(astuple(self), astuple(other), strict=True)))

    def times(self, n: int) -> Cost:
        return Cost(*(_sat(a * n) for a in astuple(self)))

    def most(self, other: Cost) -> Cost:
        return Cost(*(max(a, b) for a, b in zip(astuple(self), astuple(other), strict=True)))


UNBOUNDED = Cost(INF, INF, INF, INF, INF)
NO_COST = Cost()


def work(units: int) -> Cost:
    return Cost(work=_sat(units))


class _Scope:
    def __init__(self, parent: _Scope | None = None, names: dict[str, Bound] | None = None) -> None:
        self.parent = parent
        self.names: dict[str, Bound] = names if names is not None else {}

    def chain(self) -> Iterable[_Scope]:
        scope: _Scope | None = self
        while scope is not None:
            yield scope
            scope = scope.parent

    def lookup(self, name: str) -> Bound | None:
        for scope in self.chain():
            if name in scope.names:
                return scope.names[name]
        return None


@dataclass
class _MacroFrame:
    macro: MacroDef
    name: str
    caller: _Scope  # where it was called from: the other macros it may call are found there


@dataclass
class Analysis:
    """One part's analysis: its problems, and the totals (for tests and measurements)."""

    part: str
    html: bool
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    total: Cost = NO_COST
    _macro_stack: list[_MacroFrame] = field(default_factory=list)
    _memo: dict[tuple[Any, ...], tuple[Bound, Cost]] = field(default_factory=dict)
    _seen: set[tuple[int | None, str]] = field(default_factory=set)

    # -- problems ----------------------------------------------------------------------------------------

    def refuse(self, where: nodes.Node | int | None, message: str) -> None:
        line = where if isinstance(where, int) or where is None else getattr(where, "lineno", None)
        if (line, message) not in self._seen:
            self._seen.add((line, message))
            self.problems.append((line, message))

    def _value(self, node: nodes.Node, b: Bound) -> Bound:
        """A value the sandbox checks when it is made (sandbox.checked)."""
        if b.size > sb.MAX_VALUE_SIZE or b.chars > sb.MAX_VALUE_SIZE and b.kinds & STR:
            self.refuse(node, f"a value here could be larger than {sb.MAX_VALUE_SIZE:,} characters and items")
        if b.kinds & INT and b.num.bit_length() > sb.MAX_INT_BITS:
            self.refuse(node, f"a number here could be larger than {sb.MAX_INT_BITS:,} bits")
        return b

    # -- statements --------------------------------------------------------------------------------------

    def run(self, body: Sequence[nodes.Node], scope: _Scope) -> Cost:
        cost = NO_COST
        for node in body:
            cost = cost + self.statement(node, scope)
        return cost

    def statement(self, node: nodes.Node, scope: _Scope) -> Cost:
        if isinstance(node, nodes.Output):
            return self._output(node, scope)
        if isinstance(node, nodes.For):
            return self._for(node, scope)
        if isinstance(node, nodes.If):
            return self._if(node, scope)
        if isinstance(node, nodes.Assign):
            value, cost = self.ev(node.node, scope)
            self._bind(node.target, value, scope)
            return cost
        if isinstance(node, nodes.AssignBlock):
            value, cost = self._block(node.body, node.filter, node, scope)
            self._bind(node.target, value, scope)
            return cost
        if isinstance(node, nodes.FilterBlock):
            value, cost = self._block(node.body, node.filter, node, scope)
            printed = value.chars if value.safe or not self.html else _sat(5 * value.chars)
            return cost + Cost(output=printed)
        if isinstance(node, nodes.Macro):
            self._check_name(node, node.name)
            scope.names[node.name] = Bound(kinds=MACRO, chars=len(node.name) + 10, size=1,
                                           macros=frozenset({MacroDef(node)}))  # fmt: skip
            return NO_COST
        if isinstance(node, nodes.With):
            inner = _Scope(scope)
            cost = NO_COST
            for target, expr in zip(node.targets, node.values, strict=True):
                value, c = self.ev(expr, scope)
                cost = cost + c
                self._bind(target, value, inner)
            return cost + self.run(node.body, inner)
        if isinstance(node, nodes.Scope):
            return self.run(node.body, _Scope(scope))
        if isinstance(node, nodes.ExprStmt):
            if isinstance(node.node, nodes.Filter) and node.node.name in (sb.CHARGED_BODY, sb.COUNTED_LOOP):
                return NO_COST
            return self.ev(node.node, scope)[1]
        if isinstance(node, nodes.CallBlock):
            self.refuse(node, "{% call %} is not allowed in message templates: call the macro with arguments")
            return UNBOUNDED
        self.refuse(node, f"{type(node).__name__} is not allowed in message templates")
        return UNBOUNDED

    def _output(self, node: nodes.Output, scope: _Scope) -> Cost:
        cost = NO_COST
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                cost = cost + Cost(output=len(child.data))
                continue
            value, c = self.ev(child, scope)
            printed = value.chars if value.safe or not self.html else _sat(5 * value.chars)
            charged = long = 0
            if value.kinds & STR and value.chars >= sb._UNCOUNTED_OUTPUT:
                charged, long = sb.COST_CHAR * value.chars, value.chars
            if value.kinds & _CONTAINER_KINDS:
                charged, long = max(charged, _cost(value) + sb.COST_CHAR * value.chars), value.chars
            cost = cost + c + Cost(work=_sat(charged), output=printed, long_prints=long)
        return cost

    def _block(
        self, body: Sequence[nodes.Node], flt: nodes.Filter | None, node: nodes.Node, scope: _Scope
    ) -> tuple[Bound, Cost]:
        cost = self.run(body, _Scope(scope))
        value = string(cost.output, safe=self.html)
        if value.chars > sb.MAX_VALUE_SIZE:
            self.refuse(node, f"this block could render more than {sb.MAX_VALUE_SIZE:,} characters")
        cost = replace(cost, output=0) + work(sb.COST_CHAR * value.chars)
        if flt is not None:
            value, c = self._filter(flt, value, scope)
            cost = cost + c
        return value, cost

    def _for(self, node: nodes.For, scope: _Scope) -> Cost:
        if node.recursive:
            self.refuse(node, "recursive loops are not allowed in message templates")
            return UNBOUNDED
        iterable, cost = self.ev(_unwrapped(node.iter), scope)
        n = iterable.items
        elem = elem_of(iterable)
        inner = _Scope(scope)
        self._bind(node.target, elem, inner)
        inner.names["loop"] = mapping(
            {
                **{k: integer(n + 1) for k in ("index", "index0", "revindex", "revindex0", "length")},
                **{k: BOOL for k in ("first", "last")},
                **{k: integer(1) for k in ("depth", "depth0")},
                "previtem": elem,
                "nextitem": elem,
            },
            None,
            0,
            EMPTY,
        )
        per_item = self.run(node.body, inner)
        if node.test is not None:
            per_item = per_item + self.ev(node.test, inner)[1]
        weight = sb.body_weight([*node.body, *node.else_, *([node.test] if node.test else [])])
        per_item = per_item + Cost(iterations=1, work=sb.COST_ITERATION + sb.COST_NODE * weight)
        loop_cost = per_item.times(n)
        if loop_cost.iterations > sb.MAX_ITERATIONS:
            self.refuse(
                node, f"this loop could run more than {sb.MAX_ITERATIONS:,} times in all ({_how_many(n)})"
            )
        cost = cost + loop_cost
        if node.else_:
            cost = cost + self.run(node.else_, _Scope(scope))
        return cost

    def _if(self, node: nodes.If, scope: _Scope) -> Cost:
        test, cost = self.ev(node.test, scope)
        branches: list[Sequence[nodes.Node]] = [node.body]
        tests: list[nodes.Node] = []
        for elif_ in node.elif_:
            tests.append(elif_.test)
            branches.append(elif_.body)
        branches.append(node.else_)
        for extra in tests:
            cost = cost + self.ev(extra, scope)[1]
        before = dict(scope.names)
        outcomes: list[dict[str, Bound]] = []
        most = NO_COST
        for body in branches:
            branch = _Scope(scope.parent, dict(before))
            most = most.most(self.run(body, branch))
            outcomes.append(branch.names)
        assigned = {name for names in outcomes for name in names}
        for name in assigned:
            scope.names[name] = join_all(
                names.get(name)
                or before.get(name)
                or (scope.parent.lookup(name) if scope.parent else None)
                or REQUEST_BOUNDS.get(name, EMPTY)
                for names in outcomes
            )
        return cost + most

    def _bind(self, target: nodes.Node, value: Bound, scope: _Scope) -> None:
        if isinstance(target, nodes.Name):
            self._check_name(target, target.name)
            scope.names[target.name] = value
        elif isinstance(target, nodes.Tuple | nodes.List):
            for item in target.items:
                self._bind(item, elem_of(value), scope)
        else:  # {% set ns.x = ... %}: there is no namespace() to assign to
            self.refuse(target, "this assignment is not allowed in message templates")

    def _check_name(self, node: nodes.Node, name: str) -> None:
        if name in REQUEST_BOUNDS or name == "loop":
            self.refuse(node, f"{name!r} is a message variable; choose another name")

    # -- expressions -------------------------------------------------------------------------------------

    def ev(self, node: nodes.Node, scope: _Scope) -> tuple[Bound, Cost]:
        if isinstance(node, nodes.Const):
            return _const(node.value), NO_COST
        if isinstance(node, nodes.Name):
            return self._name(node, scope), NO_COST
        if isinstance(node, nodes.Getattr):
            value, cost = self.ev(node.node, scope)
            return _lookup(value, node.attr), cost
        if isinstance(node, nodes.Getitem):
            return self._getitem(node, scope)
        if isinstance(node, nodes.Filter):
            if node.node is None:  # only in {% filter %} blocks, handled there
                return TOP, UNBOUNDED
            value, cost = self.ev(node.node, scope)
            out, c = self._filter(node, value, scope)
            return out, cost + c
        if isinstance(node, nodes.Test):
            value, cost = self.ev(node.node, scope)
            cost = cost + work(_cost(value))
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                b, c = self.ev(arg, scope)
                cost = cost + c + work(_cost(b))
            return BOOL, cost
        if isinstance(node, nodes.Compare):
            value, cost = self.ev(node.expr, scope)
            cost = cost + work(_cost(value) if value.kinds & (STR | _CONTAINER_KINDS) else 0)
            for op in node.ops:
                b, c = self.ev(op.expr, scope)
                cost = cost + c + work(_cost(b) if b.kinds & (STR | _CONTAINER_KINDS) else 0)
            return BOOL, cost
        if isinstance(node, nodes.Concat):
            return self._concat(node, scope)
        if isinstance(node, nodes.Add | nodes.Sub | nodes.Mul | nodes.Pow | nodes.Mod):
            return self._arithmetic(node, scope)
        if isinstance(node, nodes.Div):
            cost = self.ev(node.left, scope)[1] + self.ev(node.right, scope)[1]
            return FLOAT_BOUND, cost
        if isinstance(node, nodes.FloorDiv):
            left, cost = self.ev(node.left, scope)
            cost = cost + self.ev(node.right, scope)[1]
            return join(
                integer(left.num) if left.kinds & INT else None, FLOAT_BOUND if left.kinds & FLOAT else None
            ), cost
        if isinstance(node, nodes.And | nodes.Or):
            left, cost = self.ev(node.left, scope)
            right, c = self.ev(node.right, scope)
            return join(left, right), cost + c
        if isinstance(node, nodes.Not):
            return BOOL, self.ev(node.node, scope)[1]
        if isinstance(node, nodes.Neg | nodes.Pos):
            return self.ev(node.node, scope)
        if isinstance(node, nodes.CondExpr):
            cost = self.ev(node.test, scope)[1]
            yes, c1 = self.ev(node.expr1, scope)
            no, c2 = self.ev(node.expr2, scope) if node.expr2 is not None else (EMPTY, NO_COST)
            return join(yes, no), cost + c1.most(c2)
        if isinstance(node, nodes.Tuple | nodes.List):
            cost = NO_COST
            items = []
            for item in node.items:
                b, c = self.ev(item, scope)
                items.append(b)
                cost = cost + c
            value = sequence(len(items), join_all(items) if items else EMPTY)
            return self._value(node, value), cost + work(sb.COST_ITEM * value.size)
        if isinstance(node, nodes.Dict):
            return self._dict(node, scope)
        if isinstance(node, nodes.Call):
            return self._call(node, scope)
        if isinstance(node, nodes.Slice):
            cost = NO_COST
            for part in (node.start, node.stop, node.step):
                if part is not None:
                    cost = cost + self.ev(part, scope)[1]
            return EMPTY, cost
        self.refuse(node, f"{type(node).__name__} is not allowed in message templates")
        return TOP, UNBOUNDED

    def _name(self, node: nodes.Name, scope: _Scope) -> Bound:
        found = scope.lookup(node.name)
        if found is not None:
            return found
        if self._macro_stack:
            return self._free_in_macro(node, scope)
        return REQUEST_BOUNDS.get(node.name, EMPTY)

    def _free_in_macro(self, node: nodes.Name, scope: _Scope) -> Bound:
        # A macro reads outer names when it runs, from where it was defined; only message variables and
        # other macros are allowed, so what it reads cannot depend on where it is called from.
        frame = self._macro_stack[-1]
        if node.name in REQUEST_BOUNDS:
            return REQUEST_BOUNDS[node.name]
        found = [s.names[node.name] for s in frame.caller.chain() if node.name in s.names]
        if found and all(b.kinds == MACRO for b in found):
            return join_all(found)
        self.refuse(
            node,
            f"macro {frame.name!r} reads {node.name!r}, which is set outside it; pass it as an argument",
        )
        return TOP

    def _getitem(self, node: nodes.Getitem, scope: _Scope) -> tuple[Bound, Cost]:
        value, cost = self.ev(node.node, scope)
        arg, c = self.ev(node.arg, scope)
        cost = cost + c
        if isinstance(node.arg, nodes.Slice):
            sliced = replace(
                value, fields=(), default=None, macros=frozenset(), kinds=value.kinds & (STR | SEQ)
            )
            return sliced, cost + work(_cost(sliced))
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return join(
                _lookup(value, node.arg.value), elem_of(value) if value.kinds & (STR | SEQ) else None
            ), cost
        out = elem_of(value) if value.kinds & (STR | SEQ) else None
        if value.kinds & MAP:
            out = join_all(
                [
                    *(v for _, v in value.fields),
                    *([value.default] if value.default else []),
                    *([out] if out else []),
                ]
            )
        return out if out is not None else EMPTY, cost

    def _dict(self, node: nodes.Dict, scope: _Scope) -> tuple[Bound, Cost]:
        cost = NO_COST
        fields: dict[str, Bound] = {}
        others: list[Bound] = []
        keys: list[Bound] = []
        for pair in node.items:
            key, c1 = self.ev(pair.key, scope)
            value, c2 = self.ev(pair.value, scope)
            cost = cost + c1 + c2
            keys.append(key)
            if isinstance(pair.key, nodes.Const) and isinstance(pair.key.value, str):
                fields[pair.key.value] = join(fields.get(pair.key.value), value)
            else:
                others.append(value)
        default = join_all(others) if others else None
        if default is not None:
            fields = {k: join(v, default) for k, v in fields.items()}
        out = mapping(fields, default, len(node.items), join_all(keys) if keys else EMPTY)
        return self._value(node, out), cost + work(sb.COST_ITEM * out.size)

    def _concat(self, node: nodes.Concat, scope: _Scope) -> tuple[Bound, Cost]:
        cost = NO_COST
        total = 0
        for operand in node.nodes:
            b, c = self.ev(operand, scope)
            cost = cost + c
            if b.kinds & _CONTAINER_KINDS:
                cost = cost + work(_cost(b))
            total = _sat(total + _printed(b))
        if self.html:
            # Escaped when an operand is Markup (then the result is Markup), else when printed: either
            # way at most five characters each.
            total = _sat(5 * total)
        value = string(total, safe=self.html)
        self._value(node, value)
        return value, cost + work(sb.COST_CHAR * total)

    def _arithmetic(self, node: nodes.BinExpr, scope: _Scope) -> tuple[Bound, Cost]:
        left, cost = self.ev(node.left, scope)
        right, c = self.ev(node.right, scope)
        cost = cost + c
        if left.top or right.top:
            self.refuse(node, "this expression's size cannot be bounded")
            return TOP, UNBOUNDED
        out: list[Bound] = []
        numbers = INT | FLOAT
        if isinstance(node, nodes.Mod):
            if left.kinds & numbers and right.kinds & numbers:
                if left.kinds & INT and right.kinds & INT:
                    out.append(integer(max(left.num, right.num)))
                if (left.kinds | right.kinds) & FLOAT:
                    out.append(FLOAT_BOUND)
        elif isinstance(node, nodes.Add | nodes.Sub):
            if left.kinds & INT and right.kinds & INT:
                out.append(integer(left.num + right.num))
            if (left.kinds | right.kinds) & FLOAT and left.kinds & numbers and right.kinds & numbers:
                out.append(FLOAT_BOUND)
            if isinstance(node, nodes.Add):
                if left.kinds & STR and right.kinds & STR:
                    out.append(string(left.chars + right.chars))
                if left.kinds & SEQ and right.kinds & SEQ:
                    out.append(sequence(left.items + right.items, join(left.elem, right.elem)))
            cost = cost + work(
                _cost(left) + _cost(right) if (left.kinds | right.kinds) & _CONTAINER_KINDS else 0
            )
        elif isinstance(node, nodes.Mul):
            for seq, times in ((left, right), (right, left)):
                if seq.kinds & (STR | SEQ) and times.kinds & INT:
                    count = times.num
                    if seq.kinds & STR:
                        out.append(string(seq.chars * count if count < INF else INF))
                    if seq.kinds & SEQ:
                        out.append(sequence(seq.items * count if count < INF else INF, elem_of(seq)))
                    if seq.kinds & _CONTAINER_KINDS:
                        cost = cost + work(_cost(seq))
            if left.kinds & INT and right.kinds & INT:
                if left.num.bit_length() + right.num.bit_length() > sb.MAX_INT_BITS + 1:
                    out.append(integer(NUM_TOP))
                else:
                    out.append(integer(left.num * right.num))
            if (left.kinds | right.kinds) & FLOAT and left.kinds & numbers and right.kinds & numbers:
                out.append(FLOAT_BOUND)
        elif isinstance(node, nodes.Pow):
            if left.kinds & INT and right.kinds & INT:
                base, exponent = left.num, right.num
                if base >= 2 and exponent > 0:
                    if exponent > sb.MAX_INT_BITS or (base.bit_length() - 1) * exponent > sb.MAX_INT_BITS:
                        out.append(integer(NUM_TOP))
                    else:
                        out.append(integer(base**exponent))
                else:
                    out.append(integer(max(base, 1)))
                out.append(FLOAT_BOUND)  # a negative exponent
            if (left.kinds | right.kinds) & FLOAT and left.kinds & numbers and right.kinds & numbers:
                out.append(FLOAT_BOUND)
        value = join_all(out) if out else EMPTY
        self._value(node, value)
        return value, cost + work(_cost(value))

    def _call(self, node: nodes.Call, scope: _Scope) -> tuple[Bound, Cost]:
        callee, cost = self.ev(node.node, scope)
        args: list[Bound] = []
        for arg in node.args:
            b, c = self.ev(arg, scope)
            args.append(b)
            cost = cost + c
        kwargs: dict[str, Bound] = {}
        for kw in node.kwargs:
            b, c = self.ev(kw.value, scope)
            kwargs[kw.key] = b
            cost = cost + c
        dynamic = node.dyn_args is not None or node.dyn_kwargs is not None
        for extra in (node.dyn_args, node.dyn_kwargs):
            if extra is not None:
                cost = cost + self.ev(extra, scope)[1]
        cost = cost + Cost(calls=1)
        if callee.top:
            return TOP, cost + UNBOUNDED
        results: list[Bound] = []
        most = NO_COST
        for macro in sorted(callee.macros, key=lambda m: id(m.node)):
            out, c = self._call_macro(node, macro, args, kwargs, dynamic, scope)
            results.append(out)
            most = most.most(c)
        if cost.calls > sb.MAX_CALLS:
            self.refuse(node, f"macros could be called more than {sb.MAX_CALLS:,} times")
        # Calling anything else fails when rendered (nothing callable is reachable but macros).
        return (join_all(results) if results else EMPTY), cost + most

    def _call_macro(
        self,
        call: nodes.Call,
        macro: MacroDef,
        args: list[Bound],
        kwargs: dict[str, Bound],
        dynamic: bool,
        scope: _Scope,
    ) -> tuple[Bound, Cost]:
        node = macro.node
        if any(frame.macro is macro for frame in self._macro_stack):
            self.refuse(call, f"macro {node.name!r} calls itself; recursive macros are not allowed")
            return TOP, UNBOUNDED
        # The other macros it may call are found from where it is called: part of what it costs.
        visible = tuple(
            sorted(
                ((name, b.macros) for s in scope.chain() for name, b in s.names.items() if b.kinds & MACRO),
                key=lambda item: item[0],
            )
        )
        key = (id(node), tuple(args), tuple(sorted(kwargs.items())), dynamic, visible)
        if key in self._memo:
            return self._memo[key]
        frame = _MacroFrame(macro, node.name, scope)
        self._macro_stack.append(frame)
        try:
            names: dict[str, Bound] = {}
            body_scope = _Scope(None, names)
            cost = NO_COST
            defaults_from = len(node.args) - len(node.defaults)
            for index, param in enumerate(node.args):
                if dynamic:
                    names[param.name] = TOP
                elif index < len(args):
                    names[param.name] = args[index]
                elif param.name in kwargs:
                    names[param.name] = kwargs[param.name]
                elif index >= defaults_from:
                    value, c = self.ev(node.defaults[index - defaults_from], body_scope)
                    names[param.name] = value
                    cost = cost + c
                else:
                    names[param.name] = EMPTY
            for special in ("varargs", "kwargs", "caller"):
                if any(n.name == special and n.ctx == "load" for n in node.find_all(nodes.Name)):
                    if special not in names:
                        self.refuse(
                            node,
                            f"macro {node.name!r} uses {special!r}, which message templates do not allow",
                        )
            weight = sb.body_weight(node.body)
            body = self.run(node.body, body_scope)
            out = string(body.output, safe=self.html)
            if out.chars > sb.MAX_VALUE_SIZE:
                self.refuse(
                    node, f"macro {node.name!r} could render more than {sb.MAX_VALUE_SIZE:,} characters"
                )
            cost = (
                cost
                + replace(body, output=0)
                + work(sb.COST_CALL + sb.COST_NODE * weight + sb.COST_CHAR * out.chars)
            )
        finally:
            self._macro_stack.pop()
        self._memo[key] = (out, cost)
        return out, cost

    # -- filters -----------------------------------------------------------------------------------------

    def _filter(self, node: nodes.Filter, value: Bound, scope: _Scope) -> tuple[Bound, Cost]:
        name = node.name
        args: list[Bound] = []
        cost = NO_COST
        for expr in node.args:
            b, c = self.ev(expr, scope)
            args.append(b)
            cost = cost + c
        kwargs: dict[str, Bound] = {}
        for kw in node.kwargs:
            b, c = self.ev(kw.value, scope)
            kwargs[str(kw.key)] = b
            cost = cost + c
        if node.dyn_args is not None or node.dyn_kwargs is not None or value.top:
            self.refuse(node, f"the |{name} filter's result here cannot be bounded")
            return TOP, UNBOUNDED
        if name in (sb.COUNTED_LOOP, sb.CHARGED_BODY):
            return value, cost

        def given(index: int, key: str, default: Bound) -> Bound:
            if index < len(args):
                return args[index]
            return kwargs.get(key, default)

        grow = 3  # case mapping can turn one character into three ('ΐ'.upper())
        text = value.chars  # str() of the input
        out: Bound
        if name in ("upper", "lower", "title", "capitalize"):
            out = string(grow * text)
        elif name in ("trim", "striptags", "string"):
            out = string(text)
        elif name in ("e", "escape"):
            out = string(5 * text, safe=True)
        elif name == "urlencode":
            out = string(sb.URLENCODE_GROWTH * text)
            cost = cost + work(sb.COST_URL_CHAR * text)
        elif name in ("length", "count", "wordcount"):
            out = integer(max(value.items, text if name == "wordcount" else 0))
        elif name == "int":
            out = integer(given(0, "default", integer(0)).num)
            if value.kinds & STR:
                digits = text
                out = join(out, integer(NUM_TOP if digits > _MAX_INT_DIGITS else 10**digits))
            if value.kinds & FLOAT:
                out = join(out, integer(1 << sb.MAX_INT_BITS))
            if value.kinds & INT:
                out = join(out, integer(value.num))
        elif name in ("float", "round"):
            out = FLOAT_BOUND
        elif name == "abs":
            out = join(
                integer(value.num) if value.kinds & INT else None,
                FLOAT_BOUND if value.kinds & (FLOAT | STR) else None,
            )
        elif name in ("d", "default"):
            out = join(value, given(0, "default_value", string(0)))
        elif name in ("first", "last", "max", "min"):
            out = elem_of(value)
        elif name in ("list", "sort", "unique", "reverse"):
            items = value.items
            if value.kinds & STR and name == "reverse":
                out = join(
                    string(text), sequence(items, elem_of(value)) if value.kinds & _CONTAINER_KINDS else None
                )
            else:
                out = sequence(items, elem_of(value))
        elif name in ("dictsort", "items"):
            pair_elem = join(
                elem_of(value),
                join_all([v for _, v in value.fields] + ([value.default] if value.default else [])),
            )
            out = sequence(value.items, sequence(2, pair_elem))
        elif name == "join":
            separator = given(0, "d", string(0))
            items = value.items
            chars = _sat(items * _printed(elem_of(value)) + items * _printed(separator))
            out = string(5 * chars if self.html else chars, safe=self.html)
        elif name == "replace":
            old, new = given(0, "old", string(0)), given(1, "new", string(0))
            old_min = _const_len(node.args[0]) if node.args else None
            found = text + 1 if not old_min else text // old_min
            limit = _const_int(node.args[2]) if len(node.args) > 2 else None
            if limit is not None and limit >= 0:
                found = min(found, limit)
            chars = _sat(text + found * _printed(new))
            out = string(5 * chars if self.html else chars, safe=False)
            del old
        elif name == "truncate":
            out = string(text + _printed(given(2, "end", string(3))))
        elif name == "sum":
            item = elem_of(value)
            start = given(1, "start", integer(0))
            total = _sat(value.items * item.num + start.num)
            out = join(
                integer(total) if (item.kinds | start.kinds) & INT else None,
                FLOAT_BOUND if (item.kinds | start.kinds) & FLOAT else None,
            )
        else:
            self.refuse(node, f"the |{name} filter is not allowed in message templates")
            return TOP, UNBOUNDED
        # As the sandbox charges: the input read, the comparisons of a sort, the result made.
        cost = cost + work(_cost(value))
        if name in sb.SORTING_FILTERS and value.items > 1:
            cost = cost + work(sb.COST_COMPARE * value.items * math.ceil(math.log2(value.items)))
        cost = cost + work(_cost(out))
        return self._value(node, out), cost


def _unwrapped(node: nodes.Node) -> nodes.Node:
    if isinstance(node, nodes.Filter) and node.name == sb.COUNTED_LOOP and node.node is not None:
        return node.node
    return node


def _const(value: Any) -> Bound:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return FLOAT_BOUND
    if isinstance(value, str):
        return string(len(value))
    if isinstance(value, tuple | list):
        return sequence(len(value), join_all(_const(v) for v in value) if value else EMPTY)
    if isinstance(value, dict):
        return mapping({}, join_all(_const(v) for v in value.values()), len(value),
                       join_all(_const(k) for k in value))  # fmt: skip
    return EMPTY


def _const_len(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return len(node.value)
    return None


def _const_int(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _how_many(n: int) -> str:
    if n >= INF:
        return "its iterable's length is not bounded"
    return f"it iterates up to {n:,} items"


def analyse(tree: nodes.Template, part: str) -> Analysis:
    """Bounds of one part's costs for every request; `problems` lists each budget it could pass."""
    analysis = Analysis(part=part, html=part == "html")
    total = analysis.run(tree.body, _Scope())
    analysis.total = total
    lines = [getattr(node, "lineno", None) for node in tree.body]
    first_line = next((line for line in lines if line), None)
    # A budget of the whole part, unless a problem already names the loop or call that breaks it.
    named = " ".join(message for _, message in analysis.problems)
    if total.iterations > sb.MAX_ITERATIONS and "this loop could run" not in named:
        analysis.refuse(_heaviest(tree, "iterations", analysis) or first_line,
                        f"loops could run more than {sb.MAX_ITERATIONS:,} times in all")  # fmt: skip
    if total.calls > sb.MAX_CALLS and "macros could be called" not in named:
        analysis.refuse(_heaviest(tree, "calls", analysis) or first_line,
                        f"macros could be called more than {sb.MAX_CALLS:,} times")  # fmt: skip
    if total.work > sb.MAX_WORK:
        analysis.refuse(
            _heaviest(tree, "work", analysis) or first_line,
            f"the {part} could need more than its work budget (about {sb.MAX_WORK // 1_000_000} ms) "
            "for some request",
        )
    if total.long_prints > sb.long_print_limit(part):
        analysis.refuse(
            _heaviest(tree, "long_prints", analysis) or first_line,
            f"the {part} could print more long values than it can hold for some request",
        )
    limit = sb.OUTPUT_LIMITS.get(part, sb.MAX_VALUE_SIZE)
    if total.output > limit:
        analysis.refuse(
            _heaviest(tree, "output", analysis) or first_line,
            f"the {part} could be longer than {limit:,} characters for some request",
        )
    return analysis


def _heaviest(tree: nodes.Template, what: str, analysis: Analysis) -> int | None:
    """The line of the top-level statement that costs the most of `what` (to point the author at it)."""
    probe = Analysis(part=analysis.part, html=analysis.html)
    scope = _Scope()
    best: tuple[int, int | None] = (-1, None)
    for node in tree.body:
        cost = probe.statement(node, scope)
        amount = getattr(cost, what)
        if amount > best[0]:
            best = (amount, getattr(node, "lineno", None))
    return best[1]
