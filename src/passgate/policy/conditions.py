"""Conditions `{field, operator, value}` and raw CEL, compiled to CEL source (pure).

Every condition compiles to a guarded CEL expression so that a field the request did not carry makes
a positive condition false (and a negative one true) instead of raising an evaluation error.

That CEL expression is the reference semantics of a condition. Deciding runs a native predicate built
by `native_condition` instead, which answers in Python wherever Python and CEL provably agree and hands
every other value to the condition's own CEL program.
"""

from __future__ import annotations

import json
import operator as _op
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import cel

from passgate.policy.fields import CUSTOM_KEY, CUSTOM_PREFIX, FIELDS, FieldType

OPERATOR_ALIASES = {
    "==": "equals",
    "eq": "equals",
    "!=": "notEquals",
    "ne": "notEquals",
    ">": "gt",
    ">=": "gte",
    "≥": "gte",
    "<": "lt",
    "<=": "lte",
    "≤": "lte",
    "not in": "notIn",
    "in list": "inList",
    "not in list": "notInList",
}
OPERATORS = (
    "equals",
    "notEquals",
    "contains",
    "startsWith",
    "endsWith",
    "in",
    "notIn",
    "gt",
    "gte",
    "lt",
    "lte",
    "inList",
    "notInList",
)
NEGATIVE = {"notEquals", "notIn"}
LIST_OPERATORS = ("inList", "notInList")


class ConditionError(ValueError):
    """A condition that cannot be compiled; `where` names the part at fault."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


@dataclass(frozen=True)
class FieldRef:
    path: str
    cel: str
    guard: str
    type: FieldType


def resolve_field(path: str, extra_fields: dict[str, FieldType] | None = None) -> FieldRef:
    if path.startswith(CUSTOM_PREFIX):
        key = path[len(CUSTOM_PREFIX) :]
        if not CUSTOM_KEY.match(key):
            raise ConditionError("field", f"invalid custom field name: {key!r}")
        lit = cel_literal(key)
        return FieldRef(path, f"customFields[{lit}]", f"({lit} in customFields)", "any")
    ftype = FIELDS.get(path) or (extra_fields or {}).get(path)
    if ftype is None:
        raise ConditionError("field", f"unknown field: {path!r}")
    return FieldRef(path, path, f"({path} != null)", ftype)


def normalise_operator(op: str) -> str:
    op = OPERATOR_ALIASES.get(op, OPERATOR_ALIASES.get(op.lower(), op))
    if op not in OPERATORS:
        raise ConditionError("operator", f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    return op


def cel_literal(value: Any) -> str:
    """A CEL literal for a JSON value; ints stay ints and floats become doubles."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ConditionError("value", "integer out of range")
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConditionError("value", "number must be finite")
        return repr(value)
    if isinstance(value, str):
        # JSON string syntax is a subset of CEL's double-quoted strings once non-ASCII stays raw.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(cel_literal(v) for v in value) + "]"
    raise ConditionError("value", f"unsupported value type {type(value).__name__}")


