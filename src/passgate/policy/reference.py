"""The plain path that every shortcut of the decision engine is judged by. Nothing decides with it.

Deciding takes shortcuts: signals computed only when the set reads them, structured conditions run as
native predicates, CEL contexts holding only the members raw CEL reads, list membership through an
index. This module decides the obvious way instead, and the differential tests require both to agree on
every input they generate:

- every signal is computed, whatever the set reads (device, email, phone, IP, account age, every
  velocity counter, and every list the set names, by its field);
- every segment and policy runs as its one CEL program (its conditions' guarded CEL and its raw `cel`),
  on all the facts;
- list membership is a scan of the list's entries.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import cel
from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.policy.conditions import ConditionError, compile_condition, conjunction, normalise_operator
from passgate.policy.engine import Outcome, run
from passgate.policy.lists import normalise
from passgate.policy.models import PolicyList, PolicyListEntry
from passgate.policy.schemas import Condition, PolicySetDocument
from passgate.policy.signals import (
    SignalSources,
    account_age_days,
    device_facts,
    email_facts,
    ip_facts,
    lookup,
    phone_facts,
    request_facts,
)
from passgate.policy.velocity import DIMENSIONS, METRICS, dimension_keys

_RAW_LIST = re.compile(r'inList\["([^"|]+)\|([^"]+)"\]')
EVERY_COUNTER = frozenset((d, m) for d in DIMENSIONS for m in METRICS)
_RANK = {"NO_CHANGE": 0, "CHALLENGE": 1, "BLOCK": 2}
_DECISION = {0: "ALLOW", 1: "CHALLENGE", 2: "BLOCK"}


def list_references(doc: PolicySetDocument) -> set[tuple[str, str]]:
    """(field, list) of every list check: inList conditions, and `inList["field|list"]` in raw CEL."""
    out: set[tuple[str, str]] = set()
    parts = [(p.conditions, p.cel) for p in doc.policies] + [(s.conditions, s.cel) for s in doc.segments]
    for conditions, raw in parts:
        for c in conditions:
            try:
                if normalise_operator(c.operator) == "inList" and isinstance(c.value, str):
                    out.add((c.field, c.value))
            except ConditionError:
                continue
        out.update((field, name) for field, name in _RAW_LIST.findall(raw or ""))
    return out


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


def facts(
    session: Session,
    client_id: str,
    event_type: str,
    body: dict[str, Any],
    doc: PolicySetDocument,
    sources: SignalSources,
    now: datetime,
) -> dict[str, Any]:
    """Every fact a condition can read, each signal computed."""
    out = request_facts(event_type, body)
    out["device"] = device_facts(session, client_id, out["account"]["id"], body["deviceSessionId"])
    out["email"] = email_facts(out["person"]["emailAddress"])
    out["phone"] = phone_facts(out["person"]["phoneNumber"])
    out["ip"] = ip_facts(out["userIp"])
    out["account"]["ageDays"] = account_age_days(out["account"]["creationDateTime"], now)
    out["velocity"] = sources.velocity.counts(session, client_id, dimension_keys(body), EVERY_COUNTER, now)
    in_list: dict[str, bool] = {}
    for field, name in sorted(list_references(doc)):
        listed = session.scalars(select(PolicyList).where(PolicyList.client_id == client_id, PolicyList.name == name)).first()
        entries = (
            list(session.scalars(select(PolicyListEntry.value).where(PolicyListEntry.list_id == listed.id)))
            if listed is not None
            else []
        )
        in_list[f"{field}|{name}"] = listed is not None and contains(listed.kind, entries, lookup(out, field))
    out["inList"] = in_list
    return out


@lru_cache(maxsize=4096)
def _program(source: str) -> Any:
    return cel.compile(source)


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


def _holds(conditions: list[Condition], raw: str | None, ctx: Any) -> bool:
    parts = [compile_condition(c.field, c.operator, c.value) for c in conditions]
    if raw is not None and raw.strip():
        parts.append(raw)
    return run(_program(conjunction(parts)), ctx)


def outcome(doc: PolicySetDocument, all_facts: Any) -> Outcome:
    """The decision, each segment and policy through CEL on all the facts (a dict, or its `context`)."""
    last = len(doc.segments) - 1
    segment = next(
        s for i, s in enumerate(doc.segments) if i == last or _holds(s.conditions, s.cel, all_facts)
    )
    by_name = {p.name: p for p in doc.policies}
    matched = [by_name[n] for n in segment.policies if _holds(by_name[n].conditions, by_name[n].cel, all_facts)]
    rank = 0
    tags: dict[str, int] = {}
    for p in matched:
        rank = max(rank, _RANK[p.outcome])
        for t in p.tags:
            tags[t.name] = tags.get(t.name, 0) + t.weight
    return Outcome(
        decision=_DECISION[rank],
        segment=segment.name,
        mfa_enabled=segment.mfaEnabled,
        tags=list(tags),
        tag_weights=[{"name": k, "weight": v} for k, v in tags.items()],
        matched=[p.name for p in matched],
    )
