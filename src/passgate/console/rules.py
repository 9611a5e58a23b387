"""The policy editor's typed rule builder: the field catalogue grouped by kind with readable labels, the
operators that fit each field type, the value control each (type, operator) pair takes, plain-language checks
of a condition's operator and list before a draft is saved, and where the editor puts the focus after a
button added or removed a part.

The field types come from `passgate.policy.fields`; this module only decides what the form offers. The
engine stays the authority on what compiles: a check here refuses less-than-sensible pairs the engine would
accept (a list check on a yes/no field), and says why in words a person can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from passgate.console.forms import OPERATOR_LABELS, field_type
from passgate.policy.conditions import LIST_OPERATORS, OPERATOR_ALIASES, OPERATORS
from passgate.policy.fields import CUSTOM_PREFIX, DIMENSIONS, FIELDS, METRICS, WINDOWS

# What each field type can be compared with. A custom field (`any`) may hold text, a number or true/false.
TYPE_OPERATORS: Final[Mapping[str, tuple[str, ...]]] = {
    "string": OPERATORS,
    "number": ("equals", "notEquals", "in", "notIn", "gt", "gte", "lt", "lte"),
    "boolean": ("equals", "notEquals"),
    "any": OPERATORS,
}
TYPE_WORDS: Final[Mapping[str, str]] = {
    "string": "text",
    "number": "number",
    "boolean": "yes/no",
    "any": "custom",
}

_GROUPS: Final = (
    (
        "Request",
        (
            "eventType",
            "inquiryId",
            "channel",
            "deviceSessionId",
            "userIp",
            "loginUrl",
            "accountCreationUrl",
            "preferredLanguageCode",
        ),
    ),
    (
        "Person",
        (
            "person.name.first",
            "person.name.last",
            "person.name.preferred",
            "person.emailAddress",
            "person.phoneNumber",
        ),
    ),
    (
        "Account",
        (
            "account.id",
            "account.username",
            "account.type",
            "account.creationDateTime",
            "account.accountIsActive",
            "account.ageDays",
        ),
    ),
    ("Device", ("device.seenForAccount", "device.trusted", "device.banned")),
    ("Email", ("email.domain", "email.disposable", "email.freeProvider", "email.valid")),
    ("Phone", ("phone.country", "phone.lineType", "phone.valid")),
    ("IP address", ("ip.country", "ip.private", "ip.version")),
)
_LABELS: Final[Mapping[str, str]] = {
    "eventType": "event type",
    "inquiryId": "inquiry id",
    "channel": "channel",
    "deviceSessionId": "device session id",
    "userIp": "IP address",
    "loginUrl": "login URL",
    "accountCreationUrl": "account creation URL",
    "preferredLanguageCode": "preferred language",
    "person.name.first": "first name",
    "person.name.last": "last name",
    "person.name.preferred": "preferred name",
    "person.emailAddress": "email address",
    "person.phoneNumber": "phone number",
    "account.id": "account id",
    "account.username": "username",
    "account.type": "account type",
    "account.creationDateTime": "created at (ISO 8601)",
    "account.accountIsActive": "is active",
    "account.ageDays": "age in days",
    "device.seenForAccount": "seen for this account before",
    "device.trusted": "trusted",
    "device.banned": "banned",
    "email.domain": "domain",
    "email.disposable": "disposable",
    "email.freeProvider": "free provider",
    "email.valid": "valid",
    "phone.country": "country",
    "phone.lineType": "line type",
    "phone.valid": "valid",
    "ip.country": "country",
    "ip.private": "private",
    "ip.version": "version (4 or 6)",
}
_METRIC_WORDS: Final = {
    "logins": "logins",
    "failedAttempts": "failed attempts",
    "accountOpenings": "account openings",
    "challenges": "challenges",
}
_DIMENSION_WORDS: Final = {
    "account": "for this account",
    "ip": "from this IP address",
    "device": "from this device",
    "email": "for this email address",
}
_WINDOW_WORDS: Final = {"1h": "in the last hour", "24h": "in the last 24 hours"}
assert set(_METRIC_WORDS) == set(METRICS) and set(_DIMENSION_WORDS) == set(DIMENSIONS)
assert set(_WINDOW_WORDS) == set(WINDOWS)


def _velocity_groups() -> list[tuple[str, str, str]]:
    return [
        (f"velocity.{d}.{m}{w}", f"{_METRIC_WORDS[m]} {_DIMENSION_WORDS[d]} {_WINDOW_WORDS[w]}", "number")
        for d in DIMENSIONS
        for m in METRICS
        for w in WINDOWS
    ]


def field_groups() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The catalogue by kind: (kind, [(path, readable label, type)]). Every field of `FIELDS` is in one."""
    groups = [(kind, [(p, _LABELS[p], str(FIELDS[p])) for p in paths]) for kind, paths in _GROUPS]
    groups.append(("Velocity", _velocity_groups()))
    return groups


def field_options() -> list[dict[str, str]]:
    """The field picker's choices, in catalogue order, each labelled "Kind: label (type)"."""
    return [
        {"path": path, "type": ftype, "label": f"{kind}: {label} ({TYPE_WORDS[ftype]})"}
        for kind, items in field_groups()
        for path, label, ftype in items
    ]


def canonical_operator(op: str) -> str:
    return OPERATOR_ALIASES.get(op, OPERATOR_ALIASES.get(op.lower(), op))


