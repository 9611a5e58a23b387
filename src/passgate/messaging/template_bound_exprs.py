"""Bounds of expressions and filters, for the save-time bounds (`template_bounds`).

`ExpressionBounds.ev` gives an expression's value bound and what evaluating it costs; `FilterBounds`
does the same for each filter a message template may use, charged by the sandbox's weights. Statements,
loops and macro calls are `template_bounds.Analysis`'s, which builds on these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from jinja2 import nodes

from passgate.messaging import sandbox as sb
from passgate.messaging.template_bound_values import (
    BOOL,
    CONTAINER_KINDS,
    EMPTY,
    FLOAT,
    FLOAT_BOUND,
    INF,
    INT,
    MACRO,
    MAP,
    NO_COST,
    NUM_TOP,
    REQUEST_BOUNDS,
    SEQ,
    STR,
    TOP,
    UNBOUNDED,
    Bound,
    Cost,
    MacroDef,
    Scope,
    const_bound,
    cost_of,
    elem_of,
    integer,
    join,
    join_all,
    lookup_key,
    mapping,
    printed_chars,
    saturate,
    sequence,
    string,
    work,
)

# Digits int() accepts from a string (CPython's default limit); longer strings fail, never convert.
_MAX_INT_DIGITS = 4_300


@dataclass
class MacroFrame:
    """A macro call being followed (a macro met again on the stack is recursive)."""

    macro: MacroDef
    name: str
    caller: Scope  # where it was called from: the other macros it may call are found there


@dataclass
class Problems:
    """One part's analysis state: its problems, the totals (for tests and measurements), the macros
    being followed and the calls already bounded."""

    part: str
    html: bool
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    total: Cost = NO_COST
    _macro_stack: list[MacroFrame] = field(default_factory=list)
    _memo: dict[tuple[Any, ...], tuple[Bound, Cost]] = field(default_factory=dict)
    _seen: set[tuple[int | None, str]] = field(default_factory=set)

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

    # Filters and macro calls are bounded by the subclasses (`FilterBounds`, `template_bounds.Analysis`);
    # expressions reach them through these.

    def _filter(self, node: nodes.Filter, value: Bound, scope: Scope) -> tuple[Bound, Cost]:
        raise NotImplementedError

    def _call(self, node: nodes.Call, scope: Scope) -> tuple[Bound, Cost]:
        raise NotImplementedError


class ExpressionBounds(Problems):
    """Value bounds of expressions: names, lookups, literals, arithmetic, comparisons, concatenation."""

    def ev(self, node: nodes.Node, scope: Scope) -> tuple[Bound, Cost]:
        if isinstance(node, nodes.Const):
            return const_bound(node.value), NO_COST
        if isinstance(node, nodes.Name):
            return self._name(node, scope), NO_COST
        if isinstance(node, nodes.Getattr):
            value, cost = self.ev(node.node, scope)
            return lookup_key(value, node.attr), cost
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
            cost = cost + work(cost_of(value))
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                b, c = self.ev(arg, scope)
                cost = cost + c + work(cost_of(b))
            return BOOL, cost
        if isinstance(node, nodes.Compare):
            value, cost = self.ev(node.expr, scope)
            cost = cost + work(cost_of(value) if value.kinds & (STR | CONTAINER_KINDS) else 0)
            for op in node.ops:
                b, c = self.ev(op.expr, scope)
                cost = cost + c + work(cost_of(b) if b.kinds & (STR | CONTAINER_KINDS) else 0)
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

    def _name(self, node: nodes.Name, scope: Scope) -> Bound:
        found = scope.lookup(node.name)
        if found is not None:
            return found
        if self._macro_stack:
            return self._free_in_macro(node, scope)
        return REQUEST_BOUNDS.get(node.name, EMPTY)

    def _free_in_macro(self, node: nodes.Name, scope: Scope) -> Bound:
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

    def _getitem(self, node: nodes.Getitem, scope: Scope) -> tuple[Bound, Cost]:
        value, cost = self.ev(node.node, scope)
        arg, c = self.ev(node.arg, scope)
        cost = cost + c
        if isinstance(node.arg, nodes.Slice):
            sliced = replace(
                value, fields=(), default=None, macros=frozenset(), kinds=value.kinds & (STR | SEQ)
            )
            return sliced, cost + work(cost_of(sliced))
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return join(
                lookup_key(value, node.arg.value), elem_of(value) if value.kinds & (STR | SEQ) else None
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

    def _dict(self, node: nodes.Dict, scope: Scope) -> tuple[Bound, Cost]:
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

    def _concat(self, node: nodes.Concat, scope: Scope) -> tuple[Bound, Cost]:
        cost = NO_COST
        total = 0
        for operand in node.nodes:
            b, c = self.ev(operand, scope)
            cost = cost + c
            if b.kinds & CONTAINER_KINDS:
                cost = cost + work(cost_of(b))
            total = saturate(total + printed_chars(b))
        if self.html:
            # Escaped when an operand is Markup (then the result is Markup), else when printed: either
            # way at most five characters each.
            total = saturate(5 * total)
        value = string(total, safe=self.html)
        self._value(node, value)
        return value, cost + work(sb.COST_CHAR * total)

    def _arithmetic(self, node: nodes.BinExpr, scope: Scope) -> tuple[Bound, Cost]:
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
                cost_of(left) + cost_of(right) if (left.kinds | right.kinds) & CONTAINER_KINDS else 0
            )
        elif isinstance(node, nodes.Mul):
            for seq, times in ((left, right), (right, left)):
                if seq.kinds & (STR | SEQ) and times.kinds & INT:
                    count = times.num
                    if seq.kinds & STR:
                        out.append(string(seq.chars * count if count < INF else INF))
                    if seq.kinds & SEQ:
                        out.append(sequence(seq.items * count if count < INF else INF, elem_of(seq)))
                    if seq.kinds & CONTAINER_KINDS:
                        cost = cost + work(cost_of(seq))
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
        return value, cost + work(cost_of(value))


class FilterBounds(ExpressionBounds):
    """Value bounds of filters, and what each costs as the sandbox charges it."""

    def _filter(self, node: nodes.Filter, value: Bound, scope: Scope) -> tuple[Bound, Cost]:
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
                    string(text), sequence(items, elem_of(value)) if value.kinds & CONTAINER_KINDS else None
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
            chars = saturate(items * printed_chars(elem_of(value)) + items * printed_chars(separator))
            out = string(5 * chars if self.html else chars, safe=self.html)
        elif name == "replace":
            old, new = given(0, "old", string(0)), given(1, "new", string(0))
            old_min = _const_len(node.args[0]) if node.args else None
            found = text + 1 if not old_min else text // old_min
            limit = _const_int(node.args[2]) if len(node.args) > 2 else None
            if limit is not None and limit >= 0:
                found = min(found, limit)
            chars = saturate(text + found * printed_chars(new))
            out = string(5 * chars if self.html else chars, safe=False)
            del old
        elif name == "truncate":
            out = string(text + printed_chars(given(2, "end", string(3))))
        elif name == "sum":
            item = elem_of(value)
            start = given(1, "start", integer(0))
            total = saturate(value.items * item.num + start.num)
            out = join(
                integer(total) if (item.kinds | start.kinds) & INT else None,
                FLOAT_BOUND if (item.kinds | start.kinds) & FLOAT else None,
            )
        else:
            self.refuse(node, f"the |{name} filter is not allowed in message templates")
            return TOP, UNBOUNDED
        # As the sandbox charges: the input read, the comparisons of a sort, the result made.
        cost = cost + work(cost_of(value))
        if name in sb.SORTING_FILTERS and value.items > 1:
            cost = cost + work(sb.COST_COMPARE * value.items * math.ceil(math.log2(value.items)))
        cost = cost + work(cost_of(out))
        return self._value(node, out), cost


def _const_len(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return len(node.value)
    return None


def _const_int(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None

