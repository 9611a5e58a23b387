"""Bounces, end to end: each email's envelope sender is its bounce address; a receiving MTA (aiosmtpd on
loopback) accepts the challenge mail, then sends a DSN over SMTP to that address at `passgate bounces`
(in process, and as a subprocess); a relay may post the DSN to POST /providers/bounces instead, signed.
A hard bounce ends the session INVALID (BOUNCED) with its webhook; a soft one is only on the timeline."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message as EmailMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import make_msgid, parseaddr
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from passgate.bootstrap import Registry, bounce_addresses, build_bounce_intake
from passgate.config import Settings
from passgate.ids import new_uuid
from passgate.messaging.bounce_listener import BounceListener
from passgate.messaging.models import Message
from passgate.messaging.senders.smtp import SmtpEmailSender
from tests.cli import passgate as run_passgate
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain, session_of, timeline
from tests.functional.webhooks.conftest import (  # noqa: F401  (an autouse fixture)
    WEBHOOK_SETTINGS,
    Hooks,
    _no_leftover_deliveries,
    create_endpoint,
    deliver,
)
from tests.servers import HttpReceiver, ReceivedMail, SmtpSink, free_port

BOUNCE_DOMAIN = "bounces.acme.example"
BOUNCE_SECRET = "whsec_" + "Ym91bmNlLXJlbGF5LXNlY3JldC0wMTIzNDU2Nzg5"
EMAIL = "jo@example.org"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={**WEBHOOK_SETTINGS, "bounce_domain": BOUNCE_DOMAIN, "bounce_secret": BOUNCE_SECRET}
    )


# -- a receiving MTA that bounces ------------------------------------------------------------------


def build_dsn(original: bytes, recipient: str, bounce_to: str, status: str, action: str) -> bytes:
    """A DSN as Postfix writes one (RFC 3464): notification, delivery-status, the original's headers."""
    dsn = MIMEMultipart("report", report_type="delivery-status")
    dsn["From"] = "MAILER-DAEMON@mx.example.org (Mail Delivery System)"
    dsn["To"] = bounce_to
    dsn["Subject"] = "Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail"
    dsn["Message-ID"] = make_msgid(domain="mx.example.org")
    dsn["Auto-Submitted"] = "auto-replied"
    dsn.attach(MIMEText(f"<{recipient}>: host mx.example.org said: 550 {status} mailbox unknown\n"))
    per_message, per_recipient = EmailMessage(), EmailMessage()
    per_message["Reporting-MTA"] = "dns; mx.example.org"
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = f"smtp; 550 {status} <{recipient}>: Recipient address rejected"
    report = MIMEBase("message", "delivery-status")
    report.set_payload([per_message, per_recipient])
    dsn.attach(report)
    headers = original.split(b"\r\n\r\n", 1)[0].decode()
    dsn.attach(MIMEText(f"Return-Path: <{bounce_to}>\n{headers}\n", "rfc822-headers"))
    return dsn.as_bytes()


@dataclass
class BouncingMta:
    """The receiving side: accepts every mail (250), then sends its DSN over SMTP to the mail's envelope
    sender at `listener_port`, with a null sender; a 4xx answer is retried as an MTA does (every 0.1 s)."""

    listener_port: int
    status: str = "5.1.1"
    action: str = "failed"
    port: int = field(default_factory=free_port)
    received: list[ReceivedMail] = field(default_factory=list)
    dsns: list[bytes] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # the listener's reply to each try
    bounced: threading.Event = field(default_factory=threading.Event)
    controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        self.received.append(mail)
        dsn = build_dsn(mail.raw, mail.rcpt_tos[0], mail.mail_from, self.status, self.action)
        self.dsns.append(dsn)
        asyncio.get_running_loop().create_task(self.send_dsn(mail.mail_from, dsn))
        return "250 2.0.0 Ok: queued"

    async def send_dsn(self, to: str, dsn: bytes) -> None:
        for _ in range(100):
            code = await send_over_smtp(self.listener_port, to, dsn)
            self.answers.append(code)
            if code < 400 or code >= 500:
                break
            await asyncio.sleep(0.1)
        self.bounced.set()

    def start(self) -> BouncingMta:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


