from __future__ import annotations

from typing import Any

import pytest

from passgate.policy.engine import PolicyCompileError, compile_set, evaluate
from passgate.policy.schemas import PolicySetDocument, default_document
from passgate.policy.signals import request_facts


def doc(**kw: Any) -> PolicySetDocument:
    return PolicySetDocument.model_validate(kw)


def facts(custom: dict[str, Any] | None = None, seen: bool = False) -> dict[str, Any]:
    f = request_facts("LOGIN", {"inquiryId": "i", "deviceSessionId": "d", "customFields": custom or {}})
    f["device"] = {"seenForAccount": seen, "trusted": False, "banned": False}
    return f


def cond(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


THREE = doc(
    name="s",
    segments=[{"name": "default", "mfaEnabled": True, "policies": ["block", "challenge", "tag-only"]}],
    policies=[
        {
            "name": "block",
            "conditions": [cond("customFields.b", "equals", True)],
            "outcome": "BLOCK",
            "tags": [{"name": "BAD", "weight": 50}],
        },
        {
            "name": "challenge",
            "conditions": [cond("customFields.c", "equals", True)],
            "outcome": "CHALLENGE",
            "tags": [{"name": "ODD", "weight": 10}, {"name": "BAD", "weight": 5}],
        },
        {
            "name": "tag-only",
            "cel": "customFields.t == 1",
            "outcome": "NO_CHANGE",
            "tags": [{"name": "T", "weight": 1}],
        },
    ],
)


@pytest.mark.parametrize(
    ("custom", "decision"),
    [({}, "ALLOW"), ({"c": True}, "CHALLENGE"), ({"b": True}, "BLOCK"), ({"b": True, "c": True}, "BLOCK")],
)
def test_block_over_challenge_over_allow(custom: dict[str, Any], decision: str) -> None:
    assert evaluate(compile_set(THREE, "v1"), facts(custom)).decision == decision


def test_tags_and_weights_add_up_across_matched_policies() -> None:
    out = evaluate(compile_set(THREE, "v1"), facts({"b": True, "c": True, "t": 1}))
    assert out.tags == ["BAD", "ODD", "T"]
    assert out.tag_weights == [
        {"name": "BAD", "weight": 55},
        {"name": "ODD", "weight": 10},
        {"name": "T", "weight": 1},
    ]
    assert out.matched == ["block", "challenge", "tag-only"]


def test_first_matching_segment_wins_and_last_is_default() -> None:
    d = doc(
        name="s",
        segments=[
            {"name": "vip", "conditions": [cond("customFields.tier", "equals", "gold")], "policies": []},
            {"name": "default", "mfaEnabled": True, "policies": ["always"]},
        ],
        policies=[{"name": "always", "outcome": "CHALLENGE"}],
    )
    compiled = compile_set(d, "v7")
    vip = evaluate(compiled, facts({"tier": "gold"}))
    assert (vip.segment, vip.decision, vip.mfa_enabled) == ("vip", "ALLOW", False)
    other = evaluate(compiled, facts({"tier": "silver"}))
    assert (other.segment, other.decision, other.mfa_enabled) == ("default", "CHALLENGE", True)


def test_default_document_challenges_new_devices_only() -> None:
    compiled = compile_set(PolicySetDocument.model_validate(default_document("LOGIN")), "v1")
    assert evaluate(compiled, facts(seen=False)).decision == "CHALLENGE"
    assert evaluate(compiled, facts(seen=True)).decision == "ALLOW"
    assert compiled.needs("device")
    assert not compiled.needs("customFields")


@pytest.mark.parametrize(
    ("document", "location"),
    [
        ({"name": "s", "segments": [{"name": "d", "policies": ["missing"]}]}, "segments[0].policies[0]"),
        (
            {"name": "s", "segments": [{"name": "d", "conditions": [cond("channel", "equals", "x")]}]},
            "segments[0].conditions",
        ),
        (
            {
                "name": "s",
                "segments": [{"name": "d"}],
                "policies": [{"name": "p", "cel": "a +* b", "outcome": "BLOCK"}],
            },
            "policies[0].cel",
        ),
        (
            {
                "name": "s",
                "segments": [{"name": "d"}],
                "policies": [{"name": "p", "conditions": [cond("x.y", "equals", 1)], "outcome": "BLOCK"}],
            },
            "policies[0].conditions[0].field",
        ),
        (
            {
                "name": "s",
                "segments": [{"name": "d"}],
                "policies": [{"name": "p", "outcome": "BLOCK"}, {"name": "p", "outcome": "BLOCK"}],
            },
            "policies[1].name",
        ),
    ],
)
def test_compile_errors_locate_the_part(document: dict[str, Any], location: str) -> None:
    with pytest.raises(PolicyCompileError) as info:
        compile_set(doc(**document), "v1")
    assert info.value.location == location
