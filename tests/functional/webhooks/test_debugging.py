"""Debugging an endpoint: a test event, one delivery with every try, paging, health, and sending again what an
outage held back (failed deliveries and those waiting for a later retry), all against real HTTP receivers."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.webhooks.events import iso
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import Hooks, deliver, deliveries, fresh_tokens


def login(http: TestClient, tenant: Tenant) -> None:
    r = http.post("/login/v2", json=login_body(), headers=tenant.headers)
    assert r.status_code == 200, r.text


def test_a_test_event_reaches_the_endpoint_signed_whatever_it_subscribes_to(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    eid = kount_hooks.endpoint["id"]
    r = http.patch(
        f"/manage/v1/webhooks/{eid}", json={"events": ["MFA.StatusUpdate"]}, headers=tenant.admin_headers
    )
    assert r.status_code == 200, r.text
    r = http.post(f"/manage/v1/webhooks/{eid}/test", headers=tenant.admin_headers)
    assert r.status_code == 202, r.text
    event_id = r.json()["eventId"]
    deliver(registry)
    # Checked by the receiver against the published key, as any event.
    assert [(p["id"], p["eventType"], p["test"], p["endpointId"]) for p in kount_hooks.accepted] == [
        (event_id, "Webhook.Test", True, eid)
    ]
    [d] = deliveries(http, tenant, eid, eventId=event_id)
    assert d["status"] == "DELIVERED" and d["eventType"] == "Webhook.Test"
    r = http.get(f"/manage/v1/webhooks/{eid}/deliveries/{d['id']}", headers=tenant.admin_headers)
    assert r.status_code == 200 and r.json()["payload"]["id"] == event_id
    assert [a["result"] for a in r.json()["attempts"]] == ["delivered"]


def test_one_delivery_of_another_endpoint_or_client_is_not_found(
    http: TestClient, tenant: Tenant, other_tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    eid = kount_hooks.endpoint["id"]
    login(http, tenant)
    [d] = deliveries(http, tenant, eid)
    r = http.get(f"/manage/v1/webhooks/{eid}/deliveries/{d['id']}", headers=other_tenant.admin_headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    missing = "00000000-0000-4000-8000-000000000000"
    r = http.get(f"/manage/v1/webhooks/{eid}/deliveries/{missing}", headers=tenant.admin_headers)
    assert r.status_code == 404
    r = http.post(f"/manage/v1/webhooks/{eid}/test", headers=other_tenant.admin_headers)
    assert r.status_code == 404


def test_replay_failed_also_sends_what_waits_for_a_later_retry(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    """After an outage: one delivery gave up (FAILED), two wait for their next try (PENDING, due later).
    "Send every failed or waiting delivery now" sends all three at once."""
    eid = kount_hooks.endpoint["id"]
    kount_hooks.script = [(503, {})] * 3
    for _ in range(3):
        login(http, tenant)
    deliver(registry)
    items = deliveries(http, tenant, eid)
    assert [d["status"] for d in items] == ["PENDING"] * 3 and all(d["nextAttemptAt"] for d in items)
    r = http.post(f"/manage/v1/webhooks/{eid}/disable", headers=tenant.admin_headers)
    assert r.status_code == 200
    r = http.post(f"/manage/v1/webhooks/{eid}/enable", headers=tenant.admin_headers)
    assert r.status_code == 200
    r = http.post(f"/manage/v1/webhooks/{eid}/replay", json={"failed": True}, headers=tenant.admin_headers)
    assert (r.status_code, r.json()) == (202, {"replayed": 3}), r.text
    deliver(registry)  # the clock has not moved: only a replay makes them due
    assert len(kount_hooks.accepted) == 3
    assert {d["status"] for d in deliveries(http, tenant, eid)} == {"DELIVERED"}
    # Nothing failed or waiting any more.
    r = http.post(f"/manage/v1/webhooks/{eid}/replay", json={"failed": True}, headers=tenant.admin_headers)
    assert r.json() == {"replayed": 0}


def test_replay_since_sends_delivered_events_of_that_period_again(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    eid = kount_hooks.endpoint["id"]
    login(http, tenant)
    deliver(registry)
    clock.advance(minutes=10)
    fresh_tokens(http, tenant)
    since = clock.now()
    login(http, tenant)
    login(http, tenant)
    deliver(registry)
    assert len(kount_hooks.accepted) == 3
    r = http.post(
        f"/manage/v1/webhooks/{eid}/replay", json={"since": iso(since)}, headers=tenant.admin_headers
    )
    assert (r.status_code, r.json()) == (202, {"replayed": 2}), r.text
    deliver(registry)
    assert len(kount_hooks.accepted) == 5
    newest = {p["id"] for p in kount_hooks.accepted[1:3]}
    assert {p["id"] for p in kount_hooks.accepted[3:]} == newest
    # One of eventId / failed / since, and a time with its zone.
    for body, field in (
        ({}, "eventId"),
        ({"failed": True, "since": iso(since)}, "since"),
        ({"since": "2026-12-07T06:00:00"}, "since"),
    ):
        r = http.post(f"/manage/v1/webhooks/{eid}/replay", json=body, headers=tenant.admin_headers)
        assert r.status_code in (400, 422) and field in r.text, (body, r.text)


def test_deliveries_page_with_a_stable_cursor_and_filter_by_event(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    from passgate.db import transaction
    from passgate.paging import KeysetCursor

    eid = kount_hooks.endpoint["id"]
    for _ in range(5):
        login(http, tenant)
        clock.advance(1)
    http.post(f"/manage/v1/webhooks/{eid}/test", headers=tenant.admin_headers)
    service = registry.webhooks
    seen: list[str] = []
    cursor = None
    with transaction(registry.sessions) as session:
        while True:
            rows = service.deliveries(session, tenant.client_id, eid, limit=2, before=cursor)
            if not rows:
                break
            seen += [d.id for d, _, _ in rows]
            cursor = KeysetCursor.parse(str(KeysetCursor(rows[-1][0].created_at, rows[-1][0].id)))
            assert cursor is not None
        tests = service.deliveries(session, tenant.client_id, eid, event_type="Webhook.Test")
    everything = [d["id"] for d in deliveries(http, tenant, eid, limit=50)]
    assert seen == everything and len(seen) == 6 and len(set(seen)) == 6
    assert [d.id for d, _, _ in tests] == [everything[0]]
    assert KeysetCursor.parse("nonsense") is None and KeysetCursor.parse("2026-12-07T06:00:00_x" * 2) is None


def test_health_counts_tries_latency_and_the_last_error(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    from passgate.db import transaction

    eid = kount_hooks.endpoint["id"]
    kount_hooks.script = [(500, {})]
    login(http, tenant)
    login(http, tenant)
    deliver(registry)
    with transaction(registry.sessions) as session:
        health = registry.webhooks.health(session, tenant.client_id, eid, timedelta(hours=24))
    assert (health.tries, health.delivered, health.waiting) == (2, 1, 1)
    assert health.success_rate == 0.5
    assert health.p50_ms is not None and health.p99_ms is not None and health.p50_ms <= health.p99_ms
    assert health.last_error is not None and health.last_error.startswith("HTTP 500")
