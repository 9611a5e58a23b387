"""The field catalogue (pure): every fact a condition can read, and what reading it asks a decision to compute.

A fact is a request attribute (`person.emailAddress`), a device fact (`device.seenForAccount`), a signal
derived from the request (`email.domain`, `ip.country`, `account.ageDays`), a velocity counter
(`velocity.ip.logins1h`) or a custom field (`customFields.<key>`). Conditions check their fields against
this catalogue; the engine turns the field paths a set reads into the `SignalPlan` of the signals a
decision computes; `signals` and `velocity` compute them. Nothing here does I/O, so the engine and the
conditions that depend on it do none either.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

FieldType = Literal["string", "number", "boolean", "any"]

# What the request carries, and what is known about its device for its account.
BASE_FIELDS: Final[Mapping[str, FieldType]] = {
    "eventType": "string",
    "inquiryId": "string",
    "channel": "string",
    "deviceSessionId": "string",
    "userIp": "string",
    "loginUrl": "string",
    "accountCreationUrl": "string",
    "preferredLanguageCode": "string",
    "person.name.first": "string",
    "person.name.last": "string",
    "person.name.preferred": "string",
    "person.emailAddress": "string",
    "person.phoneNumber": "string",
    "account.id": "string",
    "account.username": "string",
    "account.type": "string",
    "account.creationDateTime": "string",
    "account.accountIsActive": "boolean",
    "device.seenForAccount": "boolean",
    "device.trusted": "boolean",
    "device.banned": "boolean",
}

# Derived from the request by `signals`, each only when the active set reads it.
SIGNAL_FIELDS: Final[Mapping[str, FieldType]] = {
    "email.domain": "string",
    "email.disposable": "boolean",
    "email.freeProvider": "boolean",
    "email.valid": "boolean",
    "phone.country": "string",
    "phone.lineType": "string",
    "phone.valid": "boolean",
    "ip.country": "string",
    "ip.private": "boolean",
    "ip.version": "number",
    "account.ageDays": "number",
}

# Velocity counters: events of a metric for a dimension's key in a window, before the current request.
METRICS: Final = ("logins", "failedAttempts", "accountOpenings", "challenges")
DIMENSIONS: Final = ("account", "ip", "device", "email")
WINDOWS: Final[Mapping[str, int]] = {"1h": 3600, "24h": 86400}

Need = tuple[str, str]  # (dimension, metric): one counter to read, in every window

VELOCITY_FIELDS: Final[Mapping[str, FieldType]] = {
    f"velocity.{d}.{m}{w}": "number" for d in DIMENSIONS for m in METRICS for w in WINDOWS
}

# Every field a condition can name, but the custom ones.
FIELDS: Final[Mapping[str, FieldType]] = {**BASE_FIELDS, **SIGNAL_FIELDS, **VELOCITY_FIELDS}

CUSTOM_PREFIX: Final = "customFields."
CUSTOM_KEY: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

EVERY_COUNTER: Final[frozenset[Need]] = frozenset((d, m) for d in DIMENSIONS for m in METRICS)
_COUNTER: Final = re.compile(rf"^({'|'.join(METRICS)})({'|'.join(WINDOWS)})$")


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted field path (customFields keys may themselves contain dots)."""
    if path.startswith(CUSTOM_PREFIX):
        return facts.get("customFields", {}).get(path[len(CUSTOM_PREFIX) :])
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def dimension_keys(body: Mapping[str, Any]) -> dict[str, str]:
    """The request's key in each velocity dimension it has one for (an email address in lower case)."""
    person = body.get("person") or {}
    account = body.get("account") or {}
    keys = {
        "account": account.get("id"),
        "ip": body.get("userIp"),
        "device": body.get("deviceSessionId"),
        "email": (person.get("emailAddress") or "").lower() or None,
    }
    return {k: v for k, v in keys.items() if v}


def needed_for(paths: Iterable[str]) -> frozenset[Need]:
    """The (dimension, metric) pairs to count for conditions reading these paths under `velocity`.

    A path names one counter (`velocity.ip.logins1h`), a dimension (`velocity.ip`: all of its counters)
    or the whole root (`velocity`). A member that is no counter still reads its dimension, and one that is
    no dimension reads the root: `has(velocity.ip.other)` must see the dimension's other counters.
    """
    found: set[Need] = set()
    for path in paths:
        parts = path.split(".")
        if parts[0] != "velocity":
            continue
        if len(parts) == 1 or parts[1] not in DIMENSIONS:
            return EVERY_COUNTER
        counter = _COUNTER.match(parts[2]) if len(parts) == 3 else None
        if counter is None:
            found.update((parts[1], m) for m in METRICS)
        else:
            found.add((parts[1], counter.group(1)))
    return frozenset(found)


@dataclasses.dataclass(frozen=True)
class SignalPlan:
    """The derived facts a decision computes. Every other fact comes from the request as it is."""

    device: bool = False
    email: bool = False
    phone: bool = False
    ip: bool = False
    account_age: bool = False
    velocity: frozenset[Need] = frozenset()
    lists: tuple[tuple[str, str], ...] = ()  # (field, list name) of every list check

    @classmethod
    def reading(cls, paths: Iterable[str], lists: Iterable[tuple[str, str]] = ()) -> SignalPlan:
        """What to compute for conditions that read these field paths (`email.domain`; a root alone,
        `email`, is read whole; `*` reads everything) and check these lists. A list check reads its field."""
        refs = tuple(sorted(set(lists)))
        read = set(paths) | {field for field, _ in refs}
        if "*" in read:
            return cls.everything(refs)

        def reads(path: str) -> bool:
            # The path itself, a member below it, or a value above it that holds it.
            return any(p == path or p.startswith(path + ".") or path.startswith(p + ".") for p in read)

        return cls(
            device=reads("device"),
            email=reads("email"),
            phone=reads("phone"),
            ip=reads("ip"),
            account_age=reads("account.ageDays"),
            velocity=needed_for(p for p in read if p == "velocity" or p.startswith("velocity.")),
            lists=refs,
        )

    @classmethod
    def everything(cls, lists: Iterable[tuple[str, str]] = ()) -> SignalPlan:
        # Every flag by name, so that a signal added later is in the plain path without another edit.
        flags = {f.name: True for f in dataclasses.fields(cls) if f.type in ("bool", bool)}
        return cls(**flags, velocity=EVERY_COUNTER, lists=tuple(sorted(set(lists))))
