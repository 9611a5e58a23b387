"""The policy editor's rule builder: every catalogue field has a kind, a label and a type; each type offers the
operators that fit it; each (field, operator) pair has its value control; the checks before a save agree
with the compiler wherever the compiler refuses, and say what to choose instead."""

from __future__ import annotations

import itertools

import pytest

from passgate.console.rules import (
    TYPE_OPERATORS,
    catalogue,
    check_conditions,
    field_groups,
    field_options,
    focus_after,
    operators_for,
    value_control,
)
from passgate.policy.conditions import OPERATORS, ConditionError, compile_condition
from passgate.policy.fields import FIELDS


def test_every_field_is_in_one_group_with_a_label() -> None:
    paths = [path for _, items in field_groups() for path, _, _ in items]
    assert sorted(paths) == sorted(FIELDS)
    assert len(paths) == len(set(paths))
    labels = [o["label"] for o in field_options()]
    assert len(labels) == len(set(labels)), "two fields read the same"
    assert {
        "path": "device.trusted",
        "type": "boolean",
        "label": "Device: trusted (yes/no)",
    } in field_options()
    assert catalogue()["types"]["velocity.email.challenges24h"] == "number"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("device.trusted", ["equals", "notEquals"]),
        ("ip.version", ["equals", "notEquals", "in", "notIn", "gt", "gte", "lt", "lte"]),
        ("velocity.ip.logins1h", ["equals", "notEquals", "in", "notIn", "gt", "gte", "lt", "lte"]),
        ("email.domain", list(OPERATORS)),
        ("customFields.riskTier", list(OPERATORS)),
    ],
)
def test_operators_per_type(path: str, expected: list[str]) -> None:
    assert [o for o, _, _ in operators_for(path)] == expected
    assert all(fits for _, _, fits in operators_for(path))


def test_a_saved_operator_that_does_not_fit_is_still_offered_marked() -> None:
    offered = operators_for("device.trusted", "gt")
    assert offered[-1] == ("gt", "> (does not fit this field)", False)
    assert operators_for("device.trusted", "==") == operators_for("device.trusted")  # an alias of equals


@pytest.mark.parametrize(
    ("path", "op", "control"),
    [
        ("device.trusted", "equals", "boolean"),
        ("ip.version", "gte", "number"),
        ("ip.version", "in", "set"),
        ("email.domain", "inList", "list"),
        ("customFields.x", "notInList", "list"),
        ("email.domain", "startsWith", "text"),
        ("customFields.x", "equals", "text"),
        ("phone.country", "notIn", "set"),
    ],
)
def test_value_control(path: str, op: str, control: str) -> None:
    assert value_control(path, op) == control


SAMPLES = {"string": "x", "number": 3, "boolean": True}


def test_the_checks_refuse_whatever_the_compiler_refuses_for_the_operator() -> None:
    """For every catalogue field and operator with a value of the field's own type (a list for in/notIn, a
    list name for list checks): when the compiler refuses the operator, the editor's check does too. The
    check is stricter only where the type table says so."""
    for path, op in itertools.product(FIELDS, OPERATORS):
        ftype = FIELDS[path]
        value: object = SAMPLES[ftype]
        if op in ("in", "notIn"):
            value = [value]
        if op in ("inList", "notInList"):
            value = "known"
        if op in ("contains", "startsWith", "endsWith"):
            value = "x"
        errors = check_conditions(
            {"policies": [{"conditions": [{"field": path, "operator": op, "value": value}]}]}, {"known"}
        )
        try:
            compile_condition(path, op, value)
            compiled = True
        except ConditionError as exc:
            compiled = exc.where != "operator"
        if not compiled:
            assert errors, (path, op)
        assert bool(errors) == (op not in TYPE_OPERATORS[ftype]), (path, op, errors)
        if errors:
            assert errors[0]["field"] == "policies[0].conditions[0].operator"
            assert "does not fit" in errors[0]["message"] and "Choose" in errors[0]["message"]


def test_list_checks_name_one_of_the_clients_lists() -> None:
    doc = {
        "segments": [{"conditions": [{"field": "email.domain", "operator": "in list", "value": "nope"}]}],
        "policies": [{"conditions": [{"field": "userIp", "operator": "inList", "value": ""}]}],
    }
    assert check_conditions(doc, {"office"}) == [
        {
            "field": "segments[0].conditions[0].value",
            "message": "There is no list named nope. Choose one of your lists, or create it on the Lists page.",
        },
        {"field": "policies[0].conditions[0].value", "message": "Choose one of your lists."},
    ]
    # Unknown fields and operators, and odd shapes, are left to the compiler's own words.
    odd = {"policies": [{"conditions": [{"field": "nope", "operator": "gt"}, {"field": "ip.version"}, 3]}, 7]}
    assert check_conditions(odd, set()) == []
    assert check_conditions({"policies": "x", "segments": None}, set()) == []


def test_focus_after_names_no_part_for_an_action_it_does_not_know() -> None:
    doc = {"segments": [{"name": "d"}], "policies": [{"name": "p", "conditions": [], "tags": []}]}
    assert focus_after(doc, "save") is None
    assert focus_after(doc, "add-condition:x") is None
    assert focus_after(doc, "remove-condition:5:0") is None
    assert focus_after(doc, "remove-condition:0:3") is None
    assert focus_after(doc, "remove-condition:0:0") == "p0-add-condition"
    assert focus_after({"segments": [], "policies": []}, "remove-policy:0") == "add-policy"
