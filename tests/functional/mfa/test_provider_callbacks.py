"""The generic HTTP SMS gateway's delivery reports (`POST /providers/http/status`) are authenticated:
a Standard Webhooks signature made with PASSGATE_SMS_HTTP_SECRET, no older than 5 minutes, for an SMS
that gateway sent. Passgate signs its own requests to the gateway with the same secret and scheme."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from passgate.bootstrap import Registry, build_registry, build_sms_sender
from passgate.config import InvalidConfiguration, Settings, load_settings
from passgate.main import create_app
from passgate.messaging.models import Message
from passgate.messaging.senders.dev import DevInboxSender
from tests.conftest import TEST_SECRET
from tests.factories import Tenant, login_body, make_tenant
from tests.functional.mfa.conftest import GATEWAY_SECRET, challenge, drain, session_of, timeline
from tests.servers import HttpReceiver, SmtpSink, free_port

PHONE = "+12015550123"
EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "sms_gateway.py"
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def signed(
    body: bytes, secret: str = GATEWAY_SECRET, at: datetime | None = None, msg_id: str = "rep_1"
) -> dict[str, str]:
    """The headers a gateway sends with a report, made with the `standardwebhooks` package."""
    when = at or datetime.now().astimezone()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


def report(http: TestClient, registry: Registry, payload: dict[str, Any], **how: Any) -> Response:
    body = json.dumps(payload).encode()
    at = how.pop("at", registry.clock.now())
    return http.post("/providers/http/status", content=body, headers=signed(body, at=at, **how))


def sms_session(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> tuple[str, str]:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    return m["ID"], str(gateway.requests[-1].json()["messageId"])


def test_an_unsigned_report_is_refused_and_changes_nothing(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    # The review's payload: anyone could mark a session INVALID/UNDELIVERED.
    sid, message_id = sms_session(http, tenant, registry, gateway)
    r = http.post("/providers/http/status", json={"messageId": message_id, "status": "failed"})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    s = session_of(http, tenant, sid)
    assert (s["status"], s["deliveryStatus"]) == ("MESSAGE_SENT", "SENT")
    assert not any(e["type"] == "DELIVERY_REPORT" for e in timeline(http, tenant, sid))


def test_stale_wrongly_signed_or_altered_reports_are_refused(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    sid, message_id = sms_session(http, tenant, registry, gateway)
    payload = {"messageId": message_id, "status": "failed"}
    now = registry.clock.now()
    assert report(http, registry, payload, at=now - timedelta(minutes=5, seconds=5)).status_code == 401
    assert report(http, registry, payload, at=now + timedelta(minutes=5, seconds=5)).status_code == 401
    assert report(http, registry, payload, secret=OTHER_SECRET).status_code == 401
    body = json.dumps({"messageId": message_id, "status": "delivered"}).encode()
    altered = json.dumps(payload).encode()
    assert http.post("/providers/http/status", content=altered, headers=signed(body)).status_code == 401
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = {k: v for k, v in signed(altered, at=now).items() if k != name}
        assert http.post("/providers/http/status", content=altered, headers=headers).status_code == 401
    assert session_of(http, tenant, sid)["deliveryStatus"] == "SENT"
    # Within the 5 minutes, signed with the secret: taken.
    assert report(http, registry, payload, at=now - timedelta(minutes=4)).status_code == 200
    s = session_of(http, tenant, sid)
    assert (s["status"], s["deliveryStatus"]) == ("INVALID", "UNDELIVERED")


def test_only_sms_sent_through_the_gateway_can_be_reported_on(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    # An email's Message-ID carries its outbox id: whoever sees a mail's headers knows it.
    m = challenge(http, tenant, "email-link", person={"emailAddress": "headers@example.com"})["mfa"]
    drain(registry)
    message_id = smtp.wait_for(1)[0].message["Message-ID"].strip("<>").split("@")[0]
    r = report(http, registry, {"messageId": message_id, "status": "failed"})
    assert r.status_code == 404, r.text
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"


def test_a_report_before_the_send_is_recorded_asks_to_come_back(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    with registry.sessions() as s:
        message_id = s.scalars(select(Message.id).where(Message.session_id == m["ID"])).one()
    r = report(http, registry, {"messageId": message_id, "status": "delivered"})
    assert r.status_code == 409, r.text
    assert session_of(http, tenant, m["ID"])["deliveryStatus"] == "QUEUED"


def test_passgate_signs_its_requests_to_the_gateway(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    _, message_id = sms_session(http, tenant, registry, gateway)
    sent = gateway.requests[-1]
    assert sent.headers["webhook-id"] == message_id
    assert Webhook(GATEWAY_SECRET).verify(sent.body, sent.headers)["messageId"] == message_id
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(sent.body, sent.headers)


@pytest.mark.parametrize("provider", [None, "twilio", "dev"])
def test_the_route_exists_only_with_the_http_gateway(
    provider: str | None, settings: Settings, registry: Registry
) -> None:
    registry.settings = settings.model_copy(
        update={
            "sms_provider": provider,
            "twilio_account_sid": "AC1",
            "twilio_auth_token": "t",
            "twilio_from": "+1",
        }
    )
    with TestClient(create_app(registry=registry), raise_server_exceptions=False) as client:
        body = b'{"messageId": "x", "status": "delivered"}'
        r = client.post("/providers/http/status", content=body, headers=signed(body))
        assert r.status_code == 404, r.text
        assert "not configured" in r.json()["detail"]


def test_production_needs_the_secret_and_development_warns(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dev = DevInboxSender(None, None)  # type: ignore[arg-type]
    gateway = {"sms_provider": "http", "sms_http_url": "https://gateway.example/sms"}
    with pytest.raises(InvalidConfiguration) as refused:
        load_settings(**gateway, environment="production", secret_keys="k" * 40)
    assert [var for var, _ in refused.value.problems] == ["PASSGATE_SMS_HTTP_SECRET"]
    for bad in ("not-a-secret", "whsec_!!!", "whsec_c2hvcnQ="):
        with pytest.raises(InvalidConfiguration) as refused:
            load_settings(**gateway, sms_http_secret=bad)
        assert [var for var, _ in refused.value.problems] == ["PASSGATE_SMS_HTTP_SECRET"]
    bare = settings.model_copy(update={"sms_http_secret": None})
    with caplog.at_level(logging.WARNING, logger="passgate"):
        sender = build_sms_sender(bare, dev)
    assert getattr(sender, "secret", "?") is None
    assert "taken without a signature" in caplog.text


def test_in_development_without_a_secret_reports_are_taken_unsigned(
    settings: Settings, http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    registry.settings = settings.model_copy(update={"sms_http_secret": None})
    sid, message_id = sms_session(http, tenant, registry, gateway)
    r = http.post("/providers/http/status", json={"messageId": message_id, "status": "delivered"})
    assert r.status_code == 200
    assert session_of(http, tenant, sid)["deliveryStatus"] == "DELIVERED"


def test_the_documented_gateway_example_works_end_to_end(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """docs/examples/sms_gateway.py as a real process, in front of a real `passgate` HTTP server: it
    accepts Passgate's signed request, and its signed report marks the session DELIVERED."""
    api_port, gateway_port = free_port(), free_port()
    settings = Settings(
        database_url=database_url,
        secret_keys=TEST_SECRET,
        data_dir=tmp_path / "data",
        public_url=f"http://127.0.0.1:{api_port}",
        workers_in_process="thread",
        log_level="WARNING",
        sms_provider="http",
        sms_http_url=f"http://127.0.0.1:{gateway_port}/sms",
        sms_http_secret=GATEWAY_SECRET,
    )
    registry = build_registry(settings, engine=engine)
    config = uvicorn.Config(
        create_app(registry=registry), host="127.0.0.1", port=api_port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    env = {**os.environ, "SMS_GATEWAY_SECRET": GATEWAY_SECRET, "PASSGATE_URL": settings.public_url}
    gateway = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(gateway_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "the API did not start"
        api = httpx.Client(base_url=settings.public_url, timeout=10)
        tenant = make_tenant(api, registry)  # type: ignore[arg-type]
        body = login_body(strategy={"mfaTemplateName": "sms-code"}, person={"phoneNumber": PHONE})
        sid = api.post("/login/v2", json=body, headers=tenant.headers).json()["mfa"]["ID"]
        status = None
        deadline = time.monotonic() + 30  # a shared 2-core machine can be slow
        while time.monotonic() < deadline and status != "DELIVERED":
            time.sleep(0.1)
            status = api.get(f"/mfa/v2/{sid}", headers=tenant.headers).json()["deliveryStatus"]
        assert status == "DELIVERED", (status, gateway.poll())
        items = api.get(f"/mfa/v2/{sid}/timeline", headers=tenant.headers).json()["items"]
        assert [e["source"] for e in items if e["type"] == "DELIVERY_REPORT"] == ["http-gateway"]
    finally:
        gateway.terminate()
        gateway.wait(10)
        server.should_exit = True
        thread.join(20)
