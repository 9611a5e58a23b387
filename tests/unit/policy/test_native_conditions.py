"""The native predicates of structured conditions answer exactly what their CEL expressions answer.

The reference is the condition's CEL (`compile_condition`) run like `engine.run`: true only when it
evaluates to `true` without an error. Every comparison here is native against that reference.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import cel
import pytest

from passgate.policy import engine
from passgate.policy.conditions import OPERATORS as ALL_OPERATORS
from passgate.policy.conditions import ConditionError, compile_condition, native_condition
from passgate.policy.engine import compile_set, evaluate, evaluate_cel, run
from passgate.policy.schemas import PolicySetDocument, default_document
from tests.unit.policy.test_fact_shapes import _random_facts

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policy-set-25.json"

# Every operator but the list checks, which have tests of their own.
OPERATORS = tuple(op for op in ALL_OPERATORS if op not in ("inList", "notInList"))
# One field of each declared type, a deeper path, and a custom field (type "any").
FIELDS = (
    "channel",
    "person.name.first",
    "account.accountIsActive",
    "account.ageDays",
    "customFields.cart.value",
)

STRINGS = ["", "abc", "ABC", "12", "1e3", " 7", "7 ", "-3", "0x10", "NaN", "inf", "true", "null"]
STRINGS += ["é", "é", "日本語", "a\u0000b", "😀x", "\ud800"]  # "\ud800": not a CEL string at all
INTS = [0, 1, -1, 7, 12, 500, 1000, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1]
FLOATS = [0.0, -0.0, 0.5, 1.0, 7.0, 12.0, 499.999, 500.0, 1e3, 1e308, -1e308, 2.0**53, 2.0**63]
FLOATS += [9007199254740993.0, math.inf, -math.inf, math.nan]
BOOLS = [True, False]
OTHERS: list[Any] = [None, [], ["abc"], [1, 2], [True], {}, {"a": 1}, {"abc": True}, ("abc",)]
VALUES: list[Any] = STRINGS + INTS + FLOATS + BOOLS + OTHERS

LIT_STRINGS = ["", "abc", "12", "1e3", "7", "é", "日本", "NaN", "A", "zz"]
LIT_INTS = [0, 1, -1, 7, 12, 500, 1000, 2**53, 2**53 + 1, 2**63 - 1, -(2**63)]
LIT_FLOATS = [0.0, -0.0, 0.5, 7.0, 12.0, 499.999, 500.0, 1e3, 1e308, 2.0**53]
LITERALS: list[Any] = LIT_STRINGS + LIT_INTS + LIT_FLOATS + BOOLS
LIST_LITERALS: list[Any] = [
    ["abc", "12"],
    [""],
    ["é", "x"],
    [0, 7, 12],
    [2**63 - 1],
    [1],
    [0.5, 7.0],
    [-0.0],
    [True],
    [False, True],
    ["abc", 7],
    [7, 7.0],
    [True, 1],
    ["12", 12, 12.0, True],
]

MISSING = object()


def _place(field: str, value: Any) -> dict[str, Any]:
    """Facts holding `value` at `field` (MISSING: the last key absent), next to unrelated facts."""
    facts: dict[str, Any] = {"eventType": "LOGIN", "device": {"seenForAccount": True}}
    if field.startswith("customFields."):
        key = field[len("customFields.") :]
        facts["customFields"] = {} if value is MISSING else {key: value, "other": 1}
        return facts
    parts = field.split(".")
    node = facts
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is not MISSING:
        node[parts[-1]] = value
    return facts


# Fact shapes around the value: the path cannot be walked, or the container is not a map.
STRUCTURES: list[tuple[str, dict[str, Any]]] = [
    ("channel", {}),
    ("person.name.first", {}),
    ("person.name.first", {"person": None}),
    ("person.name.first", {"person": {"name": None}}),
    ("person.name.first", {"person": {"name": ["first"]}}),
    ("person.name.first", {"person": {"name": "first"}}),
    ("person.name.first", {"person": {"name": {"last": "x"}}}),
    ("person.name.first", {"person": []}),
    ("account.ageDays", {"account": 5}),
    ("customFields.cart.value", {}),
    ("customFields.cart.value", {"customFields": None}),
    ("customFields.cart.value", {"customFields": ["cart.value"]}),
    ("customFields.cart.value", {"customFields": ["other"]}),
    ("customFields.cart.value", {"customFields": "cart.value"}),
    ("customFields.cart.value", {"customFields": {"cart": {"value": 1}}}),
    ("customFields.cart.value", {"customFields": {"cart.value": None}}),
]


def _reference(field: str, op: str, literal: Any, facts: dict[str, Any]) -> bool:
    return run(cel.compile(compile_condition(field, op, literal)), facts)


_COMPILED: dict[tuple[str, str, str], tuple[Any, Any] | None] = {}


def _compare(
    field: str, op: str, literal: Any, facts: dict[str, Any], extra: dict[str, Any] | None = None
) -> None:
    key = (field, op, json.dumps(literal))
    if key not in _COMPILED:
        try:
            predicate = native_condition(field, op, literal, extra)
        except ConditionError:
            with pytest.raises(ConditionError):
                compile_condition(field, op, literal, extra)
            _COMPILED[key] = None
        else:
            _COMPILED[key] = (predicate, cel.compile(compile_condition(field, op, literal, extra)))
    compiled = _COMPILED[key]
    if compiled is None:
        return
    predicate, program = compiled
    expected = run(program, facts)
    assert predicate(facts) is expected, (field, op, literal, facts)


def _literals_for(op: str) -> list[Any]:
    return LIST_LITERALS if op in ("in", "notIn") else LITERALS


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("field", ["customFields.cart.value", "person.name.first", "account.ageDays"])
def test_every_value_against_every_literal(op: str, field: str) -> None:
    """The hand-picked edges: every value of the pool against every literal, on a custom field (any type),
    a text field and a number field (the validation refuses some literals on typed fields)."""
    for literal in _literals_for(op):
        for value in VALUES:
            _compare(field, op, literal, _place(field, value))


def test_yes_no_fields() -> None:
    for op in ("equals", "notEquals", "in", "notIn"):
        for literal in _literals_for(op):
            for value in VALUES:
                _compare("account.accountIsActive", op, literal, _place("account.accountIsActive", value))


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator_on_structures_and_absent_values(op: str) -> None:
    for literal in _literals_for(op)[::3]:
        for field, facts in STRUCTURES:
            _compare(field, op, literal, facts)
        for field in FIELDS:
            _compare(field, op, literal, _place(field, MISSING))
            _compare(field, op, literal, _place(field, None))


def _near(rng: random.Random, literal: Any) -> Any:
    """A value equal to the literal, or next to it, or the same number as another type."""
    if isinstance(literal, list):
        literal = rng.choice(literal)
    out: list[Any] = [literal, str(literal), [literal], {"v": literal}]
    if isinstance(literal, bool):
        out += [int(literal), float(literal), not literal]
    elif isinstance(literal, int | float):
        out += [
            int(literal),
            float(literal),
            literal + 1,
            literal - 1,
            -literal,
            f" {literal}",
            repr(literal),
        ]
        out += [math.nextafter(float(literal), math.inf), literal == 1]
    else:
        out += [literal.upper(), literal + "x", "x" + literal, literal[:1], literal[1:]]
    return rng.choice(out)


def test_random_sample_against_cel() -> None:
    rng = random.Random(20240611)
    for _ in range(12_000):
        op = rng.choice(OPERATORS)
        field = rng.choice(FIELDS)
        literal = rng.choice(_literals_for(op))
        roll = rng.random()
        if roll < 0.05:
            value: Any = MISSING
        elif roll < 0.55:
            value = _near(rng, literal)
        else:
            value = rng.choice(VALUES)
        _compare(field, op, literal, _place(field, value))


def test_deeper_paths() -> None:
    """Paths of any depth walk nested maps the same way (no registered field is this deep)."""
    extra: dict[str, Any] = {"a.b.c.d": "any"}
    shapes: list[dict[str, Any]] = [{}, {"a": None}, {"a": {"b": {"c": None}}}, {"a": {"b": {"c": []}}}]
    shapes += [{"a": {"b": "c"}}, {"a": {"b": {"c": {}}}}, {"a": {"b": {"c": {"d": None}}}}]
    for op in OPERATORS:
        for literal in _literals_for(op)[::2]:
            for facts in shapes:
                _compare("a.b.c.d", op, literal, facts, extra)
            for value in VALUES[::3]:
                _compare("a.b.c.d", op, literal, {"a": {"b": {"c": {"d": value}}}}, extra)


@pytest.mark.parametrize(
    "memberships",
    [
        MISSING,
        None,
        [],
        "x",
        {},
        {"channel|blocked": True},
        {"channel|blocked": False},
        {"channel|blocked": 1},
        {"channel|blocked": "true"},
        {"channel|blocked": None},
        {"channel|blocked": [True]},
        {"channel|other": True},
    ],
)
@pytest.mark.parametrize("op", ["inList", "notInList"])
def test_list_checks(memberships: Any, op: str) -> None:
    facts: dict[str, Any] = {"channel": "WEB"}
    if memberships is not MISSING:
        facts["inList"] = memberships
    _compare("channel", op, "blocked", facts)


def test_numeric_strings_are_left_to_cel() -> None:
    """CEL reads `double("12")` as 12.0; Python never compares a str with a number."""
    facts = {"customFields": {"n": "12"}}
    assert native_condition("customFields.n", "gt", 3)(facts) is True
    assert native_condition("customFields.n", "gt", 30)(facts) is False
    assert native_condition("customFields.n", "gt", 3)({"customFields": {"n": "lots"}}) is False


def test_an_absent_custom_field_is_decided_without_cel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("CEL was used")

    monkeypatch.setattr(cel, "compile", refuse)
    monkeypatch.setattr(cel, "Context", refuse)
    assert native_condition("customFields.tier", "notIn", ["gold"])({"customFields": {}}) is True
    assert native_condition("customFields.tier", "equals", "gold")({"customFields": {}}) is False
    assert native_condition("customFields.tier", "equals", "gold")({"customFields": {"tier": "gold"}})
    assert native_condition("account.ageDays", "lt", 7)({"account": {"ageDays": 0.5}})
    assert native_condition("account.ageDays", "lt", 7)({"account": {"ageDays": None}}) is False
    assert native_condition("account.ageDays", "notEquals", 7)({"account": {"ageDays": None}}) is True
    assert native_condition("account.ageDays", "notEquals", 7)({"account": {}}) is False


# --- Whole sets ---------------------------------------------------------------------------------------


def _same(a: engine.Outcome, b: engine.Outcome) -> None:
    assert (a.decision, a.segment, a.mfa_enabled, a.tags, a.tag_weights, a.matched) == (
        b.decision,
        b.segment,
        b.mfa_enabled,
        b.tags,
        b.tag_weights,
        b.matched,
    )


def _odd_custom(rng: random.Random) -> dict[str, Any]:
    """Custom fields of any type, so the fast paths and the CEL fallback both decide."""
    values: list[Any] = ["red", "green", "12", "1e3", "", 0, 499, 500, 1000, 1001, 2**63, 500.0, 1000.5]
    values += [math.nan, math.inf, True, False]
    return {k: rng.choice(values) for k in ("riskTier", "cartValue") if rng.random() < 0.8}


@pytest.mark.parametrize(
    ("name", "outcomes"),
    [("example", {"ALLOW", "CHALLENGE", "BLOCK"}), ("default", {"ALLOW", "CHALLENGE"})],
)
def test_native_evaluation_matches_cel_on_whole_sets(name: str, outcomes: set[str]) -> None:
    if name == "example":
        document = json.loads(EXAMPLE.read_text())
    else:
        document = default_document("LOGIN")
    compiled = compile_set(PolicySetDocument.model_validate(document), "v1")
    rng = random.Random(11)
    decisions = set()
    for i in range(400):
        facts = _random_facts(rng)
        if i % 2:
            facts["customFields"] = _odd_custom(rng)
        facts["inList"] = {f"{field}|{list_}": rng.random() < 0.1 for field, list_ in compiled.list_refs}
        native, reference = evaluate(compiled, facts), evaluate_cel(compiled, facts)
        _same(native, reference)
        decisions.add(native.decision)
    assert decisions == outcomes  # the facts exercised every outcome the set has


MIXED = {
    "name": "mixed",
    "segments": [
        {
            "name": "vip",
            "conditions": [{"field": "customFields.tier", "operator": "equals", "value": "gold"}],
            "cel": "customFields.cartValue > 100",
            "policies": ["raw-only"],
        },
        {"name": "default", "mfaEnabled": True, "policies": ["both", "raw-only", "fields-only"]},
    ],
    "policies": [
        {
            "name": "both",
            "outcome": "BLOCK",
            "conditions": [{"field": "device.banned", "operator": "equals", "value": True}],
            "cel": "velocity.ip.logins1h > 3",
        },
        {"name": "raw-only", "outcome": "CHALLENGE", "cel": 'email.domain.endsWith("acme.com")'},
        {
            "name": "fields-only",
            "outcome": "CHALLENGE",
            "conditions": [{"field": "customFields.riskTier", "operator": "in", "value": ["red"]}],
            "tags": [{"name": "RED", "weight": 3}],
        },
    ],
}


def test_raw_cel_with_conditions_matches_cel() -> None:
    compiled = compile_set(PolicySetDocument.model_validate(MIXED), "v1")
    rng = random.Random(5)
    decisions = set()
    for _ in range(300):
        facts = _random_facts(rng)
        facts["customFields"]["tier"] = rng.choice(["gold", "silver", 1])
        native, reference = evaluate(compiled, facts), evaluate_cel(compiled, facts)
        _same(native, reference)
        decisions.add((native.decision, native.segment))
    assert len(decisions) >= 5


def test_raw_cel_that_only_parses_inside_the_conjunction_keeps_its_meaning() -> None:
    """`false) || (true` is not an expression alone, but the stored set compiled it as part of
    `(condition) && (false) || (true)`; that meaning is kept rather than refusing the set."""
    document = {
        "name": "odd",
        "segments": [{"name": "default", "policies": ["p"]}],
        "policies": [
            {
                "name": "p",
                "outcome": "BLOCK",
                "conditions": [{"field": "channel", "operator": "equals", "value": "APP"}],
                "cel": "false) || (true",
            }
        ],
    }
    compiled = compile_set(PolicySetDocument.model_validate(document), "v1")
    facts = {"channel": "WEB"}
    assert evaluate_cel(compiled, facts).decision == "BLOCK"
    assert evaluate(compiled, facts).decision == "BLOCK"


def test_a_set_without_raw_cel_never_builds_a_cel_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example with its one raw-CEL policy (invalid-phone) rewritten as a condition, and the default set:
    deciding never converts a fact to a CEL value."""
    example = json.loads(EXAMPLE.read_text())
    sets = [
        compile_set(PolicySetDocument.model_validate({**example, "policies": _without_raw(example)}), "v1"),
        compile_set(PolicySetDocument.model_validate(default_document("LOGIN")), "v1"),
    ]
    rng = random.Random(3)
    cases = []
    for compiled in sets:
        assert not compiled.raw_variables
        for _ in range(100):
            facts = _random_facts(rng)
            facts["inList"] = {f"{f}|{name}": rng.random() < 0.1 for f, name in compiled.list_refs}
            cases.append((compiled, facts, evaluate_cel(compiled, facts)))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a CEL context was built")

    monkeypatch.setattr(cel, "Context", refuse)
    monkeypatch.setattr(engine, "context_for", refuse)
    monkeypatch.setattr(engine, "raw_context_for", refuse)
    for compiled, facts, reference in cases:
        _same(evaluate(compiled, facts), reference)


def _without_raw(document: dict[str, Any]) -> list[dict[str, Any]]:
    policies = []
    for p in document["policies"]:
        if p.get("cel"):
            p = {
                **p,
                "cel": None,
                "conditions": [{"field": "phone.valid", "operator": "equals", "value": False}],
            }
        policies.append(p)
    return policies


def test_raw_cel_context_holds_only_what_raw_cel_reads() -> None:
    compiled = compile_set(PolicySetDocument.model_validate(json.loads(EXAMPLE.read_text())), "v1")
    assert compiled.raw_variables == frozenset({"person", "phone"})
    assert compiled.raw_shapes == {"person": {"phoneNumber": None}, "phone": {"valid": None}}
