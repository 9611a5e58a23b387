from __future__ import annotations

import re
from dataclasses import dataclass, field

# Providers quote the destination in their refusals ("550 5.1.1 <jo@example.com>: no such user", "The 'To'
# number +15551234567 is not valid"). What they say is kept on the outbox row, on the timeline and in logs,
# without the address or number (the message row has it, where it belongs).
_QUOTED_EMAIL = re.compile(r"<?[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+>?")
_QUOTED_PHONE = re.compile(r"\+?\d[\d ().-]{5,}\d")


def provider_said(text: str, limit: int = 200) -> str:
    """A provider's own words about a failed send, shortened, with addresses and phone numbers taken out."""
    text = _QUOTED_EMAIL.sub("<address>", text[: limit * 2])
    return _QUOTED_PHONE.sub("<number>", text)[:limit]


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str
    to: str
    from_addr: str
    subject: str
    text: str
    html: str
    client_id: str
    # Only the dev inbox shows these; real senders ignore them.
    link: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The envelope sender (MAIL FROM), where bounces go: the message's bounce address, or None (From's).
    envelope_from: str | None = None


@dataclass(frozen=True)
class OutgoingSms:
    message_id: str
    to: str
    body: str
    client_id: str
    link: str | None = None
    code: str | None = None


class SendError(Exception):
    """Base of what a sender raises; adapters translate library and provider errors into these."""

    retryable = False
    authorization = False


class TemporarySendError(SendError):
    retryable = True


class PermanentSendError(SendError):
    """The provider refused this message for good (bad address, 5xx SMTP reply): the session is INVALID."""


class ProviderAuthorizationError(SendError):
    """The provider refused our credentials: FAILED_AUTHORIZATION, and an operator must act."""

    authorization = True
