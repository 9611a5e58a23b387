"""The sandbox message templates render in, and the hard budgets every render runs under.

Templates are code written by clients' admins. Jinja2's immutable sandbox keeps them away from Python's
internals; it does nothing about cost. A short template can ask for a huge value (`9**64**64`, `'x' *
10**8`, `s|replace('', s)`), a long loop (nested loops over long strings, a macro that calls itself) or a
huge output. One big-integer or string operation holds the GIL for as long as it runs, so no thread,
timeout or pool can stop it once started: the only sound place to stop it is before it starts. So every
operation that can make a big value checks the size of its result first, and every loop iteration, macro
call and unit of work is counted against a budget that ends the render.

The budgets, per part rendered (subject, html, text, sms):

- a value (string, list, dict) is at most `MAX_VALUE_SIZE` characters and items, counted through nested
  containers (a list of shared references cannot hide its printed size);
- an integer is at most `MAX_INT_BITS` bits, checked from the operands' sizes before `*` or `**` computes;
- at most `MAX_ITERATIONS` loop iterations and `MAX_CALLS` macro calls;
- at most `MAX_WORK` units of work (about a nanosecond each), charged from the sizes each operation
  handles (the `COST_*` weights: a character, a container item, a loop iteration, a macro call, ...);
- the part's output at most `OUTPUT_LIMITS[part]` characters;
- and a wall-clock deadline, `RENDER_SECONDS`, for whatever the counts above misjudge.

Each check runs in code the template cannot bypass: the sandbox's operator, item and call hooks, its
`finalize` and `concat`, wrappers around every filter and test, and a code generator that routes the rest
through the sandbox: the iterable of every `{% for %}`, the start of every macro body, every `~`, every
comparison, and every list, tuple or dict the template builds. `passgate.messaging.template_bounds`
works out the same counts from the source, for every request, before a template is saved.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, pass_context
from markupsafe import Markup, soft_str

# Characters a part may render to. Far beyond any real message, far below what costs memory or time:
# providers take at most 1,600 characters of SMS (Twilio's cap); a subject is shown in one line of an
# inbox (and RFC 5322 caps a header line at 998); mail clients clip HTML past about 100 KB.
OUTPUT_LIMITS: Mapping[str, int] = {"subject": 1_000, "sms": 1_600, "text": 200_000, "html": 500_000}
MAX_VALUE_SIZE = 200_000
MAX_INT_BITS = 1_024
MAX_ITERATIONS = 10_000
MAX_CALLS = 1_000
MAX_WORK = 50_000_000
RENDER_SECONDS = 0.25

# Work, in units of about a nanosecond of this machine's time (measured; a budget need not be exact,
# only proportionate): per character a C string operation handles, per container item walked in Python,
# per comparison of a sort, per character URL-encoded, per loop iteration, per node of a loop or macro
# body run, per macro call.
COST_CHAR = 5
COST_ITEM = 500
COST_COMPARE = 30
COST_URL_CHAR = 250
COST_ITERATION = 2_000
COST_NODE = 100
COST_CALL = 3_000

# Strings printed below this length are not counted: `{{ x }}` of a short value is the common case, and it
# keeps bookkeeping off the hot path. Longer ones are counted as work and, all together, may be at most
# `long_print_limit(part)` characters: the output is checked a batch of chunks at a time, and so holds
# at most that (escaped: five times) plus a batch of short ones before a check. Blocks and macros write
# into buffers that check every chunk (`BoundedBuffer`).
_UNCOUNTED_OUTPUT = 1_024


def long_print_limit(part: str) -> int:
    return OUTPUT_LIMITS.get(part, MAX_VALUE_SIZE) + MAX_VALUE_SIZE


_OUTPUT_BATCH = 256
# Filters the code generator routes loops and macro bodies through; the space keeps them out of reach of
# template source.
COUNTED_LOOP = "counted loop"
CHARGED_BODY = "charged body"


class BudgetExceeded(SecurityError):
    """A render went over one of its budgets. `retryable`: the wall clock ran out (a busy machine can
    make a render slow that is not heavy), rather than a count that would be the same next time."""

    def __init__(self, message: str, retryable: bool = False, line: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.line = line


class Budget:
    """What one render may still use: the counts are per part, the clock per message."""

    __slots__ = ("calls", "deadline", "iterations", "long_print_limit", "long_prints", "seconds", "work")

    def __init__(self, seconds: float = RENDER_SECONDS, part: str = "text") -> None:
        self.seconds = seconds
        # The clock starts at the first counted operation: before it, a render is only straight-line
        # code no longer than its source, and most renders never read the clock at all.
        self.deadline = 0.0
        self.start_part(part)

    def start_part(self, part: str) -> None:
        self.iterations = MAX_ITERATIONS
        self.calls = MAX_CALLS
        self.work = MAX_WORK
        self.long_print_limit = self.long_prints = long_print_limit(part)

    def iterate(self, count: int) -> None:
        self.iterations -= count
        if self.iterations < 0:
            raise BudgetExceeded(f"loops would run more than {MAX_ITERATIONS:,} times")

    def call(self) -> None:
        self.calls -= 1
        if self.calls < 0:
            raise BudgetExceeded(f"macros would be called more than {MAX_CALLS:,} times")

    def print_long(self, chars: int) -> None:
        """A long value printed (into the output or a block): counted as work and against the part."""
        self.long_prints -= chars
        if self.long_prints < 0:
            raise BudgetExceeded("the template would print more long values than its part can hold")
        self.spend(COST_CHAR * chars)

    def spend(self, units: int) -> None:
        self.work -= units
        if self.work < 0:
            raise BudgetExceeded(
                f"the template would do more than its work budget (about {MAX_WORK // 1_000_000} ms)"
            )
        now = time.monotonic()
        if not self.deadline:
            self.deadline = now + self.seconds
        elif now > self.deadline:
            raise BudgetExceeded(f"rendering took longer than {self.seconds * 1000:.0f} ms", retryable=True)

    @property
    def used(self) -> dict[str, int]:
        """What the render used (for tests and measurements)."""
        return {
            "iterations": MAX_ITERATIONS - self.iterations,
            "calls": MAX_CALLS - self.calls,
            "work": MAX_WORK - self.work,
            "long_prints": self.long_print_limit - self.long_prints,
        }


class _Active(threading.local):
    # The budget of the render running on this thread. A render never leaves its thread (it is
    # synchronous), so a thread-local is exact, and it reaches hooks that get no context (filters,
    # finalize, concat).
    budget: Budget | None = None


_active = _Active()


def _budget() -> Budget:
    budget = _active.budget
    if budget is None:
        raise SecurityError("message templates render only within a budget")
    return budget


def _spend(units: int) -> None:
    budget = _active.budget
    if budget is not None:  # None while Jinja folds constants at compile time: sizes are still checked
        budget.spend(units)


# ---------------------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------------------

_CONTAINERS = (list, tuple, dict, set, frozenset)
_SIZED = (str, *_CONTAINERS)


def int_chars(value: int) -> int:
    """Decimal digits of an int, from above, without converting it (that is what is being bounded)."""
    return value.bit_length() // 3 + 2


def size_of(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """Characters and items of a value, counting a shared part each time it appears, as printing,
    comparing or hashing it would. Raises as soon as the count passes `limit`, so it costs at most
    `limit` steps whatever the value."""
    if isinstance(value, str):
        size = len(value)
    elif not isinstance(value, _CONTAINERS):
        size = int_chars(value) if isinstance(value, int) else 1
    else:
        size = 0
        stack: list[Any] = [value]
        pop, extend = stack.pop, stack.extend
        while stack:
            item = pop()
            kind = type(item)
            if kind is str or kind is Markup:
                size += len(item) + 1
            elif kind is dict:
                size += 1 + 2 * len(item)
                if size > limit:
                    break
                extend(item.keys())
                extend(item.values())
            elif isinstance(item, _CONTAINERS):
                size += 1 + len(item)
                if size > limit:
                    break
                extend(item)
            elif isinstance(item, int):
                size += int_chars(item)
            else:
                size += 1
            if size > limit:
                break
    if size > limit:
        raise BudgetExceeded(f"a value would be larger than {limit:,} characters and items")
    return size


def printed_size(value: Any) -> int:
    """At most how many characters str(value) has: a container prints its items' reprs, and a repr
    writes a character as at most ten (\\U0001f600)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return 10 * size_of(value) + 2
    if isinstance(value, int):
        return int_chars(value)
    return PRINTED_SCALAR


