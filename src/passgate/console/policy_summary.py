"""Policies and segments in plain language: "Block when the email's domain is in the list “disposable”".

Reads a policy-set document as stored or as typed in the editor, valid or not: a part that is not what
the schema asks for is described as well as it can be, never raised on. Every field of the catalogue
(`policy.fields.FIELDS`) has a label; a custom field reads "custom field <key>" and any other path is
spelt out from its parts (`person.fooBar` → "person foo bar").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from passgate.policy.conditions import ConditionError, normalise_operator
from passgate.policy.fields import CUSTOM_PREFIX, DIMENSIONS, METRICS, WINDOWS

_LABELS: Final[Mapping[str, str]] = {
    "eventType": "the event type",
    "inquiryId": "the inquiry id",
    "channel": "the channel",
    "deviceSessionId": "the device session id",
    "userIp": "the IP address",
    "loginUrl": "the login URL",
    "accountCreationUrl": "the account creation URL",
    "preferredLanguageCode": "the preferred language",
    "person.name.first": "the first name",
    "person.name.last": "the last name",
    "person.name.preferred": "the preferred name",
    "person.emailAddress": "the email address",
    "person.phoneNumber": "the phone number",
    "account.id": "the account id",
    "account.username": "the username",
    "account.type": "the account type",
    "account.creationDateTime": "the account's creation time",
    "account.accountIsActive": "the account is active",
    "device.seenForAccount": "the device was seen for this account before",
    "device.trusted": "the device is trusted",
    "device.banned": "the device is banned",
    "email.domain": "the email's domain",
    "email.disposable": "the email is disposable",
    "email.freeProvider": "the email is from a free provider",
    "email.valid": "the email address is valid",
    "phone.country": "the phone's country",
    "phone.lineType": "the phone's line type",
    "phone.valid": "the phone number is valid",
    "ip.country": "the IP's country",
    "ip.private": "the IP address is private",
    "ip.version": "the IP version",
    "account.ageDays": "the account's age in days",
}

# Yes/no fields: what a condition says when it asks for true, and for false.
_BOOLEAN: Final[Mapping[str, tuple[str, str]]] = {
    "account.accountIsActive": ("the account is active", "the account is not active"),
    "device.seenForAccount": (
        "the device was seen for this account before",
        "the device is new for this account",
    ),
    "device.trusted": ("the device is trusted", "the device is not trusted"),
    "device.banned": ("the device is banned", "the device is not banned"),
    "email.disposable": ("the email is disposable", "the email is not disposable"),
    "email.freeProvider": ("the email is from a free provider", "the email is not from a free provider"),
    "email.valid": ("the email address is valid", "the email address is not valid"),
    "phone.valid": ("the phone number is valid", "the phone number is not valid"),
    "ip.private": ("the IP address is private", "the IP address is public"),
}

_DIMENSION: Final[Mapping[str, str]] = {
    "account": "the account",
    "ip": "the IP address",
    "device": "the device",
    "email": "the email address",
}
_METRIC: Final[Mapping[str, str]] = {
    "logins": "logins",
    "failedAttempts": "failed attempts",
    "accountOpenings": "account openings",
    "challenges": "challenges",
}
_WINDOW: Final[Mapping[str, str]] = {"1h": "the last hour", "24h": "the last 24 hours"}
_VELOCITY: Final = re.compile(
    rf"^velocity\.({'|'.join(DIMENSIONS)})\.({'|'.join(METRICS)})({'|'.join(WINDOWS)})$"
)
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_OUTCOME: Final[Mapping[str, str]] = {
    "BLOCK": "Block",
    "CHALLENGE": "Challenge",
    "NO_CHANGE": "Leave the decision as it is",
}

# How each operator reads after a field's label; `{v}` is the value as shown.
_PHRASES: Final[Mapping[str, str]] = {
    "equals": "is {v}",
    "notEquals": "is not {v}",
    "contains": "contains {v}",
    "startsWith": "starts with {v}",
    "endsWith": "ends with {v}",
    "in": "is in {v}",
    "notIn": "is not in {v}",
    "gt": "is more than {v}",
    "gte": "is at least {v}",
    "lt": "is less than {v}",
    "lte": "is at most {v}",
    "inList": "is in the list {v}",
    "notInList": "is not in the list {v}",
}


def _words(name: str) -> str:
    return _CAMEL.sub(" ", name).lower()


def field_label(path: Any) -> str:
    """A field's name in plain words: the catalogue's label, "custom field <key>", or the path spelt out."""
    if not isinstance(path, str) or not path.strip():
        return "an unnamed field"
    if path in _LABELS:
        return _LABELS[path]
    velocity = _VELOCITY.match(path)
    if velocity:
        dim, metric, window = velocity.groups()
        return f"the number of {_METRIC[metric]} for {_DIMENSION[dim]} in {_WINDOW[window]}"
    if path.startswith(CUSTOM_PREFIX):
        return f"custom field {path[len(CUSTOM_PREFIX) :]}"
    return " ".join(_words(part) for part in path.split(".") if part)


def show(value: Any, *, quote: bool = True) -> str:
    """A condition's value as a sentence shows it: text in quotes, yes/no, lists in brackets."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return f"“{value}”" if quote else value
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v, quote=False) for v in value) + "]"
    if value is None:
        return "empty"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def condition_sentence(condition: Any) -> str:
    """One condition as a clause: "the IP's country is not in [US, CA]"."""
    if not isinstance(condition, Mapping):
        return "an unreadable condition"
    path = condition.get("field")
    raw_op = condition.get("operator")
    value = condition.get("value")
    label = field_label(path)
    try:
        op = normalise_operator(raw_op) if isinstance(raw_op, str) else ""
    except ConditionError:
        op = ""
    if not op:
        return f"{label} {raw_op if isinstance(raw_op, str) else '?'} {show(value)}"
    if isinstance(value, bool) and isinstance(path, str) and op in ("equals", "notEquals"):
        pair = _BOOLEAN.get(path)
        if pair is not None:
            return pair[0] if value == (op == "equals") else pair[1]
    if isinstance(path, str) and path in _BOOLEAN:
        # A yes/no field compared otherwise than with yes or no: name the field, not the statement.
        label = "whether " + label
    return f"{label} " + _PHRASES[op].format(v=show(value))


