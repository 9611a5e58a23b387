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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from passgate.auth.services import create_client
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.policy import lists as list_svc
from passgate.policy import reference
from passgate.policy.conditions import OPERATORS, ConditionError, compile_condition
from passgate.policy.engine import CompiledSet, Outcome, PolicyCompileError, compile_set, evaluate
from passgate.policy.fields import FIELDS, lookup
from passgate.policy.models import Device
from passgate.policy.requests import AccountOpeningRequest, LoginRequest
from passgate.policy.schemas import PolicySetDocument
from passgate.policy.signals import build_facts
from tests.factories import Tenant

ABSENT = object()
CUSTOM = "customFields.x"
CATALOGUE = sorted(FIELDS) + [CUSTOM]

LISTS: dict[str, tuple[str, list[str]]] = {
    "emails": ("email", ["jo@mailinator.com", "busy@example.com"]),
    "domains": ("emailDomain", ["mailinator.com", "bücher.de"]),
    "phones": ("phone", ["+447400123456", "+33612345678"]),
    "countries": ("country", ["GB", "de"]),
    "ips": ("ip", ["8.8.8.0/24", "10.0.0.0/8", "2001:db8::/32", "81.2.69.160", "fd00::1"]),
    # A list of plain text that holds values many text fields take.
    "words": ("deviceId", ["dev-seen", "WEB", "US", "GB", "DE", "MOBILE", "mailinator.com", "gmail.com"]),
    "accounts": ("accountId", ["acct-seen", "acct-busy", "jo", "PRO"]),
}

TEXTS: list[Any] = [
    "",
    "WEB",
    "web",
    "APP",
    "US",
    "acct-seen",
    "dev-seen",
    "é日本",
    "a" * 64,
    "12",
    " 7",
    5,
    True,
]
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
CREATED: list[Any] = [
    ABSENT,
    None,
    "2020-01-01T00:00:00Z",
    "2024-02-29T12:00:00+05:00",
    "2024-01-01T00:00:00",
]
CREATED += ["yesterday", 1700000000]
CUSTOM_VALUES: list[Any] = [
    ABSENT,
    None,
    "",
    "red",
    "12",
    "1e3",
    "US",
    "mailinator.com",
    "10.1.2.3",
    0,
    -1,
    7,
]
CUSTOM_VALUES += [
    "10.1.2.0/24",
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    0.5,
    -0.0,
    7.0,
    1e308,
    True,
    False,
    [1],
    {},
]


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`value` put at the dotted path of the body, in place (ABSENT: the key removed)."""
    parts = path.split(".")
    node = body
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if value is ABSENT:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return body


def _put(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the body with `value` at the dotted path."""
    return _set(json.loads(json.dumps(body)), path, value)


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

    pairs = [
        (ABSENT, "dev-seen"),
        ("acct-seen", "dev-seen"),
        ("acct-seen", "dev-new"),
        ("acct-seen", "dev-t"),
    ]
    pairs += [("acct-seen", "dev-b"), ("acct-new", "dev-seen")]
    return [with_account(a, d) for a, d in pairs]


def _velocity_variants() -> list[Callable[[dict[str, Any]], dict[str, Any]]]:
    edits: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
    for account in (ABSENT, "acct-busy", "acct-quiet"):
        for ip, device, email in (("8.8.8.8", "dev-busy", "busy@example.com"), (ABSENT, "dev-new", ABSENT)):

            def edit(
                body: dict[str, Any], a: Any = account, i: Any = ip, d: Any = device, e: Any = email
            ) -> dict[str, Any]:
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


def bodies_for(path: str) -> list[tuple[str, dict[str, Any], str]]:
    """(event type, body, a key naming the body) of every distinct body the API accepts."""
    events = (
        ["LOGIN", "NEW_ACCOUNT_OPENING"]
        if path in ("eventType", "loginUrl", "accountCreationUrl")
        else ["LOGIN"]
    )
    out: list[tuple[str, dict[str, Any], str]] = []
    seen: set[str] = set()
    for event_type in events:
        for base in (MINIMAL, FULL):
            for edit in variants(path):
                body = validated(event_type, edit(base))
                key = json.dumps(body, sort_keys=True)
                if body is not None and event_type + key not in seen:
                    seen.add(event_type + key)
                    out.append((event_type, body, key))
    return out


# --- The world the bodies meet: lists, devices and counters -------------------------------------------


