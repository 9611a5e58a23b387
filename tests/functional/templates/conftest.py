"""Template and branding tests run against a real SMTP server and a real HTTP SMS gateway on loopback."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from passgate.config import Settings
from tests.factories import Tenant
from tests.servers import HttpReceiver, ReceivedMail, SmtpSink

PHONE_US = "+12015550123"


# One SMTP server and one gateway for the whole run (stopping an HTTP server costs half a second); each
# test gets them emptied. Nothing is in flight between tests: drain() sends synchronously, and the registry
# fixture fails whatever a test left queued.
@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def _gateway_server() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp(_smtp_server: SmtpSink) -> SmtpSink:
    _smtp_server.received.clear()
    _smtp_server.arrived.clear()
    return _smtp_server


@pytest.fixture
def gateway(_gateway_server: HttpReceiver) -> HttpReceiver:
    _gateway_server.requests.clear()
    _gateway_server.responder = None
    return _gateway_server


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink, gateway: HttpReceiver) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": smtp.url,
            "mail_from": "Passgate <no-reply@passgate.example>",
            "sms_provider": "http",
            "sms_http_url": f"{gateway.url}/sms",
            "message_retry_seconds": "2,2,2",
        }
    )


def email_locale(greeting: str = "Hello", placeholder: str = "link") -> dict[str, str]:
    return {
        "subject": f"{greeting} from {{{{ brand.companyName }}}}",
        "html": f'<p>{greeting} {{{{ person.name.first }}}}</p><p><a href="{{{{ {placeholder} }}}}">Go</a></p>',
        "text": f"{greeting} {{{{ person.name.first }}}}: {{{{ {placeholder} }}}}",
    }


def email_template(name: str, kind: str = "OTH", **locales: dict[str, str]) -> dict[str, Any]:
    placeholder = "link" if kind == "OTH" else "code"
    chosen = locales or {"en": email_locale(placeholder=placeholder)}
    return {
        "name": name,
        "channel": "EMAIL",
        "kind": kind,
        "defaultLocale": next(iter(chosen)),
        "locales": chosen,
    }


def sms_template(name: str, kind: str = "OTP", **locales: str) -> dict[str, Any]:
    chosen = locales or {"en": "Code {{ code }}" if kind == "OTP" else "Go {{ link }}"}
    return {
        "name": name,
        "channel": "SMS",
        "kind": kind,
        "defaultLocale": next(iter(chosen)),
        "locales": {tag: {"sms": body} for tag, body in chosen.items()},
    }


def create(http: TestClient, tenant: Tenant, body: dict[str, Any]) -> Response:
    return http.post("/manage/v1/templates", json=body, headers=tenant.admin_headers)


def created(http: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    r = create(http, tenant, body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def put_branding(http: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = http.put("/manage/v1/branding", json=body, headers=tenant.admin_headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def errors_of(r: Response) -> dict[str, dict[str, Any]]:
    """The problem document's errors by field (asserting it is one)."""
    assert r.headers["content-type"] == "application/problem+json", r.text
    return {e["field"]: e for e in r.json()["errors"]}


def parsed(mail: ReceivedMail) -> EmailMessage:
    """The message as a modern mail client reads it (encoded words in headers decoded)."""
    msg = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
