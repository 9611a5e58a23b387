"""The draft tested against recent traffic: real decisions made through the API, a draft that blocks
disposable email addresses, and the test run from the Policies page. The counts, the breakdown and the
examples are the draft's changes against the live version; nothing at all is written."""

from __future__ import annotations

import html
import itertools
import json
import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from passgate.bootstrap import Registry
from passgate.policy import backtest as backtest_svc
from tests.factories import Tenant, login_body, publish

_run = itertools.count(1)
TABLES = (
    "decisions",
    "mfa_sessions",
    "mfa_events",
    "messages",
    "message_attempts",
    "webhook_events",
    "webhook_deliveries",
    "idempotency_records",
    "audit_log",
    "velocity_counters",
)


def live_document() -> dict[str, Any]:
    return {
        "name": "login",
        "segments": [{"name": "default", "mfaEnabled": True, "policies": ["new-device", "block-red"]}],
        "policies": [
            {
                "name": "new-device",
                "outcome": "CHALLENGE",
                "conditions": [{"field": "device.seenForAccount", "operator": "equals", "value": False}],
            },
            {
                "name": "block-red",
                "outcome": "BLOCK",
                "conditions": [{"field": "customFields.riskTier", "operator": "equals", "value": "red"}],
            },
        ],
    }


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every row count of the tables a decision or a challenge writes, and the devices as they are."""
    with engine.connect() as conn:
        out: dict[str, Any] = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
        out["devices"] = sorted(
            tuple(str(v) for v in row)
            for row in conn.execute(
                text(
                    "SELECT client_id, account_id, device_session_id, seen, trust_state, last_seen_at FROM devices"
                )
            )
        )
    return out


def decide(http: TestClient, tenant: Tenant, **overrides: Any) -> str:
    body = login_body(**overrides)
    r = http.post("/login/v2", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return str(body["inquiryId"])


def test_the_draft_tested_against_recent_traffic_changes_what_it_should_and_writes_nothing(
    http: TestClient, tenant: Tenant, registry: Registry, engine: Engine, people: Any
) -> None:
    publish(http, tenant, live_document())
    run = next(_run)
    disposable = [
        decide(http, tenant, person={"emailAddress": f"bt{run}-{i}@mailinator.com"}) for i in range(3)
    ]
    red = decide(
        http, tenant, customFields={"riskTier": "red"}, person={"emailAddress": f"r{run}@mailinator.com"}
    )
    ordinary = [decide(http, tenant, person={"emailAddress": f"ok{run}-{i}@example.com"}) for i in range(4)]

    analyst = people("analyst")
    # The draft adds a policy that blocks disposable addresses (saved through the editor's JSON form).
    draft = live_document()
    draft["policies"].append(
        {
            "name": "block-disposable",
            "outcome": "BLOCK",
            "conditions": [{"field": "email.disposable", "operator": "equals", "value": True}],
        }
    )
    draft["segments"][0]["policies"].append("block-disposable")
    saved = analyst.post("/console/policies/LOGIN/draft-json", {"document": json.dumps(draft)})
    assert saved.status_code == 303, saved.text
    page = analyst.get("/console/policies/LOGIN")
    assert "Test the draft against recent traffic" in page.text
    assert "Block when the email is disposable." in html.unescape(page.text)

    before = snapshot(engine)
    r = analyst.post("/console/policies/LOGIN/backtest", {"count": "200"})
    assert r.status_code == 200, r.text
    body = html.unescape(r.text)
    assert snapshot(engine) == before, "testing the draft wrote something"

    # The three disposable addresses change (the red one was blocked already); the others do not.
    assert re.search(r"3 of 8</strong> decisions would change", body), body[body.find("backtest-result") :][
        :600
    ]
    found = re.search(r'<ul id="backtest-transitions">(.*?)</ul>', body, re.S)
    assert found is not None
    transitions = re.findall(r"<li>(\w+) → (\w+): (\d+)</li>", found.group(1))
    assert sum(int(n) for _, _, n in transitions) == 3
    assert all(new == "BLOCK" and old != "BLOCK" for old, new, _ in transitions)
    examples = re.findall(r'<a href="/console/activity/([0-9a-f-]{36})">([^<]+)</a>', body)
    assert sorted(i for _, i in examples) == sorted(disposable)
    assert red not in body and not any(o in body for o in ordinary)
    assert "draft: new-device, block-disposable" in body or "draft: block-disposable" in body
    # Each example links to its decision's page.
    decision_page = analyst.get(f"/console/activity/{examples[0][0]}")
    assert decision_page.status_code == 200 and examples[0][1] in decision_page.text

    # The newest two only: ordinary requests, nothing changes.
    r = analyst.post("/console/policies/LOGIN/backtest", {"count": "2"})
    assert r.status_code == 200
    assert re.search(r"0 of 2</strong> decisions would change", html.unescape(r.text))
    assert snapshot(engine) == before


def test_the_count_is_checked_and_the_right_is_needed(people: Any, engine: Engine) -> None:
    analyst = people("analyst")
    for bad in ("0", "1001", "ten", "", "-5", "1e3", "²", "９", " 5 5", "9" * 40):
        r = analyst.post("/console/policies/LOGIN/backtest", {"count": bad})
        assert r.status_code == 400, (bad, r.status_code)
        assert 'id="e-count"' in r.text and "Enter a whole number from 1 to 1000." in r.text
        assert 'aria-invalid="true"' in r.text
    viewer = people("viewer")
    assert viewer.post("/console/policies/LOGIN/backtest", {"count": "10"}).status_code == 403
    page = viewer.get("/console/policies/LOGIN")
    assert 'id="backtest-form"' not in page.text
    # No traffic yet: said so, not an error.
    r = analyst.post("/console/policies/NEW_ACCOUNT_OPENING/backtest", {"count": "5"})
    assert r.status_code == 200 and "there is no traffic to test against" in r.text


def test_the_time_budget_bounds_the_run(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    for _ in range(5):
        decide(http, tenant)
    ticks = itertools.count(0)  # each look at the clock is a second later
    result = backtest_svc.backtest(
        registry.sessions,
        registry.policy_cache,
        registry.signals,
        tenant.client_id,
        "LOGIN",
        5,
        registry.clock.now(),
        budget=2.5,
        monotonic=lambda: float(next(ticks)),
    )
    assert (result.found, result.tested, result.out_of_time) == (5, 2, True)
    full = backtest_svc.backtest(
        registry.sessions,
        registry.policy_cache,
        registry.signals,
        tenant.client_id,
        "LOGIN",
        5,
        registry.clock.now(),
    )
    # The draft is the live version here: nothing changes.
    assert (full.found, full.tested, full.out_of_time, full.changed, full.examples) == (5, 5, False, 0, [])