@dataclass
class World:
    registry: Registry
    client_id: str
    now: datetime
    lists: reference.Lists = field(default_factory=dict)
    # The plain path's facts depend on the body and the lists a set names, not on the rest of the set.
    signal_facts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    contexts: dict[tuple[str, str, frozenset[tuple[str, str]]], Any] = field(default_factory=dict)


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
    with registry.sessions() as session:
        lists = reference.load_lists(session, client_id, LISTS)
    return World(registry, client_id, now, lists)


def one_condition_set(
    path: str, op: str, value: Any, *, raw: bool = False, in_segment: bool = False
) -> dict[str, Any]:
    condition = {"field": path, "operator": op, "value": value}
    holder: dict[str, Any] = (
        {"cel": compile_condition(path, op, value)} if raw else {"conditions": [condition]}
    )
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


def production(
    session: Session, w: World, compiled: CompiledSet, event_type: str, body: dict[str, Any]
) -> Outcome:
    facts = build_facts(session, w.client_id, event_type, body, compiled.signals, w.registry.signals, w.now)
    return evaluate(compiled, facts)


def plain(
    session: Session, w: World, plain_set: reference.PlainSet, event_type: str, body: dict[str, Any], key: str
) -> Outcome:
    facts = w.signal_facts.get((event_type, key))
    if facts is None:
        facts = reference.signal_facts(session, w.client_id, event_type, body, w.registry.signals, w.now)
        w.signal_facts[(event_type, key)] = facts
    ctx = w.contexts.get((event_type, key, plain_set.lists))
    if ctx is None:
        ctx = reference.context({**facts, "inList": reference.memberships(w.lists, plain_set.lists, facts)})
        w.contexts[(event_type, key, plain_set.lists)] = ctx
    return reference.outcome(plain_set, ctx)


def summary(o: Outcome) -> tuple[Any, ...]:
    return (o.segment, o.decision, o.mfa_enabled, o.tags, o.tag_weights, o.matched)


def compiled_or_none(document: dict[str, Any]) -> tuple[reference.PlainSet, CompiledSet] | None:
    """The set as both paths run it, or None when it is refused (by both)."""
    doc = PolicySetDocument.model_validate(document)
    try:
        compiled = compile_set(doc, "v1")
    except PolicyCompileError:
        with pytest.raises((ConditionError, ValueError, RuntimeError)):
            reference.plain_set(doc)
        return None
    return reference.plain_set(doc), compiled


# --- Literals: what conditions compare with ---------------------------------------------------------


def _observed(
    session: Session, w: World, path: str, bodies: list[tuple[str, dict[str, Any], str]]
) -> list[Any]:
    """The distinct values the field takes over the bodies (as the reference computes them)."""
    seen: dict[str, Any] = {}
    for event_type, body, _ in bodies:
        facts = reference.signal_facts(session, w.client_id, event_type, body, w.registry.signals, w.now)
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


MAX_LITERALS = 6


def literals(path: str, op: str, observed: list[Any], rng: random.Random) -> list[Any]:
    """Up to MAX_LITERALS values to compare the field with: values it takes, and edges of every type."""
    pool = _literal_pool(path, op, observed, rng)
    if len(pool) <= MAX_LITERALS or op in ("inList", "notInList"):
        return pool
    return pool[:2] + rng.sample(pool[2:], MAX_LITERALS - 2)


def _literal_pool(path: str, op: str, observed: list[Any], rng: random.Random) -> list[Any]:
    ftype = FIELDS.get(path, "any")
    scalars = observed[:6] + EDGE_BY_TYPE[ftype]
    if op in ("inList", "notInList"):
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
                    plain_set, compiled = built
                    covered[path].add(op)
                    for event_type, body, key in bodies:
                        expected = plain(session, world, plain_set, event_type, body, key)
                        got = production(session, world, compiled, event_type, body)
                        assert summary(got) == summary(expected), (path, op, value, event_type, body)
                        held[path].add(expected.decision == "BLOCK")
                        cases += 1
        session.rollback()
    applicable = {"string": len(OPERATORS), "number": len(OPERATORS) - 3, "boolean": 6, "any": len(OPERATORS)}
    for path in CATALOGUE:
        assert len(covered[path]) == applicable[FIELDS.get(path, "any")], (path, sorted(covered[path]))
        assert held[path] == {True, False}, (
            f"{path}: the pool never made a condition on it both hold and fail"
        )
    assert cases > 20_000


