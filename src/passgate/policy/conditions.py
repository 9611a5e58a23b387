"""Conditions `{field, operator, value}` and raw CEL, compiled to CEL source (pure).

Every condition compiles to a guarded CEL expression so that a field the request did not carry makes
a positive condition false (and a negative one true) instead of raising an evaluation error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["string", "number", "boolean", "any"]

# The facts a condition can read. Signals added by later features register here too.
FIELDS: dict[str, FieldType] = {
    "eventType": "string",
    "inquiryId": "string",
    "channel": "string",
    "deviceSessionId": "string",
    "userIp": "string",
    "loginUrl": "string",
    "accountCreationUrl": "string",
    "preferredLanguageCode": "string",
    "person.name.first": "string",
    "person.name.last": "string",
    "person.name.preferred": "string",
    "person.emailAddress": "string",
    "person.phoneNumber": "string",
    "account.id": "string",
    "account.username": "string",
    "account.type": "string",
    "account.creationDateTime": "string",
    "account.accountIsActive": "boolean",
    "device.seenForAccount": "boolean",
    "device.trusted": "boolean",
    "device.banned": "boolean",
}


def _register_signals() -> None:
    from passgate.policy.signals import SIGNAL_FIELDS
    from passgate.policy.velocity import velocity_fields

    for path, ftype in {**SIGNAL_FIELDS, **velocity_fields()}.items():
        FIELDS[path] = ftype  # type: ignore[assignment]


_register_signals()

CUSTOM_PREFIX = "customFields."
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

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
)
NEGATIVE = {"notEquals", "notIn"}


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
    if op == "inList":
        if not isinstance(value, str) or not value:
            raise ConditionError("value", "operator inList needs the name of a list")
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
    if op == "inList":
        # Membership is looked up in Python before evaluation (CIDR ranges, normalisation); CEL reads the result.
        return f"(inList[{cel_literal(list_key(field, value))}] == true)"
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