def _check_value(op: str, ref: FieldRef, value: Any) -> None:
    scalar = (str, int, float, bool)
    if op in ("in", "notIn"):
        if not isinstance(value, list) or not value or not all(isinstance(v, scalar) for v in value):
            raise ConditionError("value", f"operator {op} needs a non-empty list of values")
        return
    if op in LIST_OPERATORS:
        if not isinstance(value, str) or not value:
            raise ConditionError("value", f"operator {op} needs the name of a list")
        return
    if not isinstance(value, scalar):
        raise ConditionError("value", f"operator {op} needs a single value")
    if op in ("contains", "startsWith", "endsWith"):
        if not isinstance(value, str):
            raise ConditionError("value", f"operator {op} needs a string value")
        if ref.type not in ("string", "any"):
            raise ConditionError("operator", f"operator {op} applies to text fields only")
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConditionError("value", f"operator {op} needs a number or a string")
        if ref.type == "boolean":
            raise ConditionError("operator", f"operator {op} does not apply to a yes/no field")
    if ref.type == "boolean" and op in ("equals", "notEquals") and not isinstance(value, bool):
        raise ConditionError("value", f"{ref.path} is true or false")
    if ref.type == "number" and op in ("equals", "notEquals", "gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConditionError("value", f"{ref.path} is a number")


def compile_condition(
    field: str, operator: str, value: Any, extra_fields: dict[str, FieldType] | None = None
) -> str:
    ref = resolve_field(field, extra_fields)
    op = normalise_operator(operator)
    _check_value(op, ref, value)
    f = ref.cel
    if op in LIST_OPERATORS:
        # Membership is looked up in Python before evaluation (CIDR ranges, normalisation); CEL reads the
        # result. A value the request lacks is in no list.
        return f"(inList[{cel_literal(list_key(field, value))}] == {'true' if op == 'inList' else 'false'})"
    if op == "in":
        expr = f"({f} in {cel_literal(value)})"
    elif op == "notIn":
        expr = f"!({f} in {cel_literal(value)})"
    elif op in ("contains", "startsWith", "endsWith"):
        expr = f"{f}.{op}({cel_literal(value)})"
    else:
        sym = {"equals": "==", "notEquals": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        lit = cel_literal(value)
        if op in ("gt", "gte", "lt", "lte") and isinstance(value, int | float):
            # CEL does not compare int with double; comparing as doubles accepts either on both sides.
            expr = f"(double({f}) {sym} double({lit}))"
        else:
            expr = f"({f} {sym} {lit})"
    if op in NEGATIVE:
        return f"(!{ref.guard} || {expr})"
    return f"({ref.guard} && {expr})"


def list_key(field: str, list_name: str) -> str:
    return f"{field}|{list_name}"


def conjunction(parts: list[str]) -> str:
    if not parts:
        return "true"
    return " && ".join(f"({p})" for p in parts)


# --- Native evaluation -------------------------------------------------------------------------------
#
# A condition's predicate reads its field with a getter, answers in Python when the value has a type
# Python and CEL provably agree on (exact types: `True == 1` in Python, not in CEL), and otherwise hands
# the value to `_undecided`, which applies the guard or runs the condition's own CEL.

Facts = dict[str, Any]
Predicate = Callable[[Facts], bool]
_Getter = Callable[[Facts], Any]
_Undecided = Callable[[Facts, Any], bool]

# What a getter returns instead of a value: the field cannot be read (a CEL error: the condition is false,
# negative or not); the custom field is absent (the guard fails); only CEL can tell (a null custom field,
# `customFields` that is not a map).
_ERROR: Final = object()
_ABSENT: Final = object()
_UNSURE: Final = object()
_INT64: Final = 2**63  # CEL ints are int64; Python ints beyond become a uint or a double in CEL
_SURROGATE: Final = re.compile("[\ud800-\udfff]")  # a str holding one is no CEL string at all
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": _op.gt,
    "gte": _op.ge,
    "lt": _op.lt,
    "lte": _op.le,
}


class _CelFallback:
    """A condition's own CEL program, compiled on first use (most never need it) and run like
    `engine.run`: true only when the expression evaluates to `true` without an error."""

    __slots__ = ("_program", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._program: Any = None

    def __call__(self, context: Facts) -> bool:
        program = self._program
        if program is None:
            program = self._program = cel.compile(self.source)
        try:
            return program.execute(context) is True
        except Exception:
            return False


def _path_getter(parts: tuple[str, ...]) -> _Getter:
    """The value at a member chain; _ERROR where CEL's selection fails (a missing key, no map on the way)."""
    if len(parts) == 1:
        (first,) = parts

        def get1(facts: Facts) -> Any:
            return facts.get(first, _ERROR)

        return get1
    if len(parts) == 2:
        first, second = parts

        def get2(facts: Facts) -> Any:
            node = facts.get(first)
            return node.get(second, _ERROR) if isinstance(node, dict) else _ERROR

        return get2
    if len(parts) == 3:
        first, second, third = parts

        def get3(facts: Facts) -> Any:
            node = facts.get(first)
            if isinstance(node, dict):
                node = node.get(second)
                if isinstance(node, dict):
                    return node.get(third, _ERROR)
            return _ERROR

        return get3

    def get(facts: Facts) -> Any:
        node: Any = facts
        for part in parts:
            if not isinstance(node, dict):
                return _ERROR
            node = node.get(part, _ERROR)
            if node is _ERROR:
                return _ERROR
        return node

    return get


def _custom_getter(name: str) -> _Getter:
    def get(facts: Facts) -> Any:
        fields = facts.get("customFields", _ERROR)
        if isinstance(fields, dict):
            v = fields.get(name, _ABSENT)
            return _UNSURE if v is None else v
        return _ERROR if fields is _ERROR else _UNSURE

    return get


def _nest(parts: tuple[str, ...], value: Any) -> Facts:
    out: Facts = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def _undecided_path(parts: tuple[str, ...], negative: bool, fallback: _CelFallback) -> _Undecided:
    def undecided(facts: Facts, v: Any) -> bool:
        if v is _ERROR:
            return False
        if v is None:
            return negative  # the guard `path != null` fails
        return fallback(_nest(parts, v))  # CEL decides, on the one value it would read

    return undecided


def _undecided_custom(name: str, negative: bool, fallback: _CelFallback) -> _Undecided:
    def undecided(facts: Facts, v: Any) -> bool:
        if v is _ERROR:
            return False
        if v is _ABSENT:
            return negative  # the guard `"name" in customFields` fails
        fields = facts["customFields"]
        return fallback({"customFields": {name: fields[name]} if isinstance(fields, dict) else fields})

    return undecided


def _cel_string(v: str) -> bool:
    return v.isascii() or _SURROGATE.search(v) is None


def _equality(get: _Getter, undecided: _Undecided, negate: bool, literal: Any) -> Predicate:
    kind = type(literal)
    if kind is str:
        text: str = literal

        def equals_str(facts: Facts) -> bool:
            v = get(facts)
            if type(v) is str and (v.isascii() or _SURROGATE.search(v) is None):
                return (text != v) if negate else (text == v)
            return undecided(facts, v)

        return equals_str
    if kind is int:
        number: int = literal

        def equals_int(facts: Facts) -> bool:
            v = get(facts)
            if type(v) is int and -_INT64 <= v < _INT64:
                return (number != v) if negate else (number == v)
            return undecided(facts, v)

        return equals_int
    exact: bool | float = literal

    def equals_exact(facts: Facts) -> bool:  # a bool or a float, compared with a value of its exact type
        v = get(facts)
        if type(v) is kind:
            same: bool = exact == v
            return not same if negate else same
        return undecided(facts, v)

    return equals_exact


def _membership(get: _Getter, undecided: _Undecided, negate: bool, literal: list[Any]) -> Predicate:
    kinds = {type(x) for x in literal}
    kind = kinds.pop() if len(kinds) == 1 else None
    members = frozenset(literal) if kind in (str, int, bool) else frozenset()

    def member(facts: Facts) -> bool:
        v = get(facts)
        if type(v) is kind and members:
            if kind is str and not _cel_string(v):
                return undecided(facts, v)
            if kind is int and not -_INT64 <= v < _INT64:
                return undecided(facts, v)
            return (v not in members) if negate else (v in members)
        return undecided(facts, v)  # a mixed list, a list of doubles or another type: CEL decides

    return member


def _text(get: _Getter, undecided: _Undecided, op: str, literal: str) -> Predicate:
    if op == "contains":

        def contains(facts: Facts) -> bool:
            v = get(facts)
            if type(v) is str and (v.isascii() or _SURROGATE.search(v) is None):
                return literal in v
            return undecided(facts, v)

        return contains
    starts = op == "startsWith"

    def affix(facts: Facts) -> bool:
        v = get(facts)
        if type(v) is str and (v.isascii() or _SURROGATE.search(v) is None):
            return v.startswith(literal) if starts else v.endswith(literal)
        return undecided(facts, v)

    return affix


def _order(get: _Getter, undecided: _Undecided, op: str, literal: Any) -> Predicate:
    compare = _ORDER[op]
    if type(literal) is str:

        def order_str(facts: Facts) -> bool:
            v = get(facts)
            if type(v) is str and (v.isascii() or _SURROGATE.search(v) is None):
                return compare(v, literal)
            return undecided(facts, v)

        return order_str
    bound = float(literal)  # the CEL is `double(f) op double(literal)`

    def order_number(facts: Facts) -> bool:
        v = get(facts)
        kind = type(v)
        if kind is float:
            return compare(v, bound)
        if kind is int and -_INT64 <= v < _INT64:
            return compare(float(v), bound)
        return undecided(facts, v)  # a numeric string (`double("12")`), a bool, a uint, ...: CEL decides

    return order_number


def native_condition(
    field: str, operator: str, value: Any, extra_fields: dict[str, FieldType] | None = None
) -> Predicate:
    """A predicate over the facts giving what the condition's CEL (`compile_condition`) gives when run
    like `engine.run`: true only if it evaluates to `true` without an error.

    A field path that cannot be walked (a missing key, a value that is not a map on the way) is an error
    in CEL, so the condition is false, negative or not; null (or an absent custom field) fails the guard:
    a positive condition is false, a negative one true. Values of a type Python and CEL are known to agree
    on are decided here; any other value is handed to the condition's own CEL program, on a context holding
    only that value.
    """
    source = compile_condition(field, operator, value, extra_fields)  # validates; the reference semantics
    op = normalise_operator(operator)
    if op in LIST_OPERATORS:
        key = list_key(field, value)
        expected = op == "inList"

        def in_list(facts: Facts) -> bool:  # CEL: inList["key"] == true (inList) or false (notInList)
            memberships = facts.get("inList")
            return isinstance(memberships, dict) and memberships.get(key) is expected

        return in_list
    fallback = _CelFallback(source)
    negative = op in NEGATIVE
    get: _Getter
    undecided: _Undecided
    if field.startswith(CUSTOM_PREFIX):
        name = field[len(CUSTOM_PREFIX) :]
        get, undecided = _custom_getter(name), _undecided_custom(name, negative, fallback)
    else:
        parts = tuple(field.split("."))
        get, undecided = _path_getter(parts), _undecided_path(parts, negative, fallback)
    if op in ("equals", "notEquals"):
        return _equality(get, undecided, negative, value)
    if op in ("in", "notIn"):
        return _membership(get, undecided, negative, value)
    if op in ("contains", "startsWith", "endsWith"):
        return _text(get, undecided, op, value)
    return _order(get, undecided, op, value)
