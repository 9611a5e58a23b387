"""Retries, Retry-After, 410, redirects, outages, the 5-day rule, ordering, replay and a SIGKILL'd worker,
all against real HTTP receivers on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from tests.conftest import TEST_SECRET
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import (
    Hooks,
    deliver,
    deliverer,
    deliveries,
    endpoint_of,
    fresh_tokens,
)
from tests.servers import HttpReceiver, Recorded


def login(http: TestClient, tenant: Tenant) -> dict[str, Any]:
    """A login without a strategy: one Decision.Created event, no session."""
    r = http.post("/login/v2", json=login_body(), headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


def test_500_twice_then_200_is_delivered_on_the_third_try_signed_afresh(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    kount_hooks.script = [(500, {}), (500, {})]
    login(http, tenant)
    deliver(registry)
    [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
    assert (d["status"], d["lastStatusCode"], d["attemptCount"]) == ("PENDING", 500, 1)
    first_try = d["attempts"][0]
    assert first_try["result"] == "retry" and first_try["error"] == "HTTP 500: scripted failure"
    assert isinstance(first_try["latencyMs"], float)
    wait = (parse(first_try["nextAttemptAt"]) - parse(first_try["at"])).total_seconds()
    assert 1.0 <= wait <= 1.2  # the (test) schedule's first delay plus up to 20 % jitter
    deliver(registry)  # not due yet
    assert len(kount_hooks.receiver.requests) == 1
    for _ in range(2):
        clock.advance(2)
        deliver(registry)
    [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
    assert d["status"] == "DELIVERED" and d["deliveredAt"]
    assert [(a["statusCode"], a["result"]) for a in d["attempts"]] == [
        (500, "retry"),
        (500, "retry"),
        (200, "delivered"),
    ]
    assert [a["attempt"] for a in d["attempts"]] == [1, 2, 3]
    assert d["attempts"][-1]["nextAttemptAt"] is None and d["nextAttemptAt"] is None
    requests = kount_hooks.receiver.requests
    assert len(requests) == 3 and len(kount_hooks.accepted) == 1
    assert len({r.body for r in requests}) == 1  # the same bytes, the same event id, every try
    # ...but a fresh timestamp and signature on every try.
    assert len({r.headers["x-event-timestamp"] for r in requests}) == 3
    assert len({r.headers["x-event-signature"] for r in requests}) == 3
    assert not kount_hooks.bad_signatures


def test_retry_after_is_honoured(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    kount_hooks.script = [(503, {"Retry-After": "120"})]
    login(http, tenant)
    deliver(registry)
    [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
    assert (parse(d["nextAttemptAt"]) - clock.now()).total_seconds() == 120
    clock.advance(60)
    deliver(registry)
    assert len(kount_hooks.receiver.requests) == 1
    clock.advance(61)
    deliver(registry)
    assert len(kount_hooks.accepted) == 1
    assert deliveries(http, tenant, kount_hooks.endpoint["id"])[0]["status"] == "DELIVERED"


def test_410_disables_the_endpoint_and_enable_plus_replay_recovers(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    eid = kount_hooks.endpoint["id"]
    kount_hooks.script = [(410, {})]
    login(http, tenant)
    deliver(registry)
    endpoint = endpoint_of(http, tenant, eid)
    assert (endpoint["enabled"], endpoint["disabledReason"]) == (False, "GONE")
    assert endpoint["disabledAt"]
    [d] = deliveries(http, tenant, eid)
    assert (d["status"], d["lastStatusCode"], d["attempts"][0]["result"]) == ("FAILED", 410, "failed")

    login(http, tenant)  # a disabled endpoint gets nothing new
    deliver(registry)
    assert len(deliveries(http, tenant, eid)) == 1 and len(kount_hooks.receiver.requests) == 1
    r = http.post(f"/manage/v1/webhooks/{eid}/replay", json={"failed": True}, headers=tenant.admin_headers)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"

    r = http.post(f"/manage/v1/webhooks/{eid}/enable", headers=tenant.admin_headers)
    assert r.status_code == 200 and r.json()["enabled"] is True and r.json()["disabledReason"] is None
    r = http.post(f"/manage/v1/webhooks/{eid}/replay", json={"failed": True}, headers=tenant.admin_headers)
    assert (r.status_code, r.json()) == (202, {"replayed": 1})
    deliver(registry)
    assert [p["id"] for p in kount_hooks.accepted] == [d["eventId"]]
    assert deliveries(http, tenant, eid)[0]["status"] == "DELIVERED"


def test_a_redirect_is_a_failure_and_is_not_followed(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    elsewhere = HttpReceiver().start()
    try:
        kount_hooks.script = [
            (302, {"Location": f"{elsewhere.url}/stolen"}),
            (307, {"Location": elsewhere.url}),
        ]
        login(http, tenant)
        deliver(registry)
        assert elsewhere.requests == []
        [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
        assert (d["status"], d["lastStatusCode"], d["attempts"][0]["result"]) == ("PENDING", 302, "retry")
    finally:
        elsewhere.stop()


def test_five_days_of_failure_disable_the_endpoint(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    kount_hooks.receiver.responder = lambda rec: (500, {}, b"down")
    eid = kount_hooks.endpoint["id"]
    start = clock.now()
    login(http, tenant)
    deliver(registry)
    endpoint = endpoint_of(http, tenant, eid)
    assert endpoint["enabled"] and parse(endpoint["failingSince"]) == start
    clock.advance(days=4)
    fresh_tokens(http, tenant)
    deliver(registry)
    assert endpoint_of(http, tenant, eid)["enabled"]
    login(http, tenant)  # still failing a day later
    clock.advance(days=1, seconds=1)
    fresh_tokens(http, tenant)
    deliver(registry)
    endpoint = endpoint_of(http, tenant, eid)
    assert (endpoint["enabled"], endpoint["disabledReason"]) == (False, "FAILING")
    assert {d["status"] for d in deliveries(http, tenant, eid)} == {"FAILED"}
    metrics = http.get("/metrics").text
    assert 'passgate_webhook_endpoints_disabled_total{reason="FAILING"}' in metrics


def test_replay_one_event_by_id(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    eid = kount_hooks.endpoint["id"]
    login(http, tenant)
    deliver(registry)
    [d] = deliveries(http, tenant, eid)
    url = f"/manage/v1/webhooks/{eid}/replay"
    r = http.post(url, json={"eventId": d["eventId"]}, headers=tenant.admin_headers)
    assert (r.status_code, r.json()) == (202, {"replayed": 1})
    deliver(registry)
    assert [p["id"] for p in kount_hooks.accepted] == [d["eventId"], d["eventId"]]
    assert deliveries(http, tenant, eid, eventId=d["eventId"])[0]["attemptCount"] == 2

    r = http.post(url, json={"eventId": "no-such-event"}, headers=tenant.admin_headers)
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "eventId"
    for bad in ({}, {"eventId": d["eventId"], "failed": True}, {"failed": False}, {"failed": "yes"}):
        r = http.post(url, json=bad, headers=tenant.admin_headers)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["field"] in ("eventId", "failed")


def test_a_receiver_slower_than_the_timeout_is_a_failed_try(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    release = threading.Event()

    def slow(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        release.wait(3)
        return 200, {}, b"too late"

    kount_hooks.receiver.responder = slow
    try:
        login(http, tenant)
        started = time.monotonic()
        deliver(registry)
        assert time.monotonic() - started < 3
    finally:
        release.set()
    [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
    assert d["status"] == "PENDING" and d["attempts"][0]["error"].startswith("timed out after")
    assert d["attempts"][0]["statusCode"] is None


def test_manual_disable_gives_up_waiting_deliveries(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    kount_hooks.receiver.responder = lambda rec: (503, {}, b"")
    eid = kount_hooks.endpoint["id"]
    login(http, tenant)
    login(http, tenant)
    deliver(registry)
    assert {d["status"] for d in deliveries(http, tenant, eid)} == {"PENDING"}
    r = http.post(f"/manage/v1/webhooks/{eid}/disable", headers=tenant.admin_headers)
    assert (r.json()["enabled"], r.json()["disabledReason"]) == (False, "MANUAL")
    log = deliveries(http, tenant, eid)
    assert {(d["status"], d["lastError"]) for d in log} == {("FAILED", "endpoint disabled (MANUAL)")}


def _worker(database_url: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PASSGATE_DATABASE_URL": database_url,
        "PASSGATE_SECRET_KEYS": TEST_SECRET,
        "PASSGATE_DATA_DIR": str(tmp),
        "PASSGATE_WEBHOOK_ALLOW_PRIVATE": "true",
        "PASSGATE_WEBHOOK_LOCK_SECONDS": "2",
        "PASSGATE_WEBHOOK_TIMEOUT_SECONDS": "20",
        "PASSGATE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "worker", "--poll", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_worker_killed_mid_delivery_loses_nothing(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    kount_hooks: Hooks,
    database_url: str,
    tmp_path: Path,
) -> None:
    stalled = threading.Event()
    release = threading.Event()
    verify = kount_hooks.respond

    def stall_first(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        if not stalled.is_set():
            stalled.set()
            release.wait(30)  # hold the first worker mid-request until it is killed
            return 503, {}, b"stalled"
        return verify(rec)

    kount_hooks.receiver.responder = stall_first
    eid = kount_hooks.endpoint["id"]
    login(http, tenant)
    first = _worker(database_url, tmp_path)
    try:
        assert stalled.wait(20), "the worker never reached the receiver"
        first.send_signal(signal.SIGKILL)  # mid-delivery: the row is claimed, the request in flight
        first.wait(10)
    finally:
        release.set()
        if first.poll() is None:
            first.kill()
            first.wait(5)
    [d] = deliveries(http, tenant, eid)
    assert d["status"] == "SENDING" and kount_hooks.accepted == []
    second = _worker(database_url, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not kount_hooks.accepted and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        _stop(second)
    assert len(kount_hooks.accepted) == 1 and kount_hooks.accepted[0]["id"] == d["eventId"]
    [d] = deliveries(http, tenant, eid)
    assert (d["status"], d["attemptCount"]) == ("DELIVERED", 2)
    assert [a["result"] for a in d["attempts"]] == ["retry", "delivered"]
    assert "worker stopped" in d["attempts"][0]["error"]
    assert kount_hooks.receiver.requests[0].json()["id"] == d["eventId"]


def test_deliveries_are_counted_per_endpoint_in_metrics(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    login(http, tenant)
    deliver(registry)
    text = http.get("/metrics").text
    eid = kount_hooks.endpoint["id"]
    line = f'passgate_webhook_endpoint_deliveries_total{{client="{tenant.client_id}",endpoint="{eid}",result="delivered"}} 1.0'
    assert line in text
    assert 'passgate_webhook_deliveries_total{result="delivered"}' in text
    assert (
        f'passgate_webhook_delivery_seconds_count{{client="{tenant.client_id}",endpoint="{eid}"}} 1.0' in text
    )
    assert 'passgate_webhook_events_total{event_type="Decision.Created"}' in text


def test_times_in_the_log_come_from_the_injected_clock(
    http: TestClient, tenant: Tenant, registry: Registry, clock: FrozenClock, kount_hooks: Hooks
) -> None:
    clock.advance(timedelta(hours=3).total_seconds())
    fresh_tokens(http, tenant)
    login(http, tenant)
    deliver(registry)
    [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
    assert parse(d["createdAt"]) == parse(d["attempts"][0]["at"]) == clock.now()
    assert kount_hooks.receiver.requests[0].headers["x-event-timestamp"] == clock.now().strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_a_stopping_worker_hands_its_rows_back_at_once(
    http: TestClient, tenant: Tenant, registry: Registry, kount_hooks: Hooks
) -> None:
    release = threading.Event()
    kount_hooks.receiver.responder = lambda rec: (release.wait(5), (200, {}, b""))[1]
    login(http, tenant)

    async def stop_mid_try() -> None:
        await deliverer(registry).run_once()
        for _ in range(100):  # until the request is at the receiver
            if kount_hooks.receiver.requests:
                break
            await asyncio.sleep(0.02)
        # Returning ends the loop: asyncio.run cancels the try, as a stopping worker thread does.

    try:
        asyncio.run(stop_mid_try())
    finally:
        release.set()
    [d] = deliveries(http, tenant, kount_hooks.endpoint["id"])
    assert d["status"] == "PENDING" and d["nextAttemptAt"]
    assert d["attempts"][0]["error"] == "no outcome: the worker stopped mid-delivery"
    deliver(registry)  # due at once, not after the 60 s lock
    assert deliveries(http, tenant, kount_hooks.endpoint["id"])[0]["status"] == "DELIVERED"
