"""The decision engine against its plain path (passgate.policy.reference), on a real database.

The production path is what a live decision and a simulation run: `build_facts` (signals computed only
when the set reads them, list indexes, the velocity counters the set names) and `evaluate` (native
predicates, raw CEL on projected contexts). The reference computes every signal, scans lists and runs
every segment and policy through CEL on all the facts. Any shortcut, present or future, must give the
same segment, decision, tags and matched policies.

1. Every field of the catalogue x every operator x literals of every type x request bodies that put
   absent, null, edge and ordinary values in the field's place, each as a one-condition policy set.
2. Seeded random bodies against random sets of one to three conditions, structured or raw CEL, in a
   policy or in a segment (the seed is printed on failure; PASSGATE_DIFF_SEED replays one).
3. Through HTTP: simulate and a live /login/v2 or /newaccountopening/v2 give the same decision and tags
   for the same body, and the reference agrees with both.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from passgate.api.schemas_decisions import AccountOpeningRequest, LoginRequest
from passgate.auth.services import create_client
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.policy import reference
from passgate.policy import lists as list_svc
from passgate.policy.conditions import FIELDS, OPERATORS, ConditionError, compile_condition
from passgate.policy.engine import CompiledSet, Outcome, PolicyCompileError, compile_set, evaluate
from passgate.policy.models import Device
from passgate.policy.schemas import PolicySetDocument
from passgate.policy.signals import build_facts, lookup
from tests.factories import Tenant

ABSENT = object()
CUSTOM = "customFields.x"
CATALOGUE = sorted(FIELDS) + [CUSTOM]

LISTS: dict[str, tuple[str, list[str]]] = {
    "emails": ("email", ["jo@mailinator.com", "busy@example.com"]),
    "domains": ("emailDomain", ["mailinator.com", "bücher.de"]),
    "phones": ("phone", ["+447400123456", "+33612345678"]),
    "ips": ("ip", ["8.8.8.0/24", "10.0.0.0/8", "2001:db8::/32", "81.2.69.160", "fd00::1"]),
    # A list of plain text that holds values many text fields take.
    "words": ("deviceId", ["dev-seen", "WEB", "US", "GB", "DE", "MOBILE", "mailinator.com", "gmail.com"]),
    "accounts": ("accountId", ["acct-seen", "acct-busy", "jo", "PRO"]),
}

TEXTS: list[Any] = ["", "WEB", "web", "APP", "US", "acct-seen", "dev-seen", "é日本", "a" * 64, "12", " 7", 5, True]
EMAILS: list[Any] = [
    ABSENT,
    None,
    "jo@mailinator.com",
    "JO@Mailinator.COM",
    "x@sub.mailinator.com",
    "x@gmail.com",
    "busy@example.com",
    "a@acme-corp.example",
    "ü@bücher.de",
    "not-an-address",
]
PHONES: list[Any] = [ABSENT, None, "+447400123456", "+12015550123", "+15551234567", "+19005550123"]
PHONES += ["+33612345678", "+12", "+999999999999999", "447400123456"]
IPS: list[Any] = [ABSENT, None, "8.8.8.8", "8.8.4.4", "81.2.69.160", "10.1.2.3", "127.0.0.1", "0.0.0.0"]
IPS += ["2a00:1450:4001:800::200e", "2001:db8::5", "fd00::1", "::ffff:8.8.8.8", "255.255.255.255", "nope"]
CREATED: list[Any] = [ABSENT, None, "2020-01-01T00:00:00Z", "2024-02-29T12:00:00+05:00", "2024-01-01T00:00:00"]
CREATED += ["yesterday", 1700000000]
CUSTOM_VALUES: list[Any] = [ABSENT, None, "", "red", "12", "1e3", "US", "mailinator.com", "10.1.2.3", 0, -1, 7]
CUSTOM_VALUES += ["10.1.2.0/24", 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 0.5, -0.0, 7.0, 1e308, True, False, [1], {}]


def _put(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the body with `value` at the dotted path (ABSENT: the key removed)."""
    out = json.loads(json.dumps(body))
    parts = path.split(".")
    node = out
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if value is ABSENT:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return out