# At most how many characters any other value prints as: a float's repr, None, True or False.
PRINTED_SCALAR = 25


def cost_of(value: Any) -> int:
    """The work of handling a value once (reading, copying, printing or comparing it)."""
    if isinstance(value, str):
        return COST_CHAR * len(value)
    if isinstance(value, _CONTAINERS):
        # Walked no further than the work left pays for: a walk is the slowest thing a render does.
        budget = _active.budget
        limit = MAX_VALUE_SIZE if budget is None else max(min(MAX_VALUE_SIZE, budget.work // COST_ITEM), 0)
        try:
            return COST_ITEM * size_of(value, limit)
        except BudgetExceeded:
            if limit < MAX_VALUE_SIZE:
                budget.spend(MAX_WORK)  # type: ignore[union-attr]  # over the work budget: says so
            raise
    return COST_CHAR


def _measured(value: Any) -> int:
    """size_of, with the walk through a container charged."""
    if isinstance(value, str):
        return len(value)
    _spend(cost_of(value))
    return size_of(value)


def checked(value: Any) -> Any:
    """A value an operation made, after checking it is within the value budgets; its making is charged."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_SIZE:
            raise BudgetExceeded(f"a value would be longer than {MAX_VALUE_SIZE:,} characters")
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"a number would be larger than {MAX_INT_BITS:,} bits")
    _spend(cost_of(value))
    return value


def _int_bits(value: Any) -> int | None:
    return abs(value).bit_length() if isinstance(value, int) else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_sequence(value: object) -> bool:
    return isinstance(value, str | list | tuple)


# ---------------------------------------------------------------------------------------------------------
# Filters and tests
# ---------------------------------------------------------------------------------------------------------

# Filters that cannot reveal internals, mark text safe, or make a value much bigger than their inputs.
ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "int",
        "items", "join", "last", "length", "list", "lower", "max", "min", "replace", "reverse", "round",
        "sort", "string", "striptags", "sum", "title", "trim", "truncate", "unique", "upper", "urlencode",
        "wordcount",
    }
)  # fmt: skip
# Filters that compare their items: n·log n comparisons.
SORTING_FILTERS = frozenset({"dictsort", "sort", "unique", "max", "min"})
# At most how many characters urlencode writes per character read (4 UTF-8 bytes, each %XX).
URLENCODE_GROWTH = 12


def _check_join(value: Any, d: Any = "", attribute: Any = None) -> None:
    # From above: with `attribute`, an item's attribute is part of the item.
    if isinstance(value, str):
        count = total = len(value)
    elif isinstance(value, _CONTAINERS):
        count = len(value)
        total = sum(printed_size(item) for item in (value.values() if isinstance(value, dict) else value))
    else:
        count = total = 0
    total += printed_size(d) * max(count - 1, 0)
    if total > MAX_VALUE_SIZE:
        raise BudgetExceeded(f"join would make more than {MAX_VALUE_SIZE:,} characters")


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    printed_size(s)  # raises before str() of a container too large to print
    text, old_text, new_text = soft_str(s), soft_str(old), soft_str(new)
    found = text.count(old_text) if old_text else len(text) + 1
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        found = min(found, count)
    if len(text) + found * max(len(new_text) - len(old_text), 0) > MAX_VALUE_SIZE:
        raise BudgetExceeded(f"replace would make more than {MAX_VALUE_SIZE:,} characters")


def _check_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    # Adding lists or strings one at a time is quadratic; a message only ever adds numbers.
    if not _is_number(start):
        raise SecurityError("sum adds numbers only")


def _check_urlencode(value: Any) -> None:
    if printed_size(value) * URLENCODE_GROWTH > MAX_VALUE_SIZE:
        raise BudgetExceeded(f"urlencode could make more than {MAX_VALUE_SIZE:,} characters")
    _spend(COST_URL_CHAR * printed_size(value))


_PRECHECKS: Mapping[str, Callable[..., None]] = {
    "join": _check_join,
    "replace": _check_replace,
    "sum": _check_sum,
    "urlencode": _check_urlencode,
}


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with its input sized before (and specific limits checked), its result checked after, and
    the work charged: the input read, the result made, and the comparisons of a sort."""
    pass_arg = _PassArg.from_obj(func)
    skip = 0 if pass_arg is None else 1
    precheck = _PRECHECKS.get(name)
    sorting = name in SORTING_FILTERS

    def bounded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        _spend(cost_of(value))  # sizes the value too: bounds what str(), iterating or comparing it costs
        if precheck is not None:
            precheck(*args[skip:], **kwargs)
        if sorting:
            count = len(value) if isinstance(value, _SIZED) else 0
            if count > 1:
                _spend(COST_COMPARE * count * math.ceil(math.log2(count)))
        result = func(*args, **kwargs)
        if isinstance(result, Iterator):  # items, unique, reverse: generators over a bounded input
            result = list(result)
        return checked(result)

    bounded.__name__ = getattr(func, "__name__", name)
    if pass_arg is not None:
        bounded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return bounded


def _charged_test(func: Callable[..., Any]) -> Callable[..., Any]:
    """A test (`x is in y`, `x is lower`, ...) with the values it reads charged."""
    pass_arg = _PassArg.from_obj(func)
    skip = 0 if pass_arg is None else 1

    def charged(*args: Any) -> Any:
        _spend(sum(cost_of(arg) for arg in args[skip:]))
        return func(*args)

    if pass_arg is not None:
        charged.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return charged


@pass_context
def _counted_loop(context: Context, iterable: Any, weight: int = 0) -> Any:
    """What a `{% for %}` iterates: each iteration counted and charged with the weight of the loop's body,
    up front when the length is known."""
    try:
        length = len(iterable)
    except TypeError:
        return _counted(iterable, weight)
    budget = _budget()
    budget.iterate(length)
    budget.spend(length * (COST_ITERATION + COST_NODE * weight))
    return iterable


def _counted(iterable: Any, weight: int) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.iterate(1)
        budget.spend(COST_ITERATION + COST_NODE * weight)
        yield item


@pass_context
def _charged_body(context: Context, weight: int) -> None:
    """Run at the start of every macro body: the body's weight."""
    _budget().spend(COST_CALL + COST_NODE * weight)


# ---------------------------------------------------------------------------------------------------------
# Code generation
# ---------------------------------------------------------------------------------------------------------

_MARKERS = frozenset({COUNTED_LOOP, CHARGED_BODY})


def body_weight(body: Iterable[nodes.Node]) -> int:
    """Nodes in a loop or macro body, as charged per iteration or call: nested macro bodies are charged
    when called, and what the code generator adds is not counted."""
    count = 0
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.Macro | nodes.CallBlock):
            count += 1
            continue
        if isinstance(node, nodes.ExprStmt) and isinstance(node.node, nodes.Filter):
            if node.node.name in _MARKERS:
                continue
        if isinstance(node, nodes.Filter) and node.name in _MARKERS:
            if node.node is not None:
                stack.append(node.node)
            continue
        count += 1
        stack.extend(node.iter_child_nodes())
    return count


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with what the sandbox has no hook for routed through one: the iterable of
    every loop, the start of every macro body, every `~`, comparison, and built list, tuple or dict."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            if loop.recursive:
                self.fail("recursive loops are not allowed in message templates", loop.lineno)
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == COUNTED_LOOP):
                weight = body_weight([*loop.body, *loop.else_, *([loop.test] if loop.test else [])])
                loop.iter = nodes.Filter(
                    loop.iter, COUNTED_LOOP, [nodes.Const(weight)], [], None, None, lineno=loop.lineno
                )
        for macro in node.find_all((nodes.Macro, nodes.CallBlock)):
            assert isinstance(macro, nodes.Macro | nodes.CallBlock)
            first = macro.body[0] if macro.body else None
            if not (
                isinstance(first, nodes.ExprStmt)
                and isinstance(first.node, nodes.Filter)
                and first.node.name == CHARGED_BODY
            ):
                body = nodes.Const(body_weight(macro.body))
                charge = nodes.Filter(body, CHARGED_BODY, [], [], None, None, lineno=macro.lineno)
                macro.body.insert(0, nodes.ExprStmt(charge, lineno=macro.lineno))
        super().visit_Template(node, frame)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        if frame.eval_ctx.volatile:
            self.write("), context.eval_ctx.autoescape)")
        else:
            self.write(f"), {bool(frame.eval_ctx.autoescape)!r})")

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        # Each operand charged as read: `big == other` or `x in big` costs its size.
        self.write("(environment.compared(")
        self.visit(node.expr, frame)
        self.write(")")
        for op in node.ops:
            self.write(f" {operators[op.op]} environment.compared(")
            self.visit(op.expr, frame)
            self.write(")")
        self.write(")")

    def _checked_literal(self, visit: Callable[[Any, Frame], None], node: Any, frame: Frame) -> None:
        self.write("environment.checked_literal(")
        visit(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target such as {% for k, v in ... %}
            super().visit_Tuple(node, frame)
        else:
            self._checked_literal(super().visit_Tuple, node, frame)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._checked_literal(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._checked_literal(super().visit_Dict, node, frame)


# ---------------------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------------------


def _finalize(value: object) -> object:
    # Optional fields are None in Python; a message should show nothing rather than "None".
    if isinstance(value, str):
        if len(value) >= _UNCOUNTED_OUTPUT:
            _budget().print_long(len(value))
        return value
    if value is None:
        return ""
    if isinstance(value, _CONTAINERS):
        _spend(cost_of(value))
        _budget().print_long(printed_size(value))  # what str() of it is about to make
    return value


class BoundedBuffer(list[str]):
    """What a macro, `{% set %}` block or `{% filter %}` block writes into: at most a value's size."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, chunk: str) -> None:
        self.size += len(chunk)
        if self.size > MAX_VALUE_SIZE:
            raise BudgetExceeded(f"a block would render more than {MAX_VALUE_SIZE:,} characters")
        super().append(chunk)

    def extend(self, chunks: Iterable[str]) -> None:
        for chunk in chunks:
            self.append(chunk)


class MessageSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox narrowed further for message templates, with budgets (see the module).

    Context objects are plain dicts; attribute syntax (`brand.companyName`) reads their keys and never
    their methods, so `values.items` is just a missing key. Nothing callable is reachable by attribute,
    which also rules out `''.format` and friends. Arithmetic is checked at run time (and so never
    constant-folded at compile time) because it can turn a short template into gigabytes, a number too
    big to compute, or (`%`) a format string.
    """

    code_generator_class = _BudgetedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not callable(value) and super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:  # the context's own values: a key, without the ABC check below (per lookup)
            return self._lookup(obj, attribute)
        if isinstance(obj, Mapping):
            return self._lookup(obj, attribute)
        if isinstance(obj, jinja2.Undefined):
            return obj  # a.b.c on a missing a stays missing and renders empty
        # Not super().getattr: it hands out a sandboxed str.format before asking is_safe_attribute.
        try:
            value = getattr(obj, attribute)
        except AttributeError:
            return self.undefined(obj=obj, name=attribute)
        if self.is_safe_attribute(obj, attribute, value):
            return value
        return self.unsafe_undefined(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            return self._lookup(obj, argument)
        if isinstance(obj, jinja2.Undefined):
            return obj
        try:
            item = obj[argument]
        except (TypeError, LookupError):
            if isinstance(argument, str):
                return self.getattr(obj, argument)
            return self.undefined(obj=obj, name=argument)
        if isinstance(argument, slice):
            _spend(cost_of(item))  # a slice is a copy
        return item

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Fail loudly instead of rendering empty: the save-time sample render then reports the template,
        # and a stored one cannot quietly send a message with a hole in it.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} is not allowed")

    def _lookup(self, obj: Mapping[Any, Any], key: Any) -> Any:
        try:
            return obj[key]
        except (KeyError, TypeError):
            return self.undefined(obj=obj, name=key if isinstance(key, str) else None)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        # Sizes are checked before computing wherever the result can outgrow its operands by more than a
        # constant factor (a repeat, a product, a power); elsewhere the result is at most about the sum
        # of the operands, each already within budget, and is checked after.
        if operator == "%":
            if not (_is_number(left) and _is_number(right)):
                raise SecurityError("'%' is only allowed between numbers")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _is_sequence(seq) and isinstance(times, int):
                    if _measured(seq) * max(times, 0) > MAX_VALUE_SIZE:
                        raise BudgetExceeded(f"a repeat would be longer than {MAX_VALUE_SIZE:,}")
            left_bits, right_bits = _int_bits(left), _int_bits(right)
            if left_bits is not None and right_bits is not None and left_bits + right_bits > MAX_INT_BITS + 1:
                raise BudgetExceeded(f"a product would be larger than {MAX_INT_BITS:,} bits")
        elif operator == "**":
            left_bits, right_bits = _int_bits(left), _int_bits(right)
            if left_bits is not None and left_bits > 1 and isinstance(right, int) and right > 0:
                # |left| >= 2, so the result has more than (left_bits - 1) * right bits.
                if right > MAX_INT_BITS or (left_bits - 1) * right > MAX_INT_BITS:
                    raise BudgetExceeded(f"a power would be larger than {MAX_INT_BITS:,} bits")
            elif right_bits is not None and right_bits > MAX_INT_BITS:
                raise BudgetExceeded(f"an exponent larger than {MAX_INT_BITS:,} bits")
        elif _is_sequence(left) and _is_sequence(right):  # + and -
            if _measured(left) + _measured(right) > MAX_VALUE_SIZE:
                raise BudgetExceeded(f"a value would be longer than {MAX_VALUE_SIZE:,}")
        return checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().call()
        return super().call(__context, __obj, *args, **kwargs)

    def compared(self, value: Any) -> Any:
        """An operand of a comparison, charged."""
        if isinstance(value, _SIZED):
            _spend(cost_of(value))
        return value

    def checked_concat(self, operands: tuple[Any, ...], autoescape: bool) -> str:
        """`a ~ b ~ c`: the operands as text, joined, within the value budget."""
        total = 0
        for operand in operands:
            if isinstance(operand, _CONTAINERS):
                _spend(cost_of(operand))
            total += printed_size(operand)
        if autoescape and any(hasattr(operand, "__html__") for operand in operands):
            total *= 5  # the others are escaped: at most &#39; for '
        if total > MAX_VALUE_SIZE:
            raise BudgetExceeded(f"a value would be longer than {MAX_VALUE_SIZE:,} characters")
        _spend(COST_CHAR * total)
        joined = markup_join(operands) if autoescape else str_join(operands)
        if len(joined) > MAX_VALUE_SIZE:  # a value printing longer than estimated (a long macro name)
            raise BudgetExceeded(f"a value would be longer than {MAX_VALUE_SIZE:,} characters")
        return joined

    def checked_literal(self, value: Any) -> Any:
        """A list, tuple or dict the template builds: it may hold the same large value many times."""
        _spend(COST_ITEM * size_of(value))
        return value

    def new_buffer(self) -> BoundedBuffer:
        return BoundedBuffer()

    def concat(self, parts: Iterable[str]) -> str:
        """The output of a macro, `{% set %}` block or `{% filter %}` block, within the value budget."""
        buffered = parts if isinstance(parts, list) else list(parts)
        total = sum(map(len, buffered))
        if total > MAX_VALUE_SIZE:
            raise BudgetExceeded(f"a block would render more than {MAX_VALUE_SIZE:,} characters")
        _spend(COST_CHAR * total)
        return "".join(buffered)


def make_environment(html: bool) -> MessageSandbox:
    env = MessageSandbox(
        autoescape=html,
        undefined=jinja2.ChainableUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    # range, dict, lipsum, cycler, joiner and namespace are all ways to reach Python objects or burn CPU;
    # message templates need none of them.
    env.globals.clear()
    env.filters = {
        name: _bounded_filter(name, f) for name, f in env.filters.items() if name in ALLOWED_FILTERS
    }
    env.filters[COUNTED_LOOP] = _counted_loop
    env.filters[CHARGED_BODY] = _charged_body
    env.tests = {name: _charged_test(cast(Callable[..., Any], test)) for name, test in env.tests.items()}
    return env


def template_line(exc: BaseException) -> int | None:
    """The template line a render's exception was raised at (the innermost template frame), if any."""
    line = getattr(exc, "line", None) if isinstance(exc, BudgetExceeded) else None
    tb = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


class budget_scope:  # noqa: N801 - used as `with budget_scope() as budget:`
    """A budget for the renders of one message on this thread (its parts, one after the other)."""

    __slots__ = ("_budget", "_previous")

    def __init__(self, budget: Budget | None = None) -> None:
        self._budget = budget or Budget()
        self._previous: Budget | None = None

    def __enter__(self) -> Budget:
        self._previous, _active.budget = _active.budget, self._budget
        return self._budget

    def __exit__(self, *exc: object) -> None:
        _active.budget = self._previous


def render_budgeted(
    template: jinja2.Template, part: str, data: Mapping[str, object], budget: Budget | None = None
) -> str:
    """Render one part within its budgets; BudgetExceeded (or the template's own error) otherwise.
    `budget`: the message's, from an enclosing `budget_scope`; else the part gets one of its own."""
    if budget is None or _active.budget is not budget:
        with budget_scope(budget) as own:
            return render_budgeted(template, part, data, own)
    budget.start_part(part)
    limit = OUTPUT_LIMITS.get(part, MAX_VALUE_SIZE)
    stream = template.root_render_func(template.new_context(data))  # type: ignore[arg-type]  # it copies
    # The output is counted a batch of chunks at a time, in C rather than in a Python loop per chunk;
    # most messages are a single batch. What a batch can hold past the limit is small: repeated text is
    # the same string object each time, and long values printed are counted as they are (_finalize).
    batch = list(islice(stream, _OUTPUT_BATCH))
    total = sum(map(len, batch))
    chunks = batch
    while True:
        if total > limit:
            frame = getattr(stream, "gi_frame", None)  # the template's, at the output that went over
            line = template.get_corresponding_lineno(frame.f_lineno) if frame is not None else None
            raise BudgetExceeded(f"the {part} would be longer than {limit:,} characters", line=line)
        if len(batch) < _OUTPUT_BATCH:
            return "".join(chunks)
        batch = list(islice(stream, _OUTPUT_BATCH))
        total += sum(map(len, batch))
        chunks += batch