# --- 2. Seeded random bodies and sets -----------------------------------------------------------------

SEED_ENV = "PASSGATE_DIFF_SEED"
RANDOM_CASES = 2000
LITERAL_POOL: list[Any] = ["", "US", "GB", "DE", "WEB", "mailinator.com", "gmail.com", "MOBILE", "red", "PRO"]
LITERAL_POOL += ["jo", "12", "acct-seen", 0, 1, 2, 3, 4, 6, -1, 0.5, 365.0, 1000, 2**63 - 1, True, False]
# Raw CEL that reads its facts in ways structured conditions never do: whole roots, indexes, macros.
RAW: list[str] = [
    'inList["email.domain|domains"]',
    'inList["phone.country|words"] == true',
    '!inList["ip.country|words"]',
    'inList["customFields.x|ips"] || inList["userIp|ips"]',
    'velocity.ip["logins1h"] > 1',
    "has(velocity.account.other) || velocity.device.logins24h > 2",
    "size(velocity) == 4",
    "size(account) > 6 && account.ageDays > 30.0",
    'has(email.domain) && email.domain.endsWith(".com")',
    '"GB" in [phone.country, ip.country]',
    "device.seenForAccount || device.trusted",
    "ip.version == 6 || ip.private",
    "email.disposable != email.freeProvider",
    "phone.valid && !(phone.lineType in ['MOBILE'])",
    'customFields.x > 3 || customFields.x == "red"',
    "has(customFields.x)",
]
RANDOM_SLOTS: list[tuple[str, list[Any]]] = [
    ("channel", [ABSENT, *TEXTS]),
    ("userIp", IPS),
    ("person.emailAddress", EMAILS),
    ("person.phoneNumber", PHONES),
    ("person.name.first", [ABSENT, "Jo", "", "é日本"]),
    ("preferredLanguageCode", [ABSENT, "en", "fr-CA", "x"]),
    ("customFields.x", CUSTOM_VALUES),
    ("customFields.other", [ABSENT, 1, "x"]),
]
ACCOUNTS: list[Any] = [ABSENT, "acct-seen", "acct-busy", "acct-quiet", "acct-new"]
DEVICES = ["dev-seen", "dev-t", "dev-b", "dev-busy", "dev-new"]


def random_body(rng: random.Random) -> tuple[str, dict[str, Any]]:
    while True:
        event_type = rng.choice(["LOGIN", "LOGIN", "NEW_ACCOUNT_OPENING"])
        body: dict[str, Any] = {
            "inquiryId": f"r{rng.randrange(10**6)}",
            "deviceSessionId": rng.choice(DEVICES),
        }
        for place, values in RANDOM_SLOTS:
            _set(body, place, rng.choice(values))
        account = rng.choice(ACCOUNTS)
        if account is not ABSENT:
            body["account"] = {"id": account, "username": "u"}
            for place, values in (
                ("type", [ABSENT, "PRO", ""]),
                ("accountIsActive", [ABSENT, True, False]),
                ("creationDateTime", CREATED),
            ):
                _set(body, f"account.{place}", rng.choice(values))
        checked = validated(event_type, body)
        if checked is not None:
            return event_type, checked


def random_condition(rng: random.Random) -> tuple[str, str, Any]:
    path = rng.choice(CATALOGUE + ["customFields.other"])
    op = rng.choice(OPERATORS)
    if op in ("inList", "notInList"):
        return path, op, rng.choice(sorted(LISTS))
    if op in ("in", "notIn"):
        return path, op, rng.sample(LITERAL_POOL, rng.randint(1, 3))
    if op in ("contains", "startsWith", "endsWith"):
        return path, op, rng.choice(["", "m", ".com", "GB", "acct", "1"])
    return path, op, rng.choice(LITERAL_POOL)


def random_part(rng: random.Random) -> dict[str, Any]:
    """Conditions and/or raw CEL: a random condition as structured, as its CEL, or a raw expression."""
    part: dict[str, Any] = {"conditions": []}
    raw: list[str] = []
    for _ in range(rng.randint(1, 3)):
        path, op, value = random_condition(rng)
        roll = rng.random()
        try:
            source = compile_condition(path, op, value)
        except ConditionError:
            continue
        if roll < 0.6:
            part["conditions"].append({"field": path, "operator": op, "value": value})
        elif roll < 0.8:
            raw.append(source if rng.random() < 0.7 else f"!{source}")
        else:
            raw.append(rng.choice(RAW))
    if raw:
        part["cel"] = rng.choice([" && ", " || "]).join(f"({r})" for r in raw)
    return part