MINIMAL: dict[str, Any] = {"inquiryId": "inq1", "deviceSessionId": "dev-new"}
FULL: dict[str, Any] = {
    "inquiryId": "inq2",
    "channel": "WEB",
    "deviceSessionId": "dev-seen",
    "userIp": "8.8.8.8",
    "loginUrl": "https://shop.example.com/login",
    "accountCreationUrl": "https://shop.example.com/signup",
    "preferredLanguageCode": "en-GB",
    "person": {
        "name": {"first": "Jo", "last": "Doe", "preferred": "J"},
        "emailAddress": "jo@mailinator.com",
        "phoneNumber": "+447400123456",
    },
    "account": {
        "id": "acct-seen",
        "username": "jo",
        "type": "PRO",
        "accountIsActive": True,
        "creationDateTime": "2024-02-29T12:00:00+05:00",
    },
    "customFields": {"x": "red", "other": 1},
}

# Which request values feed a derived field: the field's place in the body and the values to put there.
_SOURCES: dict[str, tuple[str, list[Any]]] = {
    "email": ("person.emailAddress", EMAILS),
    "phone": ("person.phoneNumber", PHONES),
    "ip": ("userIp", IPS),
    "account.ageDays": ("account.creationDateTime", CREATED),
}


def _device_variants() -> list[Callable[[dict[str, Any]], dict[str, Any]]]:
    def with_account(account: Any, device: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def edit(body: dict[str, Any]) -> dict[str, Any]:
            out = _put(body, "account", account if account is ABSENT else {"id": account, "username": "u"})
            return _put(out, "deviceSessionId", device)

        return edit

    pairs = [(ABSENT, "dev-seen"), ("acct-seen", "dev-seen"), ("acct-seen", "dev-new"), ("acct-seen", "dev-t")]
    pairs += [("acct-seen", "dev-b"), ("acct-new", "dev-seen")]
    return [with_account(a, d) for a, d in pairs]


def _velocity_variants() -> list[Callable[[dict[str, Any]], dict[str, Any]]]:
    edits: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
    for account in (ABSENT, "acct-busy", "acct-quiet"):
        for ip, device, email in (("8.8.8.8", "dev-busy", "busy@example.com"), (ABSENT, "dev-new", ABSENT)):

            def edit(body: dict[str, Any], a: Any = account, i: Any = ip, d: Any = device, e: Any = email) -> dict[str, Any]:
                out = _put(body, "account", a if a is ABSENT else {"id": a, "username": "u"})
                out = _put(out, "userIp", i)
                out = _put(out, "deviceSessionId", d)
                return _put(out, "person.emailAddress", e)

            edits.append(edit)
    return edits


def _slot(path: str, values: list[Any]) -> list[Callable[[dict[str, Any]], dict[str, Any]]]:
    return [lambda body, v=v: _put(body, path, v) for v in values]


def variants(path: str) -> list[Callable[[dict[str, Any]], dict[str, Any]]]:
    """Edits of a body that put the pool of values in the place the field is read from."""
    root = path.split(".")[0]
    if path == CUSTOM:
        return _slot("customFields.x", CUSTOM_VALUES) + [lambda b: _put(b, "customFields", ABSENT)]
    if root == "device":
        return _device_variants()
    if root == "velocity":
        return _velocity_variants()
    if path in _SOURCES or root in _SOURCES:
        place, values = _SOURCES.get(path) or _SOURCES[root]
        return _slot(place, values)
    if path == "eventType":
        return [lambda b: b]
    if path == "userIp":
        return _slot(path, IPS)
    if path == "person.emailAddress":
        return _slot(path, EMAILS)
    if path == "person.phoneNumber":
        return _slot(path, PHONES)
    if path == "account.creationDateTime":
        return _slot(path, CREATED)
    if path == "account.accountIsActive":
        return _slot(path, [ABSENT, None, True, False, "yes"])
    if path.startswith("person.name."):
        return _slot(path, [ABSENT, None, *TEXTS]) + [lambda b: _put(b, "person.name", None)]
    if path.startswith("account."):
        return _slot(path, [ABSENT, None, *TEXTS]) + [lambda b: _put(b, "account", ABSENT)]
    return _slot(path, [ABSENT, None, *TEXTS])


MODELS = {"LOGIN": LoginRequest, "NEW_ACCOUNT_OPENING": AccountOpeningRequest}


def validated(event_type: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The body as the API hands it on, or None where the API would refuse it (400)."""
    try:
        return MODELS[event_type].model_validate(body).model_dump(mode="json", exclude_none=True)
    except (ValueError, TypeError):
        return None


def bodies_for(path: str) -> list[tuple[str, dict[str, Any]]]:
    events = ["LOGIN", "NEW_ACCOUNT_OPENING"] if path in ("eventType", "loginUrl", "accountCreationUrl") else ["LOGIN"]
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for event_type in events:
        for base in (MINIMAL, FULL):
            for edit in variants(path):
                body = validated(event_type, edit(base))
                key = event_type + json.dumps(body, sort_keys=True)
                if body is not None and key not in seen:
                    seen.add(key)
                    out.append((event_type, body))
    return out


# --- The world the bodies meet: lists, devices and counters -------------------------------------------


@dataclass
class World:
    registry: Registry
    client_id: str
    now: datetime
    reference_cache: dict[tuple[str, str, frozenset[tuple[str, str]]], Any] = field(default_factory=dict)


@pytest.fixture
def world(registry: Registry) -> World:
    now = registry.clock.now()
    store = registry.signals.velocity
    with transaction(registry.sessions) as session:
        client_id = create_client(session, "Differential", "US", False, now).id
        for name, (kind, entries) in LISTS.items():
            row = list_svc.create_list(session, client_id, name, kind, None, now)
            report = list_svc.add_entries(session, row, list(enumerate(entries)), now)
            assert not report.rejected, report.rejected
        for account, device, seen, trust in (
            ("acct-seen", "dev-seen", True, None),
            ("acct-seen", "dev-t", False, "TRUSTED"),
            ("acct-seen", "dev-b", True, "BANNED"),
        ):
            session.add(
                Device(
                    client_id=client_id,
                    account_id=account,
                    device_session_id=device,
                    seen=seen,
                    trust_state=trust,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
        busy = {"account": "acct-busy", "ip": "8.8.8.8", "device": "dev-busy", "email": "busy@example.com"}
        for minutes_ago, metrics in ((5, ["logins", "challenges"]), (7, ["logins", "failedAttempts"])):
            store.record(session, client_id, metrics, busy, now - timedelta(minutes=minutes_ago))
        for _ in range(3):
            store.record(session, client_id, ["accountOpenings", "logins"], busy, now - timedelta(hours=3))
        store.record(session, client_id, ["logins"], {"account": "acct-quiet"}, now - timedelta(hours=5))
    return World(registry, client_id, now)


def one_condition_set(path: str, op: str, value: Any, *, raw: bool = False, in_segment: bool = False) -> dict[str, Any]:
    condition = {"field": path, "operator": op, "value": value}
    holder: dict[str, Any] = {"cel": compile_condition(path, op, value)} if raw else {"conditions": [condition]}
    if in_segment:
        return {
            "name": "one",
            "segments": [
                {"name": "routed", "policies": ["always"], **holder},
                {"name": "default", "mfaEnabled": True, "policies": []},
            ],
            "policies": [{"name": "always", "outcome": "BLOCK", "tags": [{"name": "ROUTED", "weight": 1}]}],
        }
    return {
        "name": "one",
        "segments": [{"name": "default", "mfaEnabled": True, "policies": ["hit"]}],
        "policies": [{"name": "hit", "outcome": "BLOCK", "tags": [{"name": "HIT", "weight": 7}], **holder}],
    }


def production(session: Session, w: World, compiled: CompiledSet, event_type: str, body: dict[str, Any]) -> Outcome:
    facts = build_facts(session, w.client_id, event_type, body, compiled, w.registry.signals, w.now)
    return evaluate(compiled, facts)


def plain(session: Session, w: World, doc: PolicySetDocument, event_type: str, body: dict[str, Any]) -> Outcome:
    refs = frozenset(reference.list_references(doc))
    key = (event_type, json.dumps(body, sort_keys=True), refs)
    facts = w.reference_cache.get(key)
    if facts is None:
        facts = reference.context(
            reference.facts(session, w.client_id, event_type, body, doc, w.registry.signals, w.now)
        )
        w.reference_cache[key] = facts
    return reference.outcome(doc, facts)


def summary(o: Outcome) -> tuple[Any, ...]:
    return (o.segment, o.decision, o.mfa_enabled, o.tags, o.tag_weights, o.matched)


def compiled_or_none(document: dict[str, Any]) -> tuple[PolicySetDocument, CompiledSet] | None:
    """The compiled set, or None when the set is refused; the reference must refuse it too."""
    doc = PolicySetDocument.model_validate(document)
    try:
        compiled = compile_set(doc, "v1")
    except PolicyCompileError:
        for p in doc.policies + doc.segments:  # type: ignore[operator]
            for c in p.conditions:
                with pytest.raises(ConditionError):
                    compile_condition(c.field, c.operator, c.value)
        return None
    return doc, compiled


# --- Literals: what conditions compare with ---------------------------------------------------------


def _observed(session: Session, w: World, path: str, bodies: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The distinct values the field takes over the bodies (as the reference computes them)."""
    empty = PolicySetDocument.model_validate(one_condition_set("channel", "equals", "x"))
    seen: dict[str, Any] = {}
    for event_type, body in bodies:
        facts = reference.facts(session, w.client_id, event_type, body, empty, w.registry.signals, w.now)
        value = lookup(facts, path)
        if isinstance(value, str | int | float | bool) and not isinstance(value, dict):
            seen.setdefault(json.dumps(value), value)
    return list(seen.values())


EDGE_BY_TYPE: dict[str, list[Any]] = {
    "string": ["", "US", "zz", 5, True, 0.5],
    "number": [0, -1, 1, 4, 0.5, 1e308, 2**63 - 1, "12", True],
    "boolean": [True, False, 1, "true"],
    "any": ["", "red", "12", 0, 7, 7.0, 2**63 - 1, 0.5, True, False],
}


def literals(path: str, op: str, observed: list[Any], rng: random.Random) -> list[Any]:
    ftype = FIELDS.get(path, "any")
    scalars = observed[:6] + EDGE_BY_TYPE[ftype]
    if op == "inList":
        return sorted(LISTS)
    if op in ("in", "notIn"):
        pools = [[v] for v in scalars[:4]]
        pools.append(list(scalars[:3]) or ["x"])
        pools.append([rng.choice(scalars), "x", 1])
        return pools
    if op in ("contains", "startsWith", "endsWith"):
        texts = [v for v in observed if isinstance(v, str)]
        out: list[Any] = ["", "zz", 5]
        for t in texts[:4]:
            out += [t[:2], t[-3:]]
        return out
    return scalars


# --- 1. The catalogue ---------------------------------------------------------------------------------


def test_every_field_and_operator_agrees_with_the_plain_path(world: World) -> None:
    rng = random.Random(16)
    covered: dict[str, set[str]] = {path: set() for path in CATALOGUE}
    held: dict[str, set[bool]] = {path: set() for path in CATALOGUE}
    cases = 0
    with world.registry.sessions() as session:
        for path in CATALOGUE:
            bodies = bodies_for(path)
            assert len(bodies) >= 2, path
            observed = _observed(session, world, path, bodies)
            for op in OPERATORS:
                for value in literals(path, op, observed, rng):
                    built = compiled_or_none(one_condition_set(path, op, value))
                    if built is None:
                        continue
                    doc, compiled = built
                    covered[path].add(op)
                    for event_type, body in bodies:
                        expected = plain(session, world, doc, event_type, body)
                        got = production(session, world, compiled, event_type, body)
                        assert summary(got) == summary(expected), (path, op, value, event_type, body)
                        held[path].add(expected.decision == "BLOCK")
                        cases += 1
        session.rollback()
    applicable = {"string": len(OPERATORS), "number": len(OPERATORS) - 3, "boolean": 5, "any": len(OPERATORS)}
    for path in CATALOGUE:
        assert len(covered[path]) == applicable[FIELDS.get(path, "any")], (path, sorted(covered[path]))
        assert held[path] == {True, False}, f"{path}: the pool never made a condition on it both hold and fail"
    assert cases > 20_000