def _clauses(part: Mapping[str, Any]) -> list[str]:
    conditions = part.get("conditions")
    out = [condition_sentence(c) for c in (conditions if isinstance(conditions, list) else [])]
    cel = part.get("cel")
    if isinstance(cel, str) and cel.strip():
        out.append(f"the CEL expression “{cel.strip()}” is true")
    return out


def _join(clauses: list[str]) -> str:
    if len(clauses) <= 2:
        return " and ".join(clauses)
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def policy_sentence(policy: Any) -> str:
    """A policy as one sentence: "Challenge when the device is new for this account and …"."""
    if not isinstance(policy, Mapping):
        return "An unreadable policy."
    outcome = policy.get("outcome")
    verb = (_OUTCOME.get(outcome) or f"Decide {outcome}") if isinstance(outcome, str) else "Decide"
    clauses = _clauses(policy)
    sentence = f"{verb} when {_join(clauses)}" if clauses else f"{verb} for every request"
    tags = policy.get("tags")
    found = [t.get("name") for t in tags if isinstance(t, Mapping)] if isinstance(tags, list) else []
    names = [n for n in found if isinstance(n, str) and n]
    if names:
        sentence += f"; tag {', '.join(names)}"
    return sentence + "."


def segment_sentence(segment: Any, *, default: bool = False) -> str:
    """Which requests a segment takes: "Applies when …", and the policies it runs."""
    if not isinstance(segment, Mapping):
        return "An unreadable segment."
    clauses = [] if default else _clauses(segment)
    if default:
        sentence = "Applies to every request that no segment above takes"
    elif clauses:
        sentence = f"Applies when {_join(clauses)}"
    else:
        sentence = "Applies to every request (it has no conditions)"
    linked = segment.get("policies")
    names = [n for n in linked if isinstance(n, str)] if isinstance(linked, list) else []
    sentence += f"; runs {', '.join(names)}" if names else "; runs no policy"
    if segment.get("mfaEnabled") is True:
        sentence += "; a challenge starts MFA"
    return sentence + "."


def document_summaries(doc: Any) -> dict[str, list[str]]:
    """The sentence of every segment and policy of a document, in its order."""
    doc = doc if isinstance(doc, Mapping) else {}
    segments = doc.get("segments") if isinstance(doc.get("segments"), list) else []
    policies = doc.get("policies") if isinstance(doc.get("policies"), list) else []
    last = len(segments) - 1
    return {
        "segments": [segment_sentence(s, default=i == last) for i, s in enumerate(segments)],
        "policies": [policy_sentence(p) for p in policies],
    }


def _named(items: Any) -> dict[str, tuple[int, Any]]:
    out: dict[str, tuple[int, Any]] = {}
    for i, item in enumerate(items if isinstance(items, list) else []):
        name = item.get("name") if isinstance(item, Mapping) else None
        key = name if isinstance(name, str) else f"#{i + 1}"
        out.setdefault(key, (i, item))
    return out


def change_summary(a: Any, b: Any) -> list[dict[str, str]]:
    """What changed from document `a` to `b`, one entry per segment or policy added, removed or changed
    (anything in it at all), each with its sentence before and after: {kind, name, change, before, after}."""
    a = a if isinstance(a, Mapping) else {}
    b = b if isinstance(b, Mapping) else {}
    out: list[dict[str, str]] = []
    for kind, key in (("segment", "segments"), ("policy", "policies")):
        old, new = _named(a.get(key)), _named(b.get(key))
        old_last = len(a.get(key) or []) - 1 if isinstance(a.get(key), list) else -1
        new_last = len(b.get(key) or []) - 1 if isinstance(b.get(key), list) else -1

        def say(item: Any, index: int, last: int, kind: str = kind) -> str:
            if kind == "policy":
                return policy_sentence(item)
            return segment_sentence(item, default=index == last)

        for name, (j, item) in new.items():
            if name not in old:
                out.append(
                    {
                        "kind": kind,
                        "name": name,
                        "change": "added",
                        "before": "",
                        "after": say(item, j, new_last),
                    }
                )
                continue
            i, was = old[name]
            before, after = say(was, i, old_last), say(item, j, new_last)
            if _canonical(was) != _canonical(item):
                out.append(
                    {"kind": kind, "name": name, "change": "changed", "before": before, "after": after}
                )
            elif kind == "segment" and (i != j or before != after):
                # The order of segments routes requests; the order of policies decides nothing.
                out.append({"kind": kind, "name": name, "change": "moved", "before": before, "after": after})
        for name, (i, item) in old.items():
            if name not in new:
                out.append(
                    {
                        "kind": kind,
                        "name": name,
                        "change": "removed",
                        "before": say(item, i, old_last),
                        "after": "",
                    }
                )
    return out


def _canonical(value: Any) -> str:
    """The JSON text two values are compared by: keys sorted, so 1, 1.0 and true stay apart."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


__all__ = [
    "change_summary",
    "condition_sentence",
    "document_summaries",
    "field_label",
    "policy_sentence",
    "segment_sentence",
]
