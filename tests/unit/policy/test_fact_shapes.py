"""Only the members a set reads are handed to CEL; projecting the facts never changes a decision."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from passgate.policy.engine import Shape, compile_set, evaluate, evaluate_cel, project, read_shapes
from passgate.policy.schemas import PolicySetDocument

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policy-set-25.json"
ROOTS = frozenset({"email", "person", "account", "velocity", "device", "customFields", "inList"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("email.domain == 'x'", {"email": {"domain": None}}),
        (
            "velocity.ip.logins1h > 3 && velocity.ip.logins24h > 9",
            {"velocity": {"ip": {"logins1h": None, "logins24h": None}}},
        ),
        ("has(device.banned) && device.trusted", {"device": {"banned": None, "trusted": None}}),
        # a call on a member reads that member whole
        ("email.domain.endsWith('.ru')", {"email": {"domain": None}}),
        # dots with spaces are still a member chain
        ("account . id == 'a'", {"account": {"id": None}}),
        # any other use of a root reads it whole: absent from the shapes
        ("size(person) > 1", {}),
        ("customFields['cart.value'] > 1", {}),
        ('inList["email|blocked"]', {}),
        ("account.all(k, k != '')", {}),
        ("velocity.ip['logins1h'] > 1", {"velocity": {"ip": None}}),
        # a member of something else is not a root
        ("x.email.q == 1", {}),
        # a shorter chain wins over a longer one
        ("velocity.ip == {} || velocity.ip.logins1h > 1", {"velocity": {"ip": None}}),
    ],
)
def test_read_shapes(source: str, expected: dict[str, Shape]) -> None:
    assert read_shapes([source], ROOTS) == expected


def test_project_keeps_only_the_shape_and_leaves_absent_members_absent() -> None:
    facts = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    assert project(facts, {"b": {"c": None}, "x": None}) == {"b": {"c": 2}}
    assert project(facts, None) is facts
    assert project(5, {"a": None}) == 5  # not a map: handed over as it is


def _random_facts(rng: random.Random) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return value if rng.random() < 0.8 else None

    return {
        "eventType": "LOGIN",
        "deviceSessionId": rng.choice(["d1", "baddev1", "dev9"]),
        "userIp": rng.choice(["8.8.4.4", "203.0.113.5", "10.0.0.1"]),
        "person": {
            "name": {"first": "Jo", "last": "Doe", "preferred": None},
            "emailAddress": maybe(rng.choice(["jo@acme.com", "x@mailinator.com"])),
            "phoneNumber": maybe("+12015550123"),
        },
        "account": {
            "id": maybe(rng.choice(["a1", "vip1"])),
            "username": "jo",
            "type": "PRO",
            "creationDateTime": None,
            "accountIsActive": maybe(rng.random() < 0.5),
            "ageDays": maybe(rng.choice([0.5, 3.0, 400.0])),
        },
        "customFields": {
            k: v
            for k, v in (
                ("riskTier", rng.choice(["red", "green"])),
                ("cartValue", rng.choice([10, 900, 5000.5])),
            )
            if rng.random() < 0.8
        },
        "device": {
            "seenForAccount": rng.random() < 0.5,
            "trusted": rng.random() < 0.2,
            "banned": rng.random() < 0.1,
        },
        "email": {
            "domain": rng.choice(["acme.com", "mailinator.com"]),
            "disposable": rng.random() < 0.3,
            "freeProvider": rng.random() < 0.3,
            "valid": True,
        },
        "phone": {
            "country": "US",
            "lineType": rng.choice(["MOBILE", "VOIP", None]),
            "valid": rng.random() < 0.9,
        },
        "ip": {
            "country": rng.choice(["US", "RU", None]),
            "private": rng.random() < 0.2,
            "version": rng.choice([4, 6]),
        },
        "velocity": {
            d: {
                f"{m}{w}": rng.choice([0, 1, 3, 10, 50])
                for m in ("logins", "failedAttempts", "accountOpenings", "challenges")
                for w in ("1h", "24h")
            }
            for d in ("account", "ip", "device", "email")
        },
    }


def test_projection_never_changes_the_outcome_of_the_example_set() -> None:
    doc = PolicySetDocument.model_validate(json.loads(EXAMPLE.read_text()))
    compiled = compile_set(doc, "v1")
    assert compiled.shapes  # the example reads members, not whole roots
    assert compiled.raw_shapes
    whole = compile_set(doc, "v1")
    object.__setattr__(whole, "shapes", {})  # the same set handing every fact over whole
    object.__setattr__(whole, "raw_shapes", {})
    rng = random.Random(7)
    decisions = set()
    for _ in range(400):
        facts = _random_facts(rng)
        facts["inList"] = {f"{field}|{name}": rng.random() < 0.1 for field, name in compiled.list_refs}
        # The all-CEL reference projects with the shapes of every program, `evaluate` with the raw CEL's.
        for run in (evaluate_cel, evaluate):
            a, b = run(compiled, facts), run(whole, facts)
            assert (a.decision, a.segment, a.tags, a.matched) == (b.decision, b.segment, b.tags, b.matched)
        decisions.add(a.decision)
    assert decisions == {"ALLOW", "CHALLENGE", "BLOCK"}  # the facts exercised every outcome
