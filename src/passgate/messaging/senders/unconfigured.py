from __future__ import annotations

from passgate.messaging.senders.base import OutgoingEmail, OutgoingSms, PermanentSendError


class UnconfiguredSender:
    """Stands in for a channel with no provider in production: every send fails loudly."""

    def __init__(self, channel: str) -> None:
        self.name = f"unconfigured-{channel.lower()}"
        self.channel = channel

    async def send_email(self, message: OutgoingEmail) -> str:
        raise PermanentSendError("no email provider is configured (PASSGATE_SMTP_URL)")

    async def send_sms(self, message: OutgoingSms) -> str:
        raise PermanentSendError("no SMS provider is configured (PASSGATE_SMS_PROVIDER)")
