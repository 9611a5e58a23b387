"""The plain path that every shortcut of the decision engine is judged by. Nothing decides with it.

Deciding takes shortcuts: signals computed only when the set reads them, structured conditions run as
native predicates, CEL contexts holding only the members raw CEL reads, list membership through an
index. This module decides the obvious way instead, and the differential tests
(tests/functional/test_policy_differential.py) require both to agree on every input they generate:

- every signal is computed, whatever the set reads (`SignalPlan.everything`: the device, email, phone,
  IP, account age and every velocity counter), and every list the set names is checked for its field;
- every segment and policy runs as its one CEL program (its conditions' guarded CEL and its raw `cel`),
  on all the facts;
- list membership is a scan of the list's entries.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cel
from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.policy.conditions import (
    LIST_OPERATORS,
    ConditionError,
    compile_condition,
    conjunction,
    normalise_operator,
)
from passgate.policy.engine import Outcome, run
from passgate.policy.fields import SignalPlan, lookup
from passgate.policy.lists import normalise
from passgate.policy.models import PolicyList, PolicyListEntry
from passgate.policy.schemas import Condition, PolicySetDocument
from passgate.policy.signals import SignalSources, build_facts

_RAW_LIST = re.compile(r'inList\["([^"|]+)\|([^"]+)"\]')
_RANK = {"NO_CHANGE": 0, "CHALLENGE": 1, "BLOCK": 2}
_DECISION = {0: "ALLOW", 1: "CHALLENGE", 2: "BLOCK"}

Lists = dict[str, tuple[str, list[str]]]  # name -> (kind, entries)


def list_references(doc: PolicySetDocument) -> frozenset[tuple[str, str]]:
    """(field, list) of every list check: inList and notInList conditions, and `inList["field|list"]` in
    raw CEL."""
    out: set[tuple[str, str]] = set()
    parts = [(p.conditions, p.cel) for p in doc.policies] + [(s.conditions, s.cel) for s in doc.segments]
    for conditions, raw in parts:
        for c in conditions:
            try:
                if normalise_operator(c.operator) in LIST_OPERATORS and isinstance(c.value, str):
                    out.add((c.field, c.value))
            except ConditionError:
                continue
        out.update((field, name) for field, name in _RAW_LIST.findall(raw or ""))
    return frozenset(out)


def contains(kind: str, entries: list[str], raw: Any) -> bool:
    """Whether a value belongs to a list: its normal form is an entry, or (IP lists) lies inside one."""
    if raw is None:
        return False
    try:
        value = normalise(kind, raw)
    except ValueError:
        return False
    if kind != "ip":
        return value in entries
    net = ipaddress.ip_network(value)
    for entry in entries:
        listed = ipaddress.ip_network(entry)
        if listed.version == net.version and net.subnet_of(listed):  # type: ignore[arg-type]
            return True
    return False


def load_lists(session: Session, client_id: str, names: Iterable[str]) -> Lists:
    out: Lists = {}
    for name in sorted(set(names)):
        row = session.scalars(
            select(PolicyList).where(PolicyList.client_id == client_id, PolicyList.name == name)
        ).first()
        if row is not None:
            values = session.scalars(select(PolicyListEntry.value).where(PolicyListEntry.list_id == row.id))
            out[name] = (row.kind, list(values))
    return out


def memberships(lists: Lists, refs: Iterable[tuple[str, str]], facts: dict[str, Any]) -> dict[str, bool]:
    """`inList` as conditions read it: for each (field, list), whether the field's value is in the list (a
    list that does not exist holds nothing)."""
    out: dict[str, bool] = {}
    for field, name in refs:
        kind, entries = lists.get(name, ("", []))
        out[f"{field}|{name}"] = name in lists and contains(kind, entries, lookup(facts, field))
    return out


def signal_facts(
    session: Session,
    client_id: str,
    event_type: str,
    body: dict[str, Any],
    sources: SignalSources,
    now: datetime,
) -> dict[str, Any]:
    """The request's facts and every signal."""
    return build_facts(session, client_id, event_type, body, SignalPlan.everything(), sources, now)


def facts(
    session: Session,
    client_id: str,
    event_type: str,
    body: dict[str, Any],
    doc: PolicySetDocument,
    sources: SignalSources,
    now: datetime,
) -> dict[str, Any]:
    """Every fact a condition of `doc` can read: each signal, and each list it names checked by a scan."""
    out = signal_facts(session, client_id, event_type, body, sources, now)
    refs = list_references(doc)
    out["inList"] = memberships(load_lists(session, client_id, {n for _, n in refs}), refs, out)
    return out


def context(all_facts: dict[str, Any]) -> Any:
    """All the facts as one CEL context (converted once, read by every program of a decision). A fact that
    is no CEL value is left out: a program that reads it fails, so its condition does not hold."""
    ctx = cel.Context()
    for name, value in all_facts.items():
        try:
            ctx.add_variable(name, value)
        except ValueError:
            continue
    return ctx


@dataclass(frozen=True)
class PlainSet:
    """A set as the plain path runs it: one CEL program per segment (None: the default) and policy."""

    doc: PolicySetDocument
    segments: tuple[tuple[str, bool, Any, tuple[str, ...]], ...]  # name, mfaEnabled, program, policies
    policies: dict[str, tuple[str, tuple[tuple[str, int], ...], Any]]  # name -> outcome, tags, program
    lists: frozenset[tuple[str, str]]


def _program(conditions: list[Condition], raw: str | None) -> Any:
    parts = [compile_condition(c.field, c.operator, c.value) for c in conditions]
    if raw is not None and raw.strip():
        parts.append(raw)
    return cel.compile(conjunction(parts))


def plain_set(doc: PolicySetDocument) -> PlainSet:
    last = len(doc.segments) - 1
    return PlainSet(
        doc,
        tuple(
            (s.name, s.mfaEnabled, None if i == last else _program(s.conditions, s.cel), tuple(s.policies))
            for i, s in enumerate(doc.segments)
        ),
        {
            p.name: (p.outcome, tuple((t.name, t.weight) for t in p.tags), _program(p.conditions, p.cel))
            for p in doc.policies
        },
        list_references(doc),
    )


def outcome(plain: PlainSet, all_facts: Any) -> Outcome:
    """The decision, each segment and policy through CEL on all the facts (a dict, or its `context`)."""
    name, mfa, _, linked = next(s for s in plain.segments if s[2] is None or run(s[2], all_facts))
    matched = [n for n in linked if run(plain.policies[n][2], all_facts)]
    rank = 0
    tags: dict[str, int] = {}
    for n in matched:
        policy_outcome, policy_tags, _ = plain.policies[n]
        rank = max(rank, _RANK[policy_outcome])
        for tag, weight in policy_tags:
            tags[tag] = tags.get(tag, 0) + weight
    return Outcome(
        decision=_DECISION[rank],
        segment=name,
        mfa_enabled=mfa,
        tags=list(tags),
        tag_weights=[{"name": k, "weight": v} for k, v in tags.items()],
        matched=matched,
    )
