"""Policies in plain words: every operator of the catalogue makes a sentence, every catalogue field has a
label (never its raw path), custom and unknown fields read as words, and junk never raises."""

from __future__ import annotations

import re
from typing import Any

import pytest

from passgate.console.policy_summary import (
    change_summary,
    condition_sentence,
    document_summaries,
    field_label,
    policy_sentence,
    segment_sentence,
)
from passgate.policy.conditions import OPERATOR_ALIASES, OPERATORS
from passgate.policy.fields import FIELDS
from passgate.policy.schemas import default_document

VALUES: dict[str, Any] = {
    "equals": "x1",
    "notEquals": "x1",
    "contains": "abc",
    "startsWith": "abc",
    "endsWith": "abc",
    "in": ["US", "CA"],
    "notIn": ["US", "CA"],
    "gt": 5,
    "gte": 5,
    "lt": 5,
    "lte": 5,
    "inList": "blocked-things",
    "notInList": "blocked-things",
}
WORDING = {
    "equals": "is “x1”",
    "notEquals": "is not “x1”",
    "contains": "contains “abc”",
    "startsWith": "starts with “abc”",
    "endsWith": "ends with “abc”",
    "in": "is in [US, CA]",
    "notIn": "is not in [US, CA]",
    "gt": "is more than 5",
    "gte": "is at least 5",
    "lt": "is less than 5",
    "lte": "is at most 5",
    "inList": "is in the list “blocked-things”",
    "notInList": "is not in the list “blocked-things”",
}


def _looks_raw(path: str) -> bool:
    # A path a person would not write in a sentence: dotted, or camelCase.
    return "." in path or re.search(r"[a-z][A-Z]", path) is not None


def test_every_operator_is_worded() -> None:
    assert set(VALUES) == set(OPERATORS) == set(WORDING)


@pytest.mark.parametrize("path", sorted(FIELDS))
@pytest.mark.parametrize("op", OPERATORS)
def test_every_catalogue_field_with_every_operator_reads_as_words(path: str, op: str) -> None:
    sentence = condition_sentence({"field": path, "operator": op, "value": VALUES[op]})
    label = field_label(path)
    assert sentence.startswith(label) or sentence.startswith("whether " + label)
    assert sentence.endswith(WORDING[op])
    if _looks_raw(path):
        assert path not in sentence, sentence
    policy = policy_sentence(
        {"outcome": "BLOCK", "conditions": [{"field": path, "operator": op, "value": VALUES[op]}]}
    )
    assert policy == f"Block when {sentence}."


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_catalogue_labels_are_distinct_words(path: str) -> None:
    label = field_label(path)
    assert label != path and "." not in label and "_" not in label
    others = {field_label(p) for p in FIELDS if p != path}
    assert label not in others, f"{path} shares its label"


@pytest.mark.parametrize("alias, op", sorted(OPERATOR_ALIASES.items()))
def test_aliases_read_as_their_operator(alias: str, op: str) -> None:
    value = VALUES[op]
    assert condition_sentence(
        {"field": "ip.country", "operator": alias, "value": value}
    ) == condition_sentence({"field": "ip.country", "operator": op, "value": value})


@pytest.mark.parametrize(
    "condition, expected",
    [
        (
            {"field": "device.seenForAccount", "operator": "equals", "value": False},
            "the device is new for this account",
        ),
        (
            {"field": "device.seenForAccount", "operator": "notEquals", "value": False},
            "the device was seen for this account before",
        ),
        ({"field": "device.trusted", "operator": "==", "value": True}, "the device is trusted"),
        ({"field": "ip.private", "operator": "equals", "value": False}, "the IP address is public"),
        ({"field": "email.disposable", "operator": "!=", "value": True}, "the email is not disposable"),
        (
            {"field": "email.domain", "operator": "inList", "value": "disposable"},
            "the email's domain is in the list “disposable”",
        ),
        (
            {"field": "ip.country", "operator": "notIn", "value": ["US", "CA"]},
            "the IP's country is not in [US, CA]",
        ),
        (
            {"field": "customFields.riskTier", "operator": "equals", "value": "red"},
            "custom field riskTier is “red”",
        ),
        ({"field": "customFields.a.b", "operator": "in", "value": [1, 2]}, "custom field a.b is in [1, 2]"),
        (
            {"field": "velocity.ip.failedAttempts1h", "operator": "gt", "value": 5},
            "the number of failed attempts for the IP address in the last hour is more than 5",
        ),
        (
            {"field": "velocity.email.challenges24h", "operator": "gte", "value": 3},
            "the number of challenges for the email address in the last 24 hours is at least 3",
        ),
        (
            {"field": "account.ageDays", "operator": "lt", "value": 1.5},
            "the account's age in days is less than 1.5",
        ),
        ({"field": "person.fooBar", "operator": "equals", "value": 1}, "person foo bar is 1"),
        ({"field": "ip.country", "operator": "likes", "value": "US"}, "the IP's country likes “US”"),
        ({"field": "", "operator": "equals", "value": None}, "an unnamed field is empty"),
        (
            {"field": "device.trusted", "operator": "in", "value": [True]},
            "whether the device is trusted is in [yes]",
        ),
        (
            {"field": "ip.private", "operator": "equals", "value": "no"},
            "whether the IP address is private is “no”",
        ),
    ],
)
def test_condition_sentences(condition: dict[str, Any], expected: str) -> None:
    assert condition_sentence(condition) == expected