def operators_for(path: str, current: str | None = None) -> list[tuple[str, str, bool]]:
    """The operator picker of a condition on `path`: (operator, label, fits). The saved operator is offered
    even when it does not fit the field, marked so, so that a draft comes back as it was saved."""
    fitting = TYPE_OPERATORS[field_type(path)]
    out = [(o, OPERATOR_LABELS[o], True) for o in fitting]
    op = canonical_operator(current) if current else None
    if op and op not in fitting:
        label = OPERATOR_LABELS.get(op, op)
        out.append((op, f"{label} (does not fit this field)", False))
    return out


def value_control(path: str, operator: str) -> str:
    """How the value is entered: `list` (a list picker), `set` (comma-separated), `boolean` (true/false),
    `number` or `text`."""
    op = canonical_operator(operator)
    ftype = field_type(path)
    if op in LIST_OPERATORS:
        return "list"
    if op in ("in", "notIn"):
        return "set"
    if op in ("contains", "startsWith", "endsWith"):
        return "text"
    if ftype == "boolean":
        return "boolean"
    if ftype == "number":
        return "number"
    return "text"


def catalogue() -> dict[str, Any]:
    """What console.js needs to retype a condition row as its field and operator change."""
    return {
        "types": {path: str(t) for path, t in FIELDS.items()},
        "operators": {t: list(ops) for t, ops in TYPE_OPERATORS.items()},
        "labels": dict(OPERATOR_LABELS),
    }


def _words(ops: Iterable[str]) -> str:
    labels = [f"“{OPERATOR_LABELS[o]}”" for o in ops]
    return ", ".join(labels[:-1]) + " or " + labels[-1] if len(labels) > 1 else labels[0]


def _check(where: str, condition: Any, lists: set[str]) -> list[dict[str, str]]:
    if not isinstance(condition, dict):
        return []
    path = str(condition.get("field") or "").strip()
    op = canonical_operator(str(condition.get("operator") or ""))
    if op not in OPERATORS or not path or (path not in FIELDS and not path.startswith(CUSTOM_PREFIX)):
        return []  # the engine's own check names an unknown field or operator
    ftype = field_type(path)
    fitting = TYPE_OPERATORS[ftype]
    if op not in fitting:
        kind = "a yes/no field" if ftype == "boolean" else f"a {TYPE_WORDS[ftype]} field"
        return [
            {
                "field": f"{where}.operator",
                "message": f"“{OPERATOR_LABELS[op]}” does not fit {path}, {kind}. Choose {_words(fitting)}.",
            }
        ]
    value = condition.get("value")
    if op in LIST_OPERATORS:
        if not isinstance(value, str) or not value.strip():
            return [{"field": f"{where}.value", "message": "Choose one of your lists."}]
        if value not in lists:
            where_to = "Choose one of your lists" if lists else "You have no lists yet"
            return [
                {
                    "field": f"{where}.value",
                    "message": f"There is no list named {value}. {where_to}, or create it on the Lists page.",
                }
            ]
    return []


def check_conditions(doc: Mapping[str, Any], lists: set[str]) -> list[dict[str, str]]:
    """Plain-language errors for conditions whose operator does not fit their field's type, and list checks
    that name no list of the client; each names its condition as the API does
    (`policies[1].conditions[0].operator`)."""
    out: list[dict[str, str]] = []
    for part in ("segments", "policies"):
        items = doc.get(part)
        for i, item in enumerate(items if isinstance(items, list) else []):
            conditions = item.get("conditions") if isinstance(item, dict) else None
            for j, c in enumerate(conditions if isinstance(conditions, list) else []):
                out.extend(_check(f"{part}[{i}].conditions[{j}]", c, lists))
    return out


_ACTION = re.compile(r"^(add|remove)-(segment-condition|condition|tag|policy|segment)(?::(\d+))?(?::(\d+))?$")


def focus_after(doc: Mapping[str, Any], action: str) -> str | None:
    """The id of the control to focus once `action` (an editor button) has been applied to `doc`: the part
    added, or the neighbour of the part removed (the button that adds one when none is left); None when the
    action names no part."""
    found = _ACTION.match(action)
    if found is None:
        return None
    verb, what, first, second = found.groups()
    segs = doc.get("segments") or []
    pols = doc.get("policies") or []
    i = int(first) if first is not None else None
    j = int(second) if second is not None else None

    def place(count: int, at: int | None) -> int | None | bool:
        """Where the focus lands among `count` parts (after the edit): the last one after an addition; after
        a removal at `at`, the part that moved into its place or else the one before it. None: no part is
        left; False: `at` cannot have been removed."""
        if verb == "remove" and (at is None or at > count):
            return False
        if count == 0:
            return None
        return count - 1 if verb == "add" or at is None or at >= count else at

    if what == "policy":
        k = place(len(pols), i)
        return None if k is False else (f"p{k}-name" if k is not None else "add-policy")
    if what == "segment":
        # A new segment goes before the default, which stays last.
        k = max(0, len(segs) - 2) if verb == "add" else place(len(segs), i)
        return None if k is False or k is None else f"s{k}-name"
    owners, prefix = (segs, "s") if what == "segment-condition" else (pols, "p")
    if i is None or i >= len(owners) or not isinstance(owners[i], dict):
        return None
    if what == "tag":
        k = place(len(owners[i].get("tags") or []), j)
        return None if k is False else (f"{prefix}{i}.t{k}-name" if k is not None else f"{prefix}{i}-add-tag")
    k = place(len(owners[i].get("conditions") or []), j)
    if k is False:
        return None
    return f"{prefix}{i}.c{k}-field" if k is not None else f"{prefix}{i}-add-condition"