def random_set(rng: random.Random) -> dict[str, Any]:
    policies = []
    for i in range(rng.randint(1, 3)):
        policies.append(
            {
                "name": f"p{i}",
                "outcome": rng.choice(["BLOCK", "CHALLENGE", "NO_CHANGE"]),
                "tags": [{"name": f"T{i}", "weight": i + 1}],
                **random_part(rng),
            }
        )
    names = [p["name"] for p in policies]
    segments = []
    if rng.random() < 0.4:
        segments.append({"name": "routed", "policies": rng.sample(names, 1), **random_part(rng)})
    segments.append({"name": "default", "mfaEnabled": True, "policies": names})
    return {"name": "random", "segments": segments, "policies": policies}


def test_random_bodies_and_sets_agree_with_the_plain_path(world: World) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    decisions: set[tuple[str, str]] = set()
    with world.registry.sessions() as session:
        for case in range(RANDOM_CASES):
            document = random_set(rng)
            event_type, body = random_body(rng)
            built = compiled_or_none(document)
            if built is None:
                continue
            plain_set, compiled = built
            expected = plain(session, world, plain_set, event_type, body, json.dumps(body, sort_keys=True))
            got = production(session, world, compiled, event_type, body)
            assert summary(got) == summary(expected), (
                f"seed {seed} (replay with {SEED_ENV}={seed}), case {case}:\n"
                f"set {json.dumps(document)}\n{event_type} {json.dumps(body)}"
            )
            decisions.add((expected.segment, expected.decision))
        session.rollback()
    assert len(decisions) == 6, f"seed {seed}: {decisions}"  # every segment met every decision


# --- 3. Through HTTP: simulate, live, and the plain path ----------------------------------------------

HTTP_SETS: list[dict[str, Any]] = [
    # The lists alone: nothing else reads the signals behind them.
    {
        "name": "lists",
        "segments": [
            {
                "name": "listed-domain",
                "conditions": [{"field": "email.domain", "operator": "inList", "value": "domains"}],
                "policies": ["phone-country"],
            },
            {
                "name": "default",
                "mfaEnabled": True,
                "policies": ["phone-country", "ip-country", "unlisted-domain", "ip", "raw"],
            },
        ],
        "policies": [
            {
                "name": "phone-country",
                "outcome": "BLOCK",
                "conditions": [{"field": "phone.country", "operator": "inList", "value": "words"}],
                "tags": [{"name": "PHONE_COUNTRY", "weight": 5}],
            },
            {
                "name": "ip-country",
                "outcome": "CHALLENGE",
                "conditions": [{"field": "ip.country", "operator": "inList", "value": "words"}],
                "tags": [{"name": "IP_COUNTRY", "weight": 3}],
            },
            {
                "name": "unlisted-domain",
                "outcome": "NO_CHANGE",
                "conditions": [{"field": "email.domain", "operator": "notInList", "value": "domains"}],
                "tags": [{"name": "UNLISTED_DOMAIN", "weight": 1}],
            },
            {
                "name": "ip",
                "outcome": "NO_CHANGE",
                "conditions": [{"field": "userIp", "operator": "inList", "value": "ips"}],
                "tags": [{"name": "LISTED_IP", "weight": 1}],
            },
            {
                "name": "raw",
                "outcome": "NO_CHANGE",
                "cel": 'inList["phone.lineType|words"] || velocity.ip["logins1h"] > 0',
                "tags": [{"name": "RAW", "weight": 2}],
            },
        ],
    },
    # Signals, devices and counters.
    {
        "name": "signals",
        "segments": [
            {
                "name": "known",
                "conditions": [{"field": "device.seenForAccount", "operator": "equals", "value": True}],
                "policies": ["banned"],
            },
            {"name": "default", "mfaEnabled": True, "policies": ["disposable", "young", "busy", "banned"]},
        ],
        "policies": [
            {
                "name": "disposable",
                "outcome": "BLOCK",
                "conditions": [{"field": "email.disposable", "operator": "equals", "value": True}],
                "tags": [{"name": "DISPOSABLE", "weight": 9}],
            },
            {
                "name": "young",
                "outcome": "CHALLENGE",
                "conditions": [{"field": "account.ageDays", "operator": "lt", "value": 400}],
                "tags": [{"name": "YOUNG", "weight": 2}],
            },
            {
                "name": "busy",
                "outcome": "CHALLENGE",
                "conditions": [{"field": "velocity.account.logins24h", "operator": "gte", "value": 2}],
                "tags": [{"name": "BUSY", "weight": 4}],
            },
            {
                "name": "banned",
                "outcome": "BLOCK",
                "conditions": [{"field": "device.banned", "operator": "equals", "value": True}],
                "tags": [{"name": "BANNED", "weight": 50}],
            },
        ],
    },
]