async def send_over_smtp(port: int, to: str, data: bytes) -> int:
    """One SMTP transaction with a null sender (a bounce's); the reply code of RCPT, else of DATA."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
    await smtp.connect()
    try:
        await smtp.mail("")
        code, _ = await smtp.rcpt(to)
        if code >= 300:
            return code
        code, _ = await smtp.data(data)
        return code
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    finally:
        smtp.close()


def send_dsn_now(port: int, to: str, data: bytes) -> int:
    return asyncio.run(send_over_smtp(port, to, data))


@pytest.fixture
def listener(registry: Registry) -> Iterator[BounceListener]:
    running = BounceListener(build_bounce_intake(registry), "127.0.0.1", free_port()).start()
    yield running
    running.stop()


def email_challenge(http: TestClient, tenant: Tenant, address: str = EMAIL) -> str:
    return str(challenge(http, tenant, "email-link", person={"emailAddress": address})["mfa"]["ID"])


def wait_for(what: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def bounces_counted(registry: Registry, source: str, outcome: str) -> float:
    value = registry.metrics.registry.get_sample_value(
        "passgate_bounces_total", {"source": source, "outcome": outcome}
    )
    return value or 0.0


def message_of(registry: Registry, session_id: str) -> Message:
    with registry.sessions() as s:
        return s.scalars(select(Message).where(Message.session_id == session_id)).one()


def status_hooks(http: TestClient, tenant: Tenant) -> Hooks:
    hooks = Hooks(HttpReceiver().start(), "standard-webhooks", check_time=False)
    hooks.endpoint = create_endpoint(
        http, tenant, hooks.url, "standard-webhooks", events=["MFA.StatusUpdate"]
    )
    hooks.secret = hooks.endpoint["secret"]
    return hooks


# -- over SMTP -------------------------------------------------------------------------------------


def test_a_hard_bounce_over_smtp_ends_the_session_invalid_with_its_webhook(
    http: TestClient, tenant: Tenant, registry: Registry, listener: BounceListener
) -> None:
    mta = BouncingMta(listener.port).start()
    registry.dispatcher.email_sender = SmtpEmailSender(mta.url)
    hooks = status_hooks(http, tenant)
    try:
        sid = email_challenge(http, tenant)
        drain(registry)
        # The mail went out from its own bounce address, which names its outbox message.
        [mail] = mta.received
        local, _, domain = mail.mail_from.partition("@")
        assert domain == BOUNCE_DOMAIN and local.startswith("bounces+")
        message = message_of(registry, sid)
        assert bounce_addresses(registry.settings, registry.keyring).message_of(mail.mail_from) == message.id
        assert parseaddr(mail.message["From"])[1] == "no-reply@acme.example"  # From is unchanged
        assert mta.bounced.wait(10)
        assert mta.answers[-1] == 250
        s = session_of(http, tenant, sid)
        assert (s["status"], s["deliveryStatus"], s["terminationReason"]) == ("INVALID", "BOUNCED", "BOUNCED")
        assert message_of(registry, sid).delivery_status == "BOUNCED"
        items = timeline(http, tenant, sid)
        [report] = [e for e in items if e["type"] == "DELIVERY_REPORT"]
        assert report["source"] == "smtp-bounce"
        assert report["data"]["deliveryStatus"] == "BOUNCED"
        assert (report["data"]["bounce"], report["data"]["status"], report["data"]["action"]) == (
            "hard",
            "5.1.1",
            "failed",
        )
        assert EMAIL not in str(report["data"])  # the diagnostic without the address
        assert [e["data"]["to"] for e in items if e["type"] == "STATUS_CHANGED"][-1] == "INVALID"
        assert bounces_counted(registry, "smtp", "bounced") == 1
        # The webhook, queued in the same transaction, reaches the receiver.
        deliver(registry)
        statuses = [p["mfaStatus"] for p in hooks.accepted if p.get("mfaId") == sid]
        assert statuses[-1] == "INVALID" and "MESSAGE_SENT" in statuses
        # The same DSN again (an MTA that lost our 250): accepted, nothing more happens.
        assert send_dsn_now(listener.port, mail.mail_from, mta.dsns[0]) == 250
        assert len(timeline(http, tenant, sid)) == len(items)
        assert bounces_counted(registry, "smtp", "duplicate") == 1
        deliver(registry)
        assert [p["mfaStatus"] for p in hooks.accepted if p.get("mfaId") == sid] == statuses
    finally:
        mta.stop()
        hooks.receiver.stop()


def test_a_soft_bounce_is_on_the_timeline_and_changes_no_status(
    http: TestClient, tenant: Tenant, registry: Registry, listener: BounceListener
) -> None:
    mta = BouncingMta(listener.port, status="4.2.2", action="delayed").start()
    registry.dispatcher.email_sender = SmtpEmailSender(mta.url)
    try:
        sid = email_challenge(http, tenant)
        drain(registry)
        assert mta.bounced.wait(10) and mta.answers[-1] == 250
        s = session_of(http, tenant, sid)
        assert (s["status"], s["deliveryStatus"], s["terminationReason"]) == ("MESSAGE_SENT", "SENT", None)
        [delayed] = [e for e in timeline(http, tenant, sid) if e["type"] == "DELIVERY_DELAYED"]
        assert (delayed["source"], delayed["data"]["bounce"], delayed["data"]["status"]) == (
            "smtp-bounce",
            "soft",
            "4.2.2",
        )
        assert bounces_counted(registry, "smtp", "delayed") == 1
        # Then the MTA gives up: the hard bounce that follows still ends the session.
        [mail] = mta.received
        final = build_dsn(mail.raw, EMAIL, mail.mail_from, "5.2.2", "failed")
        assert send_dsn_now(listener.port, mail.mail_from, final) == 250
        s = session_of(http, tenant, sid)
        assert (s["status"], s["deliveryStatus"]) == ("INVALID", "BOUNCED")
    finally:
        mta.stop()


def test_the_listener_refuses_other_recipients_and_ignores_unknown_messages(
    registry: Registry, listener: BounceListener
) -> None:
    addresses = bounce_addresses(registry.settings, registry.keyring)
    real = addresses.for_message(new_uuid(), "no-reply@acme.example")
    assert real is not None
    token = real.partition("+")[2].partition("@")[0]
    forged = f"bounces+{token[:-1]}{'a' if token[-1] != 'a' else 'b'}@{BOUNCE_DOMAIN}"
    dsn = build_dsn(b"Subject: x\r\n\r\n", EMAIL, forged, "5.1.1", "failed")
    assert send_dsn_now(listener.port, forged, dsn) == 550
    assert send_dsn_now(listener.port, f"postmaster@{BOUNCE_DOMAIN}", dsn) == 550
    assert bounces_counted(registry, "smtp", "forged") == 1
    # A token of ours for a message that does not exist: taken (250) and ignored.
    assert send_dsn_now(listener.port, real, build_dsn(b"\r\n", EMAIL, real, "5.1.1", "failed")) == 250
    assert bounces_counted(registry, "smtp", "unknown") == 1
    # Garbage to a bounce address is not a 5xx either.
    assert send_dsn_now(listener.port, real, b"\x00\xff garbage") == 250


def test_a_bounce_before_the_send_is_recorded_is_deferred(
    http: TestClient, tenant: Tenant, registry: Registry, listener: BounceListener
) -> None:
    sid = email_challenge(http, tenant)
    message = message_of(registry, sid)  # queued, not yet sent
    address = bounce_addresses(registry.settings, registry.keyring).for_message(message.id, "a@acme.example")
    assert address is not None
    dsn = build_dsn(b"\r\n", EMAIL, address, "5.1.1", "failed")
    assert send_dsn_now(listener.port, address, dsn) == 451
    assert session_of(http, tenant, sid)["status"] == "UNKNOWN"
    assert bounces_counted(registry, "smtp", "early") == 1


def test_without_a_bounce_domain_the_envelope_sender_stays_the_from_address(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    sink = SmtpSink().start()
    try:
        off = settings.model_copy(update={"bounce_domain": None, "smtp_url": sink.url})
        from passgate.bootstrap import build_registry

        other = build_registry(off, engine=registry.engine, clock=registry.clock)
        try:
            assert other.dispatcher.bounces is None
            email_challenge(http, tenant)
            drain(other)
            [mail] = sink.wait_for(1)
            assert mail.mail_from == "no-reply@acme.example"
        finally:
            other.committer.stop()
    finally:
        sink.stop()


def test_passgate_bounces_as_a_subprocess(
    http: TestClient, tenant: Tenant, registry: Registry, settings: Settings
) -> None:
    import subprocess

    helped = run_passgate(settings, "bounces", "--help")
    assert helped.returncode == 0 and "delivery status notification" in helped.stdout
    mta_sink = SmtpSink().start()
    registry.dispatcher.email_sender = SmtpEmailSender(mta_sink.url)
    port = free_port()
    proc = _start_listener(settings, port, {"PASSGATE_BOUNCE_DOMAIN": BOUNCE_DOMAIN})
    try:
        sid = email_challenge(http, tenant)
        drain(registry)
        [mail] = mta_sink.wait_for(1)
        wait_for(lambda: _answers(port), timeout=30)
        dsn = build_dsn(mail.raw, EMAIL, mail.mail_from, "5.1.1", "failed")
        assert send_dsn_now(port, mail.mail_from, dsn) == 250
        s = session_of(http, tenant, sid)
        assert (s["status"], s["deliveryStatus"], s["terminationReason"]) == ("INVALID", "BOUNCED", "BOUNCED")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        mta_sink.stop()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def _start_listener(settings: Settings, port: int, env: dict[str, str]) -> Any:
    import os
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")}
    full.update(
        PASSGATE_DATABASE_URL=settings.database_url,
        PASSGATE_SECRET_KEYS=settings.secret_keys or "",
        PASSGATE_DATA_DIR=str(settings.data_dir),
        PASSGATE_LOG_LEVEL="WARNING",
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "bounces", "--port", str(port)],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            return conn.recv(64).startswith(b"220")
    except OSError:
        return False


# -- over HTTP -------------------------------------------------------------------------------------


def signed(body: bytes, at: datetime, secret: str = BOUNCE_SECRET) -> dict[str, str]:
    """What a relay sends, made with the `standardwebhooks` package."""
    msg_id = f"bounce_{new_uuid()}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "content-type": "message/rfc822",
    }


def sent_email(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> tuple[str, ReceivedMail]:
    sid = email_challenge(http, tenant)
    drain(registry)
    return sid, smtp.wait_for(1)[-1]


def test_a_relay_posts_a_signed_bounce(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, listener: BounceListener
) -> None:
    hooks = status_hooks(http, tenant)
    try:
        sid, mail = sent_email(http, tenant, registry, smtp)
        dsn = build_dsn(mail.raw, EMAIL, mail.mail_from, "5.1.1", "failed")
        now = registry.clock.now()
        # Unsigned, wrongly signed, stale, altered: 401 and nothing changes.
        r = http.post("/providers/bounces", content=dsn, headers={"content-type": "message/rfc822"})
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        other = "whsec_" + "b3RoZXItc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY="
        assert (
            http.post("/providers/bounces", content=dsn, headers=signed(dsn, now, other)).status_code == 401
        )
        stale = now - timedelta(minutes=6)
        assert http.post("/providers/bounces", content=dsn, headers=signed(dsn, stale)).status_code == 401
        altered = dsn.replace(b"5.1.1", b"4.1.1")
        assert http.post("/providers/bounces", content=altered, headers=signed(dsn, now)).status_code == 401
        assert session_of(http, tenant, sid)["status"] == "MESSAGE_SENT"
        # Signed: the session ends INVALID, BOUNCED, with its webhook.
        r = http.post("/providers/bounces", content=dsn, headers=signed(dsn, now))
        assert (r.status_code, r.json()) == (200, {"outcome": "bounced"})
        s = session_of(http, tenant, sid)
        assert (s["status"], s["deliveryStatus"], s["terminationReason"]) == ("INVALID", "BOUNCED", "BOUNCED")
        [report] = [e for e in timeline(http, tenant, sid) if e["type"] == "DELIVERY_REPORT"]
        assert report["source"] == "http-bounce"
        deliver(registry)
        assert [p["mfaStatus"] for p in hooks.accepted if p.get("mfaId") == sid][-1] == "INVALID"
        # Again, by HTTP or by SMTP: the same bounce, recorded once.
        r = http.post("/providers/bounces", content=dsn, headers=signed(dsn, now))
        assert (r.status_code, r.json()) == (200, {"outcome": "duplicate"})
        assert send_dsn_now(listener.port, mail.mail_from, dsn) == 250
        assert bounces_counted(registry, "smtp", "duplicate") == 1
        assert len([e for e in timeline(http, tenant, sid) if e["type"] == "DELIVERY_REPORT"]) == 1
    finally:
        hooks.receiver.stop()


def test_what_the_endpoint_ignores_and_refuses(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    sid, mail = sent_email(http, tenant, registry, smtp)
    now = registry.clock.now()
    token = mail.mail_from.partition("+")[2].partition("@")[0]
    forged_to = f"bounces+{token[::-1]}@{BOUNCE_DOMAIN}"
    cases = {
        "forged": build_dsn(
            mail.raw.replace(mail.mail_from.encode(), forged_to.encode()), EMAIL, forged_to, "5.1.1", "failed"
        ),
        "unknown": b"\xff\xfe garbage, no address at all",
        "not-a-bounce": f"From: {EMAIL}\r\nTo: {mail.mail_from}\r\nSubject: Out of Office\r\n\r\nAway.\r\n".encode(),
    }
    for outcome, body in cases.items():
        r = http.post("/providers/bounces", content=body, headers=signed(body, now))
        assert (r.status_code, r.json()) == (200, {"outcome": outcome}), outcome
        assert bounces_counted(registry, "http", outcome) == 1
    assert session_of(http, tenant, sid)["status"] == "MESSAGE_SENT"
    # No mail holds a NUL byte (RFC 5322): refused like any such body, naming it.
    nul = b"From: x\r\n\r\n\x00"
    r = http.post("/providers/bounces", content=nul, headers=signed(nul, now))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    big = b"X" * (1024 * 1024 + 1)
    assert http.post("/providers/bounces", content=big, headers=signed(big, now)).status_code == 413
    # A bounce for a message not yet recorded as sent: 409, post it again.
    queued = email_challenge(http, tenant, "queued@example.org")
    address = bounce_addresses(registry.settings, registry.keyring).for_message(
        message_of(registry, queued).id, "a@acme.example"
    )
    assert address is not None
    early = build_dsn(b"\r\n", "queued@example.org", address, "5.1.1", "failed")
    r = http.post("/providers/bounces", content=early, headers=signed(early, now))
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"


def test_without_a_secret_there_is_no_endpoint(http: TestClient, registry: Registry) -> None:
    registry.settings = registry.settings.model_copy(update={"bounce_secret": None})
    body = b"From: MAILER-DAEMON@x\r\n\r\n550 5.1.1\r\n"
    r = http.post("/providers/bounces", content=body, headers=signed(body, registry.clock.now()))
    assert r.status_code == 404
