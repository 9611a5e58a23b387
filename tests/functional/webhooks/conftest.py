"""Webhook tests: a real HTTP receiver on loopback that checks signatures the way a business would, with
`cryptography` (Kount RSA-PSS, key fetched from the API) and the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from passgate.bootstrap import Registry
from passgate.config import Settings
from passgate.webhooks.delivery import WebhookDeliverer
from tests.factories import Tenant, get_token
from tests.servers import HttpReceiver, Recorded, SmtpSink

ALL_EVENTS = ["MFA.StatusUpdate", "Verification.StatusUpdate", "Decision.Created"]


WEBHOOK_SETTINGS = {
    # Tests talk to receivers on 127.0.0.1; the refusal tests switch this off again.
    "webhook_allow_private": True,
    # With the frozen clock, tests move time on by 2 s between tries (jitter adds up to 20 %).
    "webhook_retry_seconds": "1,1,1,1",
    "webhook_timeout_seconds": 1.0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=WEBHOOK_SETTINGS)


def with_messaging(settings: Settings, sink: SmtpSink, sms_gateway: HttpReceiver) -> Settings:
    """Settings for whole challenges: mail through the SMTP sink, texts through the HTTP gateway."""
    return settings.model_copy(
        update={
            "smtp_url": sink.url,
            "mail_from": "Acme <no-reply@acme.example>",
            "sms_provider": "http",
            "sms_http_url": f"{sms_gateway.url}/sms",
            "message_retry_seconds": "2,2,2",
        }
    )


@pytest.fixture(autouse=True)
def _no_leftover_deliveries(engine: Engine) -> Iterator[None]:
    yield
    # The queue is shared by all tests: what a test left waiting must not be sent by a later test's worker.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE webhook_deliveries SET status = 'FAILED' WHERE status IN ('PENDING', 'SENDING')")
        )


def deliverer(registry: Registry) -> WebhookDeliverer:
    d = registry.webhook_deliverer
    assert isinstance(d, WebhookDeliverer)
    return d


def deliver(registry: Registry, seconds: float = 10.0) -> int:
    """Run the webhook worker until nothing is due and nothing is in flight."""
    return asyncio.run(deliverer(registry).drain(seconds=seconds))


@dataclass
class Hooks:
    """A business's webhook receiver: checks every signature, then answers as scripted (default 200).

    `accepted` holds the payloads of requests that carried a valid signature and were answered 2xx.
    """

    receiver: HttpReceiver
    scheme: str = "kount-rsa-pss"
    public_keys: list[str] = field(default_factory=list)
    secret: str | None = None
    check_time: bool = True
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: list[Recorded] = field(default_factory=list)
    endpoint: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.receiver.responder = self.respond

    @property
    def url(self) -> str:
        return f"{self.receiver.url}/hooks"

    def verify(self, rec: Recorded, body: bytes | None = None) -> bool:
        body = rec.body if body is None else body
        if self.scheme == "kount-rsa-pss":
            return kount_valid(self.public_keys, rec.headers, body)
        assert self.secret is not None
        return standard_valid(self.secret, rec.headers, body, self.check_time)

    def respond(self, rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        if not self.verify(rec):
            with self.lock:
                self.bad_signatures.append(rec)
            return 400, {}, b"bad signature"
        with self.lock:
            if self.script:
                status, headers = self.script.pop(0)
                if not 200 <= status < 300:
                    return status, headers, b"scripted failure"
            self.accepted.append(rec.json())
        return 200, {"Content-Type": "text/plain"}, b"ok"


def kount_valid(public_keys: list[str], headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does with `cryptography` and the keys from GET /manage/v1/webhooks/public-key."""
    timestamp = headers.get("x-event-timestamp", "")
    try:
        signature = base64.b64decode(headers.get("x-event-signature", ""), validate=True)
    except ValueError:
        return False
    for encoded in public_keys:
        key = serialization.load_der_public_key(base64.b64decode(encoded))
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            key.verify(
                signature,
                timestamp.encode() + body,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        except InvalidSignature:
            continue
        return True
    return False


def standard_valid(secret: str, headers: dict[str, str], body: bytes, check_time: bool = True) -> bool:
    """What a receiver does with the `standardwebhooks` package."""
    wh = Webhook(secret)
    try:
        if check_time:
            wh.verify(body, headers)
        else:
            # The frozen clock of retry tests is hours off real time: check the signature alone.
            ts = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
            expected = wh.sign(headers["webhook-id"], ts, body.decode()).split(",", 1)[1]
            got = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
            return expected in got
    except (WebhookVerificationError, KeyError, ValueError):
        return False
    return True


def create_endpoint(
    http: TestClient,
    tenant: Tenant,
    url: str,
    scheme: str = "kount-rsa-pss",
    events: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = {"url": url, "events": events or ALL_EVENTS, "signatureScheme": scheme, **extra}
    r = http.post("/manage/v1/webhooks", json=body, headers=tenant.admin_headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def public_keys(http: TestClient, tenant: Tenant) -> list[str]:
    r = http.get("/manage/v1/webhooks/public-key", headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    data = r.json()
    return [data["publicKey"]] + [k["publicKey"] for k in data["previous"]]


@pytest.fixture
def kount_hooks(http: TestClient, tenant: Tenant, hooks_server: HttpReceiver) -> Hooks:
    """A receiver registered for every event, Kount scheme, verifying with the published key."""
    hooks = Hooks(hooks_server, "kount-rsa-pss")
    hooks.endpoint = create_endpoint(http, tenant, hooks.url, "kount-rsa-pss")
    hooks.public_keys = public_keys(http, tenant)
    return hooks


def deliveries(http: TestClient, tenant: Tenant, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    r = http.get(f"/manage/v1/webhooks/{endpoint_id}/deliveries", params=params, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def endpoint_of(http: TestClient, tenant: Tenant, endpoint_id: str) -> dict[str, Any]:
    r = http.get(f"/manage/v1/webhooks/{endpoint_id}", headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def fresh_tokens(http: TestClient, tenant: Tenant) -> None:
    """New tokens after the frozen clock moved past their 20 minutes."""
    tenant.token = get_token(http, tenant.client_id, tenant.api_key)
    tenant.admin_token = get_token(http, tenant.client_id, tenant.api_key, "admin")
