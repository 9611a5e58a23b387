"""The EmailSender port: the dev inbox and the real SMTP sender (against an aiosmtpd server on loopback)
take the same messages and deliver the same thing.

Each case runs against both adapters with the same inputs; a `Mailbox` reads back what the adapter
delivered (the dev inbox's row, or the mail the SMTP server received), so that the assertions are the
port's, not an adapter's.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

import passgate.models_all  # noqa: F401  (every table in the metadata)
from passgate.clock import FrozenClock
from passgate.db import Base, make_engine, make_sessionmaker
from passgate.messaging.interfaces import EmailSender
from passgate.messaging.models import DevInboxMessage
from passgate.messaging.senders.base import OutgoingEmail
from passgate.messaging.senders.dev import DevInboxSender
from passgate.messaging.senders.smtp import SmtpEmailSender
from tests.servers import SmtpSink


@dataclass(frozen=True)
class Delivered:
    to: str
    subject: str
    text: str
    html: str


@dataclass
class Adapter:
    sender: EmailSender
    # What was delivered for an outbox message id.
    mailbox: Callable[[str], Delivered]


def _dev(tmp_path: Path) -> Iterator[Adapter]:
    engine = make_engine(f"sqlite:///{tmp_path / 'contract.db'}")
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    clock = FrozenClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))

    def mailbox(message_id: str) -> Delivered:
        with sessions() as s:
            row = s.scalars(select(DevInboxMessage).where(DevInboxMessage.message_id == message_id)).one()
        return Delivered(row.destination, row.subject or "", row.text or "", row.html or "")

    yield Adapter(DevInboxSender(sessions, clock), mailbox)
    engine.dispose()


def _smtp(tmp_path: Path) -> Iterator[Adapter]:
    sink = SmtpSink().start()
    sender = SmtpEmailSender(sink.url)

    def mailbox(message_id: str) -> Delivered:
        for mail in sink.wait_for(1):
            msg = email.message_from_bytes(mail.raw, policy=email.policy.default)
            if message_id in str(msg["Message-ID"]):
                text = msg.get_body(("plain",))
                html = msg.get_body(("html",))
                assert text is not None and html is not None
                return Delivered(
                    mail.rcpt_tos[0],
                    str(msg["Subject"]),
                    text.get_content().replace("\r\n", "\n"),  # type: ignore[attr-defined]
                    html.get_content().replace("\r\n", "\n"),  # type: ignore[attr-defined]
                )
        raise AssertionError(f"no mail for {message_id}")

    try:
        yield Adapter(sender, mailbox)
    finally:
        sink.stop()


@pytest.fixture(params=["dev", "smtp"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    yield from (_dev if request.param == "dev" else _smtp)(tmp_path)


def outgoing(**overrides: str) -> OutgoingEmail:
    values = {
        "message_id": "0b7c5d8e-1111-4222-8333-944455556666",
        "to": "jo.smith+mfa@example.com",
        "from_addr": "Acme <no-reply@acme.example>",
        "subject": "Confirm it's you – Acme",
        "text": "Hi Jo,\n\nOpen https://h/v/abc to continue.\n",
        "html": '<!DOCTYPE html>\n<p style="color:#123456">Hi Jo</p>\n<a href="https://h/v/abc">go</a>\n',
        "client_id": "c1",
    }
    values.update(overrides)
    return OutgoingEmail(**values)


def send(adapter: Adapter, message: OutgoingEmail) -> str:
    async def scenario() -> str:
        try:
            return await adapter.sender.send_email(message)
        finally:
            release = getattr(adapter.sender, "release", None)
            if release is not None:
                await release()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"subject": "Ваш код", "text": "Grüße, Jo — ваш код 123456\n", "html": "<p>é 😀</p>\n"},
        {"text": "=3D looks encoded\n.leading dot\nFrom the start\n"},
    ],
)
def test_a_message_is_delivered_as_given(adapter: Adapter, overrides: dict[str, str]) -> None:
    message = outgoing(**overrides)
    provider_id = send(adapter, message)
    assert isinstance(provider_id, str) and provider_id
    got = adapter.mailbox(message.message_id)
    assert got.to == message.to
    assert got.subject == message.subject
    assert got.text == message.text
    assert got.html == message.html


def test_the_sender_has_a_name_for_the_attempt_log(adapter: Adapter) -> None:
    assert isinstance(adapter.sender.name, str) and adapter.sender.name