def accepted_over_http(value: Any) -> bool:
    """Whether a generated body is one the API takes: integers past 64 bits are refused before routing
    (400), so the HTTP comparison draws bodies without them (the in-process one keeps them)."""
    if isinstance(value, dict):
        return all(accepted_over_http(v) for v in value.values())
    if isinstance(value, list):
        return all(accepted_over_http(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63
    return True


@pytest.fixture
def http_world(http: TestClient, tenant: Tenant, registry: Registry) -> World:
    h = tenant.admin_headers
    for name, (kind, entries) in LISTS.items():
        assert http.post("/manage/v1/lists", json={"name": name, "kind": kind}, headers=h).status_code == 201
        r = http.post(f"/manage/v1/lists/{name}/entries", json={"entries": entries}, headers=h)
        assert r.status_code == 200 and not r.json()["rejected"], r.text
    for account, device, state in (("acct-seen", "dev-t", "TRUSTED"), ("acct-seen", "dev-b", "BANNED")):
        r = http.post(
            "/trusted-device",
            json={"accountId": account, "deviceSessionId": device, "trustState": state},
            headers=tenant.headers,
        )
        assert r.status_code in (200, 201), r.text
    return World(registry, tenant.client_id, registry.clock.now())


@pytest.mark.parametrize("document", HTTP_SETS, ids=[d["name"] for d in HTTP_SETS])
def test_simulate_and_live_decisions_agree(
    http: TestClient, tenant: Tenant, http_world: World, document: dict[str, Any]
) -> None:
    """Decisions change what the next one sees (devices become known, counters grow): each body is
    simulated, decided by the plain path, then decided live, so all three see the same state."""
    rng = random.Random(1616)
    paths = {"LOGIN": "/login/v2", "NEW_ACCOUNT_OPENING": "/newaccountopening/v2"}
    doc = PolicySetDocument.model_validate(document)
    plain_set = reference.plain_set(doc)
    outcomes: set[str] = set()
    for event_type in paths:
        publish_set(http, tenant, document, event_type)
        for _ in range(40):
            _, body = random_body(rng)
            while not accepted_over_http(body):
                _, body = random_body(rng)
            body = {**body, "inquiryId": f"h{rng.randrange(10**9)}"}
            sim = http.post(
                f"/manage/v1/policy-sets/{event_type}/simulate",
                json={"request": body, "version": "v2"},
                headers=tenant.admin_headers,
            )
            assert sim.status_code == 200, sim.text
            with http_world.registry.sessions() as session:
                facts = reference.facts(
                    session,
                    tenant.client_id,
                    event_type,
                    body,
                    doc,
                    http_world.registry.signals,
                    http_world.registry.clock.now(),
                )
                session.rollback()
            expected = reference.outcome(plain_set, facts)
            live = http.post(paths[event_type], json=body, headers=tenant.headers)
            assert live.status_code == 200, live.text
            got = [(r["userSegment"], r["decision"], r["tags"]) for r in (sim.json(), live.json())]
            want = (expected.segment, expected.decision, expected.tags)
            assert got == [want, want], (event_type, body)
            assert sim.json()["tagWeights"] == live.json()["tagWeights"] == expected.tag_weights
            outcomes.add(expected.decision)
    assert outcomes == {"ALLOW", "CHALLENGE", "BLOCK"}


def publish_set(http: TestClient, tenant: Tenant, document: dict[str, Any], event_type: str) -> None:
    r = http.put(f"/manage/v1/policy-sets/{event_type}/draft", json=document, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    r = http.post(f"/manage/v1/policy-sets/{event_type}/publish", headers=tenant.admin_headers)
    assert r.status_code == 201 and r.json()["versionName"] == "v2", r.text
