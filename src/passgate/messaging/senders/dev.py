"""The dev provider: messages land in the built-in inbox (/dev/inbox) instead of leaving the machine."""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db import transaction, upsert
from passgate.messaging.models import DevInboxMessage
from passgate.messaging.senders.base import OutgoingEmail, OutgoingSms


class DevInboxSender:
    name = "dev"

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def _store(self, values: dict[str, object]) -> None:
        with transaction(self.sessions) as session:
            # Keyed on the outbox id: a retried send after a crash does not show the message twice.
            upsert(session, DevInboxMessage.__table__, values, ["message_id"], {})

    async def send_email(self, message: OutgoingEmail) -> str:
        await asyncio.to_thread(
            self._store,
            {
                "message_id": message.message_id,
                "client_id": message.client_id,
                "channel": "EMAIL",
                "destination": message.to,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "link": message.link,
                "code": message.code,
                "meta": {"from": message.from_addr},
                "created_at": self.clock.now(),
            },
        )
        return f"dev-{message.message_id}"

    async def send_sms(self, message: OutgoingSms) -> str:
        await asyncio.to_thread(
            self._store,
            {
                "message_id": message.message_id,
                "client_id": message.client_id,
                "channel": "SMS",
                "destination": message.to,
                "subject": None,
                "text": message.body,
                "html": None,
                "link": message.link,
                "code": message.code,
                "meta": {},
                "created_at": self.clock.now(),
            },
        )
        return f"dev-{message.message_id}"
