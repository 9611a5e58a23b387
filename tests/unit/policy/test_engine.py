from __future__ import annotations

from typing import Any

import pytest

from passgate.policy.engine import PolicyCompileError, compile_set, evaluate, explain, not_evaluated
from passgate.policy.fields import FIELDS, METRICS, SIGNAL_FIELDS, VELOCITY_FIELDS, SignalPlan
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


SEGMENTED = doc(
    name="s",
    segments=[
        {"name": "vip", "conditions": [cond("customFields.tier", "equals", "gold")], "policies": ["a"]},
        {"name": "mid", "cel": "customFields.tier == 'silver'", "policies": ["b", "a"]},
        {"name": "default", "policies": ["c"]},
    ],
    policies=[
        {"name": "a", "outcome": "BLOCK", "tags": [{"name": "A", "weight": 3}]},
        {"name": "b", "outcome": "CHALLENGE", "conditions": [cond("customFields.x", "equals", 1)]},
        {"name": "c", "outcome": "NO_CHANGE"},
        {"name": "orphan", "outcome": "BLOCK", "cel": "true"},
    ],
)


@pytest.mark.parametrize(("tier", "chosen"), [("gold", "vip"), ("silver", "mid"), ("bronze", "default")])
def test_explained_and_not_evaluated_cover_the_set_once(tier: str, chosen: str) -> None:
    compiled = compile_set(SEGMENTED, "v1")
    shown = explain(compiled, facts({"tier": tier}))
    rest = not_evaluated(compiled, shown["userSegment"])
    assert shown["userSegment"] == chosen
    segments = [s["name"] for s in shown["segments"]] + [s["name"] for s in rest["segments"]]
    assert segments == ["vip", "mid", "default"]  # in the set's order, each once
    policies = sorted([p["name"] for p in shown["policies"]] + [p["name"] for p in rest["policies"]])
    assert policies == ["a", "b", "c", "orphan"]
    assert all("actual" not in c for p in rest["policies"] for c in p["conditions"])
    by_name = {p["name"]: p for p in rest["policies"]}
    assert by_name["orphan"]["segments"] == [] and by_name["orphan"]["cel"] == "true"
    if "a" in by_name:
        assert by_name["a"]["segments"] == ["vip", "mid"] and by_name["a"]["tags"] == [
            {"name": "A", "weight": 3}
        ]
    assert [s["default"] for s in rest["segments"]] == [s["name"] == "default" for s in rest["segments"]]


def test_default_document_challenges_new_devices_only() -> None:
    compiled = compile_set(PolicySetDocument.model_validate(default_document("LOGIN")), "v1")
    assert evaluate(compiled, facts(seen=False)).decision == "CHALLENGE"
    assert evaluate(compiled, facts(seen=True)).decision == "ALLOW"
    # The device is all it reads, so it is all a decision computes.
    assert compiled.signals == SignalPlan(device=True)
    assert compiled.reads == {"device.seenForAccount"}


def plan_of(**kw: Any) -> SignalPlan:
    base = {"name": "s", "segments": [{"name": "d", "policies": ["p"]}]}
    return compile_set(doc(**base, policies=[{"name": "p", "outcome": "BLOCK", **kw}]), "v1").signals


@pytest.mark.parametrize(
    ("policy", "plan"),
    [
        # A list check reads its field: the signal behind it is computed although its CEL reads `inList`.
        (
            {"conditions": [cond("email.domain", "inList", "disposable")]},
            SignalPlan(email=True, lists=(("email.domain", "disposable"),)),
        ),
        ({"cel": 'inList["phone.country|c"]'}, SignalPlan(phone=True, lists=(("phone.country", "c"),))),
        ({"conditions": [cond("ip.country", "notEquals", "US")]}, SignalPlan(ip=True)),
        ({"cel": 'email.domain.endsWith(".ru")'}, SignalPlan(email=True)),
        ({"cel": "size(account) > 3"}, SignalPlan(account_age=True)),
        ({"conditions": [cond("account.ageDays", "lt", 2)]}, SignalPlan(account_age=True)),
        ({"conditions": [cond("account.type", "equals", "PRO")]}, SignalPlan()),
        ({"conditions": [cond("customFields.ip", "equals", "x")], "cel": "customFields.email"}, SignalPlan()),
        (
            {"cel": 'velocity.ip["logins1h"] > 3'},
            SignalPlan(velocity=frozenset(("ip", m) for m in METRICS)),
        ),
        (
            {"conditions": [cond("velocity.email.challenges24h", "gt", 1)]},
            SignalPlan(velocity=frozenset({("email", "challenges")})),
        ),
        ({"cel": "device == null || email == null"}, SignalPlan(device=True, email=True)),
    ],
)
def test_a_set_computes_the_signals_it_reads(policy: dict[str, Any], plan: SignalPlan) -> None:
    assert plan_of(**policy) == plan


def test_every_derived_field_of_the_catalogue_has_its_signal() -> None:
    """A condition on any field the request does not carry itself computes a signal, list checks too."""
    request = request_facts("LOGIN", {"inquiryId": "i", "deviceSessionId": "d"})
    derived = [p for p in FIELDS if p == "account.ageDays" or p.split(".")[0] not in request]
    assert len(derived) == len(SIGNAL_FIELDS) + len(VELOCITY_FIELDS) + 3  # and device.*
    for path in derived:
        value = {"string": "x", "number": 1, "boolean": True}[FIELDS[path]]
        assert plan_of(conditions=[cond(path, "equals", value)]) != SignalPlan(), path
        assert plan_of(conditions=[cond(path, "inList", "l")]) != SignalPlan(lists=((path, "l"),)), path


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
