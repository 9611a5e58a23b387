"""Verify API tests: a real SMTP server and a real HTTP SMS gateway on loopback (as for challenges), and a
real webhook receiver that checks signatures."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from passgate.config import Settings
from tests.factories import Tenant
from tests.functional.mfa.conftest import GATEWAY_SECRET
from tests.functional.webhooks.conftest import WEBHOOK_SETTINGS
from tests.servers import HttpReceiver, SmtpSink

CODE_LINE = re.compile(r"^\s*(\d{6})\s*$", re.M)
SMS_CODE = re.compile(r"#(\d{6})$")
LINK = re.compile(r"http://127\.0\.0\.1:8000/v/[A-Za-z0-9_-]{43}")
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36", "Accept": "text/html"}


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink, gateway: HttpReceiver) -> Settings:  # noqa: F811
    return settings.model_copy(
        update={
            "smtp_url": smtp.url,
            "mail_from": "Acme <no-reply@acme.example>",
            "sms_provider": "http",
            "sms_http_url": f"{gateway.url}/sms",
            "sms_http_secret": GATEWAY_SECRET,
            "message_retry_seconds": "2,2,2",
            **WEBHOOK_SETTINGS,
        }
    )


@pytest.fixture(autouse=True)
def _no_leftover_deliveries(engine: Engine) -> Iterator[None]:
    yield
    # The webhook queue is shared by all tests: what a test left waiting must not reach a later test.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE webhook_deliveries SET status = 'FAILED' WHERE status IN ('PENDING', 'SENDING')")
        )


def start(http: TestClient, tenant: Tenant, **body: Any) -> Any:
    return http.post("/verify/v1/verifications", json=body, headers=tenant.headers)


def started(http: TestClient, tenant: Tenant, status: int = 201, **body: Any) -> dict[str, Any]:
    r = start(http, tenant, **body)
    assert r.status_code == status, r.text
    return dict(r.json())


def check(http: TestClient, tenant: Tenant, vid: str, code: str) -> Any:
    return http.post(f"/verify/v1/verifications/{vid}/check", json={"code": code}, headers=tenant.headers)


def check_to(http: TestClient, tenant: Tenant, to: str, code: str) -> Any:
    return http.post("/verify/v1/verification-checks", json={"to": to, "code": code}, headers=tenant.headers)


def fetch(http: TestClient, tenant: Tenant, vid: str) -> Any:
    return http.get(f"/verify/v1/verifications/{vid}", headers=tenant.headers)


def code_in_mail(text_part: str) -> str:
    found = CODE_LINE.findall(text_part)
    assert len(found) == 1, text_part
    return str(found[0])


def sms_to(gateway: HttpReceiver, number: str) -> list[dict[str, Any]]:  # noqa: F811
    return [r.json() for r in gateway.requests if r.path == "/sms" and r.json()["to"] == number]


def code_in_sms(body: str) -> str:
    m = SMS_CODE.search(body)
    assert m, body
    return m.group(1)


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def mails_to(smtp: SmtpSink, address: str) -> list[Any]:  # noqa: F811
    """The mails the SMTP server received for this address (the queue is shared: only a test's own
    addresses are counted)."""
    return [m for m in smtp.received if m.rcpt_tos == [address]]


def link_in(text_part: str) -> str:
    found = LINK.findall(text_part)
    assert found, text_part
    return str(found[0])


def fields_of(r: Any) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json().get("errors", [])]