def test_policy_sentences() -> None:
    assert policy_sentence(default_document("LOGIN")["policies"][0]) == (
        "Challenge when the device is new for this account; tag NEW_DEVICE."
    )
    assert policy_sentence(
        {
            "outcome": "CHALLENGE",
            "conditions": [
                {"field": "device.seenForAccount", "operator": "equals", "value": False},
                {"field": "ip.country", "operator": "notIn", "value": ["US", "CA"]},
                {"field": "email.freeProvider", "operator": "equals", "value": True},
            ],
            "cel": " userIp == '1.2.3.4' ",
        }
    ) == (
        "Challenge when the device is new for this account, the IP's country is not in [US, CA], the email is"
        " from a free provider and the CEL expression “userIp == '1.2.3.4'” is true."
    )
    assert policy_sentence({"outcome": "BLOCK"}) == "Block for every request."
    assert policy_sentence({"outcome": "NO_CHANGE", "tags": [{"name": "A"}, {"name": "B"}]}) == (
        "Leave the decision as it is for every request; tag A, B."
    )


def test_segment_sentences() -> None:
    seg = {
        "name": "eu",
        "conditions": [{"field": "ip.country", "operator": "in", "value": ["DE", "FR"]}],
        "policies": ["a", "b"],
        "mfaEnabled": True,
    }
    assert (
        segment_sentence(seg)
        == "Applies when the IP's country is in [DE, FR]; runs a, b; a challenge starts MFA."
    )
    assert segment_sentence(seg, default=True) == (
        "Applies to every request that no segment above takes; runs a, b; a challenge starts MFA."
    )
    assert (
        segment_sentence({"name": "x"}) == "Applies to every request (it has no conditions); runs no policy."
    )


@pytest.mark.parametrize(
    "junk",
    [
        None,
        3,
        "text",
        [],
        {},
        {"segments": "x"},
        {"segments": [None, 3]},
        {"policies": [{"conditions": [None, {"field": 3}]}]},
        {
            "policies": [
                {"outcome": ["BLOCK"], "tags": {"a": 1}},
                {"segments": [{"policies": "x", "conditions": [{"operator": ["in"]}]}]},
            ]
        },
        {
            "segments": [
                {
                    "name": ["n"],
                    "policies": "x",
                    "conditions": [{"operator": "equals", "field": ["x"], "value": {}}],
                }
            ]
        },
        {"policies": [{"outcome": 5, "tags": ["x", {"name": 3}], "conditions": "no", "cel": 4}]},
    ],
)
def test_junk_never_raises(junk: Any) -> None:
    out = document_summaries(junk)
    assert all(isinstance(s, str) and s for s in out["segments"] + out["policies"])
    assert isinstance(change_summary(junk, default_document("LOGIN")), list)
    assert isinstance(change_summary(default_document("LOGIN"), junk), list)


def test_change_summary_names_every_change() -> None:
    a = default_document("LOGIN")
    b = default_document("LOGIN")
    assert change_summary(a, b) == []
    b["policies"].append(
        {
            "name": "block-disposable",
            "outcome": "BLOCK",
            "conditions": [{"field": "email.domain", "operator": "inList", "value": "disposable"}],
        }
    )
    b["segments"][0]["policies"].append("block-disposable")
    got = {(c["kind"], c["name"], c["change"]): c for c in change_summary(a, b)}
    assert set(got) == {("segment", "default", "changed"), ("policy", "block-disposable", "added")}
    assert got[("policy", "block-disposable", "added")]["after"] == (
        "Block when the email's domain is in the list “disposable”."
    )
    assert "runs new-device, block-disposable" in got[("segment", "default", "changed")]["after"]
    # A value that Python calls equal (1 == True) but JSON does not is a change.
    c = default_document("LOGIN")
    c["policies"][0]["conditions"][0]["value"] = 0
    assert [x["change"] for x in change_summary(a, c)] == ["changed"]
    # Removed, and a segment that moved (order routes requests).
    d = default_document("LOGIN")
    d["segments"].insert(0, {"name": "first", "conditions": [], "policies": []})
    e = {**d, "segments": [d["segments"][1], d["segments"][0]], "policies": []}
    kinds = {(x["kind"], x["name"], x["change"]) for x in change_summary(d, e)}
    assert ("policy", "new-device", "removed") in kinds
    assert ("segment", "first", "moved") in kinds
