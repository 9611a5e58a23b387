"""A verification's status changes reach the business's webhooks as `Verification.StatusUpdate` events with
`"source": "verify"`, signed as every event is."""

from __future__ import annotations

from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from tests.factories import Tenant
from tests.functional.mfa.conftest import drain
from tests.functional.verify.conftest import check_to, code_in_sms, sms_to, started
from tests.functional.webhooks.conftest import Hooks, create_endpoint, deliver, kount_valid, public_keys
from tests.servers import HttpReceiver


def test_status_changes_reach_a_signed_webhook(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    hooks = Hooks(HttpReceiver().start(), "kount-rsa-pss")
    try:
        hooks.endpoint = create_endpoint(
            http, tenant, hooks.url, "kount-rsa-pss", events=["Verification.StatusUpdate"]
        )
        hooks.public_keys = public_keys(http, tenant)
        number = "+12015550179"
        v = started(http, tenant, to=number, channel="sms-code", purpose="signup")
        started(http, tenant, status=200, to=number, channel="sms-code", purpose="signup")  # no event
        drain(registry)
        assert (
            check_to(http, tenant, number, code_in_sms(sms_to(gateway, number)[-1]["body"])).status_code
            == 200
        )
        deliver(registry)
        assert not hooks.bad_signatures
        events = [e for e in hooks.accepted if e["mfaId"] == v["id"]]
        assert [e["mfaStatus"] for e in events] == ["UNKNOWN", "MESSAGE_SENT", "VERIFIED"]
        assert {(e["eventType"], e["source"], e["channel"]) for e in events} == {
            ("Verification.StatusUpdate", "verify", "SMS")
        }
        assert [e["sequence"] for e in events] == [1, 2, 3]
        rec = next(r for r in hooks.receiver.requests if b"VERIFIED" in r.body)
        assert kount_valid(hooks.public_keys, rec.headers, rec.body)
    finally:
        hooks.receiver.stop()
