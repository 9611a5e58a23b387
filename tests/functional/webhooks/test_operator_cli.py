"""`passgate webhooks deliveries` and `passgate webhooks replay` against a real receiver on loopback."""

from __future__ import annotations

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from tests.cli import passgate, passgate_json
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import Hooks, deliver, deliveries


def test_failed_deliveries_are_listed_and_replayed(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    clock: FrozenClock,
    settings: Settings,
    kount_hooks: Hooks,
) -> None:
    eid = kount_hooks.endpoint["id"]
    kount_hooks.script = [(410, {})]  # gone: the delivery fails and the endpoint is disabled
    assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200
    deliver(registry)
    [failed] = passgate_json(
        settings, "webhooks", "deliveries", "--client", tenant.client_id, "--status", "failed"
    )["items"]
    assert (failed["endpointId"], failed["status"], failed["lastStatusCode"]) == (eid, "FAILED", 410)
    assert failed["eventType"] == "Decision.Created" and failed["attempts"][0]["result"] == "failed"
    table = passgate(settings, "webhooks", "deliveries", "--client", tenant.client_id, "--endpoint", eid)
    assert table.returncode == 0 and failed["id"] in table.stdout and "FAILED" in table.stdout

    refused = passgate(settings, "webhooks", "replay", "--client", tenant.client_id, "--endpoint", eid)
    assert (
        refused.returncode == 1
        and refused.stderr == f"passgate: endpoint {eid} is disabled; enable it first\n"
    )
    assert http.post(f"/manage/v1/webhooks/{eid}/enable", headers=tenant.admin_headers).status_code == 200

    replayed = passgate_json(settings, "webhooks", "replay", "--client", tenant.client_id, "--endpoint", eid)
    assert replayed == {"replayed": 1, "endpointId": eid, "clientId": tenant.client_id}
    clock.advance(300)  # the command line queued it for its own (real) now; this worker's clock is frozen
    deliver(registry)
    assert [p["id"] for p in kount_hooks.accepted] == [failed["eventId"]]
    assert deliveries(http, tenant, eid)[0]["status"] == "DELIVERED"

    # One event again, whatever its state.
    one = passgate_json(
        settings,
        "webhooks",
        "replay",
        "--client",
        tenant.client_id,
        "--endpoint",
        eid,
        "--event",
        failed["eventId"],
    )
    assert one["replayed"] == 1
    clock.advance(300)
    deliver(registry)
    assert [p["id"] for p in kount_hooks.accepted] == [failed["eventId"]] * 2

    audit = http.get("/manage/v1/audit-log", headers=tenant.admin_headers).json()["items"]
    replays = [e for e in audit if e["action"] == "webhook.replayed" and e["actor"].startswith("cli:")]
    assert [e["details"]["count"] for e in replays] == [1, 1] and replays[0]["target"] == eid

    unknown = passgate(settings, "webhooks", "replay", "--client", tenant.client_id, "--endpoint", "nope")
    assert unknown.returncode == 1 and "no webhook endpoint 'nope'" in unknown.stderr
    no_event = passgate(
        settings, "webhooks", "replay", "--client", tenant.client_id, "--endpoint", eid, "--event", "0" * 36
    )
    assert no_event.returncode == 1 and "no event" in no_event.stderr
    other = passgate(settings, "webhooks", "deliveries", "--client", tenant.client_id, "--endpoint", "nope")
    assert other.returncode == 1 and "no webhook endpoint 'nope'" in other.stderr
