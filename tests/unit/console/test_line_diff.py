"""The line diff of two documents, checked against difflib's own unified diff and by applying its hunks:
on many generated pairs of documents, the hunks turn the first into the second."""

from __future__ import annotations

import copy
import difflib
import random
from typing import Any

import pytest

from passgate.console.line_diff import CONTEXT_LINES, canonical_lines, line_diff, unified
from passgate.policy.schemas import default_document


def _apply(old: list[str], hunks: Any) -> list[str]:
    out: list[str] = []
    at = 0  # lines of `old` used so far
    for h in hunks:
        out += old[at : h.old_start - 1]
        at = h.old_start - 1
        for line in h.lines:
            if line.kind == "added":
                out.append(line.text)
                continue
            assert old[at] == line.text and line.old == at + 1
            if line.kind == "context":
                out.append(line.text)
            at += 1
    return out + old[at:]


def _mutate(doc: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(rnd.randint(0, 4)):
        pick = rnd.randrange(6)
        if pick == 0:
            doc["policies"].append(
                {
                    "name": f"p{rnd.randrange(99)}",
                    "outcome": rnd.choice(["BLOCK", "CHALLENGE"]),
                    "conditions": [
                        {
                            "field": "ip.country",
                            "operator": "in",
                            "value": rnd.sample(["US", "CA", "DE", "FR"], 2),
                        }
                    ],
                }
            )
        elif pick == 1 and doc["policies"]:
            doc["policies"].pop(rnd.randrange(len(doc["policies"])))
        elif pick == 2:
            doc["segments"][-1]["policies"] = rnd.sample(
                [p["name"] for p in doc["policies"]], k=min(2, len(doc["policies"]))
            )
        elif pick == 3:
            doc["segments"].insert(
                0,
                {
                    "name": f"s{rnd.randrange(99)}",
                    "conditions": [],
                    "policies": [],
                    "mfaEnabled": rnd.random() < 0.5,
                },
            )
        elif pick == 4:
            doc["name"] = rnd.choice(["login", "login-2", "a very long name " * 8])
        elif doc["policies"]:
            doc["policies"][0]["description"] = "x" * rnd.randrange(300)
    return doc


@pytest.mark.parametrize("seed", range(60))
def test_hunks_turn_the_first_document_into_the_second(seed: int) -> None:
    rnd = random.Random(seed)
    a = _mutate(default_document("LOGIN"), rnd)
    b = _mutate(a, rnd)
    hunks = line_diff(a, b)
    old, new = canonical_lines(a), canonical_lines(b)
    assert _apply(old, hunks) == new
    assert (not hunks) == (old == new)
    # The same lines as difflib's unified diff, hunk for hunk.
    expected = [
        line
        for line in difflib.unified_diff(old, new, n=CONTEXT_LINES, lineterm="")
        if not line.startswith(("---", "+++"))
    ]
    mine: list[str] = []
    for h in hunks:
        mine.append("@@")
        mine += [{"context": " ", "added": "+", "removed": "-"}[x.kind] + x.text for x in h.lines]
    assert [x if not x.startswith("@@") else "@@" for x in expected] == mine
    assert unified(a, b).splitlines()[2:] == expected or not hunks


def test_a_changed_link_shows_as_lines() -> None:
    a = default_document("LOGIN")
    b = copy.deepcopy(a)
    b["segments"][0]["policies"] = []
    hunks = line_diff(a, b)
    removed = [x.text.strip() for h in hunks for x in h.lines if x.kind == "removed"]
    added = [x.text.strip() for h in hunks for x in h.lines if x.kind == "added"]
    assert '"new-device"' in removed
    assert '"policies": []' in added
    assert all(x.marker in "+− " for h in hunks for x in h.lines)


def test_keys_are_sorted_so_key_order_is_no_change() -> None:
    a = {"b": 1, "a": [1, 2]}
    b = {"a": [1, 2], "b": 1}
    assert line_diff(a, b) == []
    assert line_diff({"v": 1}, {"v": True}) != []
