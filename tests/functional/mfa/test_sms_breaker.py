"""A simulated SMS pumping wave against the breaker (docs/mfa.md, "SMS pumping breaker"): many SMS
challenges to one country (+44, none verified) beside normal traffic to another (+1, each verified), over
HTTP, with texts going to a real HTTP SMS gateway and breaker events to a real webhook receiver.

In enforce mode the pumped country is refused with RATE_LIMITED / COUNTRY_BREAKER_OPEN while the other is
still sent; after the cool-down a probe goes, and its verification closes the breaker. In monitor mode
nothing is refused, and the change is announced all the same: webhook event, metric, console banner.
Each runs on SQLite and PostgreSQL, and with the breaker's counts in memory and (when
PASSGATE_TEST_REDIS_URL is set) in Redis. Phone numbers are new each run: the send limits per number
and prefix live in Redis, which outlives a run.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.mfa.breaker_redis import RedisBreakerStore
from tests.factories import Tenant
from tests.functional.console.conftest import people  # noqa: F401  (the console's signed-in people)
from tests.functional.mfa.conftest import challenge, drain, session_of
from tests.functional.webhooks.conftest import WEBHOOK_SETTINGS, Hooks, create_endpoint, deliver
from tests.servers import HttpReceiver

REDIS_URL = os.environ.get("PASSGATE_TEST_REDIS_URL")
CODE = re.compile(r"#(\d{6})$")
BREAKER = {"windowSeconds": 600, "minSends": 6, "minConversion": 0.5, "coolDownSeconds": 120, "probeSends": 2}
EVENT = "SmsBreaker.StateChanged"


@pytest.fixture(params=["memory"] + (["redis"] if REDIS_URL else []))
def breaker_store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings, breaker_store: str) -> Settings:
    # Email through the dev inbox (the console's sign-in link is read there); texts through the gateway.
    update: dict[str, Any] = {**WEBHOOK_SETTINGS, "smtp_url": None}
    if breaker_store == "redis":
        update["redis_url"] = REDIS_URL
    return settings.model_copy(update=update)


@pytest.fixture
def hooks(http: TestClient, tenant: Tenant) -> Iterator[Hooks]:
    h = Hooks(HttpReceiver().start(), "standard-webhooks")
    h.endpoint = create_endpoint(http, tenant, h.url, "standard-webhooks", events=[EVENT])
    h.secret = h.endpoint["secret"]
    yield h
    h.receiver.stop()


class Numbers:
    """Phone numbers of this run: +44 7400 (GB mobiles) and +1 201 (US), a random block each."""

    def __init__(self) -> None:
        self.gb_block = secrets.randbelow(1000)
        self.us_block = 200 + secrets.randbelow(800)

    def gb(self, i: int) -> str:
        return f"+44740{self.gb_block:03d}{i:04d}"

    def us(self, i: int) -> str:
        return f"+1201{self.us_block:03d}{i:04d}"


def configure(http: TestClient, tenant: Tenant, mode: str) -> None:
    body = {"smsAllowedCountries": ["US", "GB"], "smsBreaker": {"mode": mode, **BREAKER}}
    r = http.put("/manage/v1/settings", json=body, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["smsBreaker"] == {"mode": mode, **BREAKER, "probeSends": 2}


def texts_to(gateway: HttpReceiver, number: str) -> list[dict[str, Any]]:
    return [r.json() for r in gateway.requests if r.path == "/sms" and r.json()["to"] == number]


def verify_by_text(http: TestClient, tenant: Tenant, gateway: HttpReceiver, number: str, sid: str) -> None:
    [sms] = texts_to(gateway, number)
    found = CODE.search(sms["body"])
    assert found, sms["body"]
    r = http.post(f"/mfa/v2/{sid}/verify", json={"code": found.group(1)}, headers=tenant.headers)
    assert r.json() == {"status": "VERIFIED"}, r.text


def wave(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver, numbers: Numbers, count: int
) -> list[dict[str, Any]]:
    """`count` rounds of one +44 challenge (never verified) and one +1 challenge (verified at once)."""
    pumped = []
    for i in range(count):
        pumped.append(challenge(http, tenant, "sms-code", person={"phoneNumber": numbers.gb(i)})["mfa"])
        us = challenge(http, tenant, "sms-code", person={"phoneNumber": numbers.us(i)})["mfa"]
        assert us.get("error") is None, us
        drain(registry)
        verify_by_text(http, tenant, gateway, numbers.us(i), us["ID"])
    return pumped


def metric(http: TestClient, name: str, **labels: str) -> float:
    text = http.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def breaker_events(hooks: Hooks, registry: Registry) -> list[dict[str, Any]]:
    deliver(registry)
    assert not hooks.bad_signatures
    return [e for e in hooks.accepted if e["eventType"] == EVENT]


@pytest.fixture(autouse=True)
def _forget_redis_breakers(breaker_store: str) -> Iterator[None]:
    yield
    if breaker_store == "redis" and REDIS_URL:
        RedisBreakerStore(REDIS_URL).clear()  # keys are per client; this only keeps the database tidy


def test_enforce_refuses_the_pumped_country_and_keeps_sending_to_the_other(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    gateway: HttpReceiver,
    hooks: Hooks,
    clock: FrozenClock,
    people: Any,  # noqa: F811
) -> None:
    configure(http, tenant, "enforce")
    numbers = Numbers()
    pumped = wave(http, tenant, registry, gateway, numbers, 9)

    # Six sends with none verified: the seventh is judged on them, opens the breaker and is refused.
    for i, m in enumerate(pumped[:6]):
        assert m.get("error") is None and m["status"] == "UNKNOWN", (i, m)
        assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"
        assert len(texts_to(gateway, numbers.gb(i))) == 1
    for i, m in enumerate(pumped[6:], start=6):
        assert (m["error"], m["errorReason"], m["channel"]) == ("RATE_LIMITED", "COUNTRY_BREAKER_OPEN", "SMS")
        assert m["ID"] is None and m["status"] is None
        assert texts_to(gateway, numbers.gb(i)) == []  # nothing left for the refused
    # The other country was sent and verified throughout (wave() checked each).
    assert all(len(texts_to(gateway, numbers.us(i))) == 1 for i in range(9))

    [opened] = breaker_events(hooks, registry)
    assert {
        k: opened[k] for k in ("clientId", "country", "fromState", "toState", "mode", "sent", "verified")
    } == {
        "clientId": tenant.client_id,
        "country": "GB",
        "fromState": "closed",
        "toState": "open",
        "mode": "enforce",
        "sent": 6,
        "verified": 0,
    }
    assert opened["conversion"] == 0.0 and opened["windowSeconds"] == 600 and opened["probeAt"]
    assert (
        metric(http, "passgate_sms_breaker_transitions_total", country="GB", mode="enforce", state="open")
        == 1
    )
    assert metric(http, "passgate_sms_breaker_refusals_total", country="GB") == 3
    assert (
        metric(http, "passgate_sms_breaker_transitions_total", country="US", mode="enforce", state="open")
        == 0
    )

    owner = people("owner")
    banner = owner.get("/console/overview").text
    assert 'id="sms-breakers"' in banner and "<strong>GB</strong>: open" in banner
    assert "COUNTRY_BREAKER_OPEN" in banner and "0 of 6 SMS verified" in banner
    history = owner.get("/console/settings").text
    assert "closed → open" in history and 'value="enforce" selected' in history

    # After the cool-down the breaker lets a probe through; verified, it closes the breaker.
    clock.advance(BREAKER["coolDownSeconds"] + 1)
    probe = challenge(http, tenant, "sms-code", person={"phoneNumber": numbers.gb(20)})["mfa"]
    assert probe.get("error") is None, probe
    drain(registry)
    verify_by_text(http, tenant, gateway, numbers.gb(20), probe["ID"])
    after = challenge(http, tenant, "sms-code", person={"phoneNumber": numbers.gb(21)})["mfa"]
    assert after.get("error") is None, after
    events = sorted(breaker_events(hooks, registry), key=lambda e: e["sequence"])  # delivered in any order
    moves = [(e["fromState"], e["toState"]) for e in events]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert 'id="sms-breakers"' not in owner.get("/console/overview").text


def test_monitor_refuses_nothing_and_announces_the_collapse(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    gateway: HttpReceiver,
    hooks: Hooks,
    people: Any,  # noqa: F811
) -> None:
    configure(http, tenant, "monitor")
    numbers = Numbers()
    pumped = wave(http, tenant, registry, gateway, numbers, 9)

    for i, m in enumerate(pumped):
        assert m.get("error") is None, (i, m)
        assert len(texts_to(gateway, numbers.gb(i))) == 1  # every pumped text still went out
    [opened] = breaker_events(hooks, registry)
    assert (opened["country"], opened["toState"], opened["mode"], opened["sent"]) == (
        "GB",
        "open",
        "monitor",
        6,
    )
    assert (
        metric(http, "passgate_sms_breaker_transitions_total", country="GB", mode="monitor", state="open")
        == 1
    )
    assert metric(http, "passgate_sms_breaker_refusals_total", country="GB") == 0

    banner = people("owner").get("/console/overview").text
    assert "<strong>GB</strong>: open" in banner and "Monitor mode: nothing is refused" in banner


def test_settings_refuse_a_bad_breaker_value_and_write_nothing(http: TestClient, tenant: Tenant) -> None:
    before = http.get("/manage/v1/settings", headers=tenant.admin_headers).json()
    assert before["smsBreaker"]["mode"] == "monitor"  # the default
    r = http.put(
        "/manage/v1/settings",
        json={"maxSends": 5, "smsBreaker": {"mode": "enforce", "minConversion": 2}},
        headers=tenant.admin_headers,
    )
    assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/problem+json")
    assert any("smsBreaker.minConversion" in e["field"] for e in r.json()["errors"]), r.json()
    assert http.get("/manage/v1/settings", headers=tenant.admin_headers).json() == before
