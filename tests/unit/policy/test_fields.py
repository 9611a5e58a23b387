from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import get_args

import pytest

from passgate.policy.fields import (
    BASE_FIELDS,
    DIMENSIONS,
    EVERY_COUNTER,
    FIELDS,
    METRICS,
    SIGNAL_FIELDS,
    VELOCITY_FIELDS,
    WINDOWS,
    FieldType,
    SignalPlan,
    dimension_keys,
    lookup,
    needed_for,
)

PURE = ("passgate.policy.fields", "passgate.policy.conditions", "passgate.policy.engine")
# What the pure modules may load of Passgate: themselves, their packages and the document schema.
PURE_DEPENDENCIES = {"passgate", "passgate.policy", "passgate.policy.schemas", *PURE}


def test_the_pure_modules_load_no_io_module_and_nothing_that_imports_them_back() -> None:
    # A fresh interpreter: this one has long loaded SQLAlchemy for the other tests.
    script = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    assert {"sqlalchemy", "httpx", "redis"} & loaded == set()
    # signals and velocity do I/O and import the engine's catalogue: loading them from here would be a cycle.
    assert {m for m in loaded if m.startswith("passgate")} == PURE_DEPENDENCIES


def test_the_catalogue_is_the_base_signal_and_velocity_fields() -> None:
    assert len(FIELDS) == len(BASE_FIELDS) + len(SIGNAL_FIELDS) + len(VELOCITY_FIELDS)
    assert FIELDS == {**BASE_FIELDS, **SIGNAL_FIELDS, **VELOCITY_FIELDS}
    assert set(FIELDS.values()) <= set(get_args(FieldType))
    assert len(VELOCITY_FIELDS) == len(DIMENSIONS) * len(METRICS) * len(WINDOWS) == 32
    assert all(ftype == "number" for ftype in VELOCITY_FIELDS.values())
    # Every velocity field names exactly one counter, and together they name every counter.
    assert {next(iter(needed_for([path]))) for path in VELOCITY_FIELDS} == EVERY_COUNTER
    assert all(len(needed_for([path])) == 1 for path in VELOCITY_FIELDS)


def test_counters_needed_for_the_paths_a_set_reads() -> None:
    paths = ["velocity.account.failedAttempts1h", "velocity.ip.logins24h", "email.domain"]
    assert needed_for(paths) == {("account", "failedAttempts"), ("ip", "logins")}
    # A dimension read whole, or a member that is no counter: every counter of the dimension.
    every_ip = {("ip", m) for m in ("logins", "failedAttempts", "accountOpenings", "challenges")}
    assert needed_for(["velocity.ip"]) == every_ip
    assert needed_for(["velocity.ip.other"]) == every_ip
    # The root read whole, or a member that is no dimension: every counter.
    assert len(needed_for(["velocity"])) == len(needed_for(["velocity.other.x"])) == 16
    assert needed_for(["customFields.velocity"]) == frozenset()


FACTS = {
    "userIp": "203.0.113.7",
    "person": {"name": {"first": "Jo"}, "emailAddress": None},
    "account": "not a map",
    "customFields": {"a.b": 1, "tier": "gold"},
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("userIp", "203.0.113.7"),
        ("person.name.first", "Jo"),
        ("person.name", {"first": "Jo"}),
        ("person.emailAddress", None),
        ("person.phoneNumber", None),  # absent
        ("person.name.first.more", None),  # below a value that is no map
        ("account.id", None),
        ("velocity.ip.logins1h", None),
        ("customFields.tier", "gold"),
        ("customFields.a.b", 1),  # a custom field's key may hold dots
        ("customFields.other", None),
    ],
)
def test_lookup_reads_a_dotted_path(path: str, value: object) -> None:
    assert lookup(FACTS, path) == value


def test_lookup_without_custom_fields() -> None:
    assert lookup({}, "customFields.tier") is None


def test_dimension_keys_are_the_request_keys_it_has() -> None:
    body = {
        "deviceSessionId": "ds1",
        "userIp": "203.0.113.7",
        "person": {"emailAddress": "Jo@Example.com"},
        "account": {"id": "acct-1"},
    }
    assert dimension_keys(body) == {
        "account": "acct-1",
        "ip": "203.0.113.7",
        "device": "ds1",
        "email": "jo@example.com",
    }
    assert dimension_keys({"deviceSessionId": "ds1", "person": {"emailAddress": ""}, "userIp": None}) == {
        "device": "ds1"
    }
    assert dimension_keys({"deviceSessionId": "ds1", "person": None, "account": None}) == {"device": "ds1"}


def test_a_plan_computes_what_the_paths_read() -> None:
    assert SignalPlan.reading([]) == SignalPlan()
    assert SignalPlan.reading(["email.domain", "person.emailAddress"]) == SignalPlan(email=True)
    assert SignalPlan.reading(["account"]) == SignalPlan(account_age=True)  # the account read whole
    assert SignalPlan.reading(["account.id"]) == SignalPlan()
    assert SignalPlan.reading(["velocity.ip.logins1h"]) == SignalPlan(velocity=frozenset({("ip", "logins")}))
    # A list check reads its field.
    assert SignalPlan.reading([], [("ip.country", "c")]) == SignalPlan(ip=True, lists=(("ip.country", "c"),))
    assert SignalPlan.reading(["*"], [("userIp", "l")]) == SignalPlan.everything([("userIp", "l")])


def test_everything_sets_every_flag_and_counter() -> None:
    plan = SignalPlan.everything()
    flags = [f.name for f in dataclasses.fields(SignalPlan) if f.name not in ("velocity", "lists")]
    assert flags and all(getattr(plan, name) is True for name in flags)
    assert plan.velocity == EVERY_COUNTER
