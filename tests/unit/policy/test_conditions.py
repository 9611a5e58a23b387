from __future__ import annotations

from typing import Any

import cel
import pytest

from passgate.policy.conditions import ConditionError, cel_literal, compile_condition
from passgate.policy.signals import request_facts


def facts(**body: Any) -> dict[str, Any]:
    f = request_facts("LOGIN", {"inquiryId": "i", "deviceSessionId": "d", **body})
    f["device"] = {"seenForAccount": False, "trusted": False, "banned": False}
    return f


def holds(field: str, op: str, value: Any, **body: Any) -> bool:
    src = compile_condition(field, op, value)
    try:
        return cel.compile(src).execute(facts(**body)) is True
    except Exception:
        return False


STRING_CASES = [
    ("equals", "WEB", "WEB", True),
    ("equals", "WEB", "APP", False),
    ("notEquals", "WEB", "APP", True),
    ("notEquals", "WEB", "WEB", False),
    ("contains", "EB", "WEB", True),
    ("contains", "XX", "WEB", False),
    ("startsWith", "WE", "WEB", True),
    ("startsWith", "EB", "WEB", False),
    ("endsWith", "EB", "WEB", True),
    ("endsWith", "WE", "WEB", False),
    ("in", ["APP", "WEB"], "WEB", True),
    ("in", ["APP"], "WEB", False),
    ("notIn", ["APP"], "WEB", True),
    ("notIn", ["WEB"], "WEB", False),
    ("gt", "A", "WEB", True),
    ("lt", "A", "WEB", False),
    ("gte", "WEB", "WEB", True),
    ("lte", "WEA", "WEB", False),
]


@pytest.mark.parametrize(("op", "value", "actual", "expected"), STRING_CASES)
def test_string_operators(op: str, value: Any, actual: str, expected: bool) -> None:
    assert holds("channel", op, value, channel=actual) is expected


NUMBER_CASES = [
    ("equals", 5, 5, True),
    ("equals", 5, 5.0, True),
    ("equals", 5, 6, False),
    ("notEquals", 5, 6, True),
    ("gt", 100, 120.5, True),
    ("gt", 100, 100, False),
    ("gte", 100, 100, True),
    ("lt", 10.5, 3, True),
    ("lt", 3, 3, False),
    ("lte", 3, 3, True),
    ("in", [1, 2, 3], 2, True),
    ("notIn", [1, 2, 3], 4, True),
]


@pytest.mark.parametrize(("op", "value", "actual", "expected"), NUMBER_CASES)
def test_number_operators_on_custom_fields(op: str, value: Any, actual: float, expected: bool) -> None:
    assert holds("customFields.cartValue", op, value, customFields={"cartValue": actual}) is expected


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [("equals", True, True, True), ("equals", True, False, False), ("notEquals", True, False, True)],
)
def test_boolean_operators(op: str, value: bool, actual: bool, expected: bool) -> None:
    assert (
        holds(
            "account.accountIsActive",
            op,
            value,
            account={"id": "a", "username": "u", "accountIsActive": actual},
        )
        is expected
    )


def test_absent_field_makes_positive_false_and_negative_true() -> None:
    assert holds("channel", "equals", "WEB") is False
    assert holds("channel", "notEquals", "WEB") is True
    assert holds("customFields.tier", "equals", "gold") is False
    assert holds("customFields.tier", "notIn", ["gold"]) is True
    assert holds("customFields.n", "gt", 3) is False


def test_type_mismatch_does_not_hold() -> None:
    assert holds("customFields.n", "gt", 3, customFields={"n": "lots"}) is False


def test_nested_fields_and_device() -> None:
    assert holds("person.emailAddress", "endsWith", "@example.com", person={"emailAddress": "a@example.com"})
    assert holds("device.seenForAccount", "equals", False)


@pytest.mark.parametrize(
    ("field", "op", "value", "where"),
    [
        ("nope.field", "equals", 1, "field"),
        ("channel", "resembles", "x", "operator"),
        ("channel", "in", "x", "value"),
        ("channel", "in", [], "value"),
        ("device.seenForAccount", "equals", "yes", "value"),
        ("device.seenForAccount", "gt", 1, "operator"),
        ("channel", "contains", 3, "value"),
        ("customFields.bad key", "equals", 1, "field"),
        ("channel", "equals", {"a": 1}, "value"),
    ],
)
def test_invalid_conditions_name_the_part(field: str, op: str, value: Any, where: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(field, op, value)
    assert info.value.where == where


def test_literals_resist_injection() -> None:
    sneaky = '" || true || "'
    assert holds("channel", "equals", sneaky, channel="WEB") is False
    assert cel.compile(cel_literal('é\n"\\')).execute({}) == 'é\n"\\'


def test_operator_aliases() -> None:
    assert holds("customFields.n", ">=", 3, customFields={"n": 3})
    assert holds("customFields.n", "!=", 3, customFields={"n": 4})
