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

from collections.abc import Sequence
from dataclasses import replace

from jinja2 import nodes

from passgate.messaging import sandbox as sb
from passgate.messaging.template_bound_exprs import FilterBounds, MacroFrame
from passgate.messaging.template_bound_values import (
    BOOL,
    CONTAINER_KINDS,
    EMPTY,
    INF,
    LINK_CHARS,
    MACRO,
    NO_COST,
    REQUEST_BOUNDS,
    STR,
    TOP,
    UNBOUNDED,
    Bound,
    Cost,
    MacroDef,
    Scope,
    cost_of,
    elem_of,
    integer,
    join_all,
    mapping,
    saturate,
    string,
    work,
)

__all__ = ["LINK_CHARS", "REQUEST_BOUNDS", "Analysis", "Bound", "Cost", "analyse"]


class Analysis(FilterBounds):
    """One part's analysis: statements, loops and macro calls, on the expression and filter bounds
    (`template_bound_exprs`); its problems, and the totals (for tests and measurements)."""

    # -- statements --------------------------------------------------------------------------------------

    def run(self, body: Sequence[nodes.Node], scope: Scope) -> Cost:
        cost = NO_COST
        for node in body:
            cost = cost + self.statement(node, scope)
        return cost

    def statement(self, node: nodes.Node, scope: Scope) -> Cost:
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
            printed = value.chars if value.safe or not self.html else saturate(5 * value.chars)
            return cost + Cost(output=printed)
        if isinstance(node, nodes.Macro):
            self._check_name(node, node.name)
            scope.names[node.name] = Bound(kinds=MACRO, chars=len(node.name) + 10, size=1,
                                           macros=frozenset({MacroDef(node)}))  # fmt: skip
            return NO_COST
        if isinstance(node, nodes.With):
            inner = Scope(scope)
            cost = NO_COST
            for target, expr in zip(node.targets, node.values, strict=True):
                value, c = self.ev(expr, scope)
                cost = cost + c
                self._bind(target, value, inner)
            return cost + self.run(node.body, inner)
        if isinstance(node, nodes.Scope):
            return self.run(node.body, Scope(scope))
        if isinstance(node, nodes.ExprStmt):
            if isinstance(node.node, nodes.Filter) and node.node.name in (sb.CHARGED_BODY, sb.COUNTED_LOOP):
                return NO_COST
            return self.ev(node.node, scope)[1]
        if isinstance(node, nodes.CallBlock):
            self.refuse(node, "{% call %} is not allowed in message templates: call the macro with arguments")
            return UNBOUNDED
        self.refuse(node, f"{type(node).__name__} is not allowed in message templates")
        return UNBOUNDED

    def _output(self, node: nodes.Output, scope: Scope) -> Cost:
        cost = NO_COST
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                cost = cost + Cost(output=len(child.data))
                continue
            value, c = self.ev(child, scope)
            printed = value.chars if value.safe or not self.html else saturate(5 * value.chars)
            charged = long = 0
            if value.kinds & STR and value.chars >= sb._UNCOUNTED_OUTPUT:
                charged, long = sb.COST_CHAR * value.chars, value.chars
            if value.kinds & CONTAINER_KINDS:
                charged, long = max(charged, cost_of(value) + sb.COST_CHAR * value.chars), value.chars
            cost = cost + c + Cost(work=saturate(charged), output=printed, long_prints=long)
        return cost

    def _block(
        self, body: Sequence[nodes.Node], flt: nodes.Filter | None, node: nodes.Node, scope: Scope
    ) -> tuple[Bound, Cost]:
        cost = self.run(body, Scope(scope))
        value = string(cost.output, safe=self.html)
        if value.chars > sb.MAX_VALUE_SIZE:
            self.refuse(node, f"this block could render more than {sb.MAX_VALUE_SIZE:,} characters")
        cost = replace(cost, output=0) + work(sb.COST_CHAR * value.chars)
        if flt is not None:
            value, c = self._filter(flt, value, scope)
            cost = cost + c
        return value, cost

    def _for(self, node: nodes.For, scope: Scope) -> Cost:
        if node.recursive:
            self.refuse(node, "recursive loops are not allowed in message templates")
            return UNBOUNDED
        iterable, cost = self.ev(_unwrapped(node.iter), scope)
        n = iterable.items
        elem = elem_of(iterable)
        inner = Scope(scope)
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
            cost = cost + self.run(node.else_, Scope(scope))
        return cost

    def _if(self, node: nodes.If, scope: Scope) -> Cost:
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
            branch = Scope(scope.parent, dict(before))
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

    def _bind(self, target: nodes.Node, value: Bound, scope: Scope) -> None:
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

    # -- macro calls -------------------------------------------------------------------------------------

    def _call(self, node: nodes.Call, scope: Scope) -> tuple[Bound, Cost]:
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
        scope: Scope,
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
        frame = MacroFrame(macro, node.name, scope)
        self._macro_stack.append(frame)
        try:
            names: dict[str, Bound] = {}
            body_scope = Scope(None, names)
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


def _unwrapped(node: nodes.Node) -> nodes.Node:
    if isinstance(node, nodes.Filter) and node.name == sb.COUNTED_LOOP and node.node is not None:
        return node.node
    return node


def _how_many(n: int) -> str:
    if n >= INF:
        return "its iterable's length is not bounded"
    return f"it iterates up to {n:,} items"


def analyse(tree: nodes.Template, part: str) -> Analysis:
    """Bounds of one part's costs for every request; `problems` lists each budget it could pass."""
    analysis = Analysis(part=part, html=part == "html")
    total = analysis.run(tree.body, Scope())
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
    scope = Scope()
    best: tuple[int, int | None] = (-1, None)
    for node in tree.body:
        cost = probe.statement(node, scope)
        amount = getattr(cost, what)
        if amount > best[0]:
            best = (amount, getattr(node, "lineno", None))
    return best[1]
