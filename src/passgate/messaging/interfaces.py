"""What the outbox dispatcher needs from the outside: senders, and the owner of each message's purpose.

The dispatcher knows messages, not why they are sent. A challenge's message belongs to an MFA session, a
sample (test) send to nobody; what differs between them (the row joined to the message when it is
claimed, the secret made for it, how it renders, what happens once it is sent or given up) is asked of
the `DeliveryHooks` registered for the message's purpose. That keeps `messaging` free of any import of
`mfa`, while the claim stays one statement: each hook contributes its outer join and columns to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from passgate.messaging.senders.base import OutgoingEmail, OutgoingSms

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.orm import Session

    from passgate.messaging.models import Message
    from passgate.messaging.sources import TemplateSource
    from passgate.messaging.states import DeliveryStatus
    from passgate.messaging.templates import Brand, MessageTemplate, RenderedMessage


class EmailSender(Protocol):
    name: str

    async def send_email(self, message: OutgoingEmail) -> str:
        """Send; return the provider's message id."""
        ...


class SmsSender(Protocol):
    name: str

    async def send_sms(self, message: OutgoingSms) -> str: ...


@dataclass
class Claimed:
    """A claimed message with what sending it needs (worked out after the claim's commit)."""

    message_id: str
    client_id: str
    channel: str
    destination: str
    attempt: int
    secret: str | None
    template: MessageTemplate | None
    brand: Brand
    locale: str
    context: dict[str, Any]
    ttl_minutes: int
    mfa_type: str | None
    sandbox: bool
    # The purpose whose hooks own the message ("challenge", or "test" for a management test send).
    purpose: str = "challenge"
    from_address: str | None = None


@dataclass
class Sent:
    """A message the provider accepted, waiting to be recorded with the others of its round."""

    claimed: Claimed
    provider: str
    provider_id: str
    started: datetime


class NewSecret(NamedTuple):
    """A code or link token just made for an outbox message (see `DeliveryHooks.make_secret`)."""

    secret_id: str
    value: str
    sealed: str


@dataclass(frozen=True)
class SentMessage:
    """An outbox message the provider accepted, as its owner is told of it (`DeliveryHooks.messages_sent`)."""

    message_id: str
    session_id: str | None
    secret_id: str | None
    attempt: int
    provider: str


@dataclass(frozen=True)
class ClaimJoin:
    """A hook's part of the claim statement: the table outer-joined to messages on `messages.session_id`,
    and the columns read of it, labelled `<prefix><column>` so that hooks never clash. A message whose
    joined row is missing (another purpose, or none) reads them as NULL."""

    table: Table
    columns: tuple[str, ...]
    prefix: str


class DeliveryHooks(Protocol):
    """What the dispatcher asks of the owner of a message's purpose.

    `owner` below is whatever the hook reads of the joined row (`owner_of`), or None when the message has
    none. Callbacks run in the record's transaction; they defer their writes (`db.defer_*`) where the
    record may be worked out on a read snapshot (`messages_sent`)."""

    purpose: str
    # Its outer join and columns for the claim and the look ahead (None: the hook joins nothing).
    join: ClaimJoin | None

    def owner_of(self, row: Any) -> Any | None:
        """The owner as the claim read it (from the hook's labelled columns of `row`), or None."""
        ...

    def load_owners(self, session: Session, owner_ids: Sequence[str]) -> Mapping[str, Any]:
        """Owners by id, read under the claim's write lock (the claim statement that updates gave
        back only the messages' columns)."""
        ...

    def closed(self, owner: Any | None) -> str | None:
        """Why a claimed message must not go out any more (its owner's closed status), else None."""
        ...

    def needs_secret(self, owner: Any | None) -> bool:
        """Whether a claimed message that carries no secret yet gets one at this claim."""
        ...

    def make_secret(
        self, message_id: str, owner: Any, channel: str, destination: str
    ) -> tuple[NewSecret, dict[str, Any]]:
        """A secret and its row for `store_secrets`, made outside the claim's transaction when it can."""
        ...

    def store_secrets(self, session: Session, rows: list[dict[str, Any]]) -> None: ...

    def prepare(
        self,
        session: Session,
        templates: TemplateSource,
        message: Any,
        owner: Any | None,
        secret: str | None,
        contexts: Mapping[str, Any],
    ) -> Claimed:
        """What sending the claimed `message` (its claimed row) needs, read after the claim's commit."""
        ...

    def render_contexts(self, session: Session, owners: Sequence[Any]) -> Mapping[str, Any]:
        """The owners' render contexts by owner id (after the claim's commit): from the owners as the
        claim read them where its join has them, else in one read per round."""
        ...

    def render(
        self, claimed: Claimed, public_url: str, host: str
    ) -> tuple[RenderedMessage, str | None, str | None]:
        """The rendered message, and the link and code it carries (for the dev inbox)."""
        ...

    def messages_sent(self, session: Session, sent: list[SentMessage], now: datetime) -> None: ...

    def message_failed(
        self, session: Session, message: Message, authorization: bool, reason: str, now: datetime
    ) -> None: ...

    def message_skipped(self, session: Session, message_id: str, owner_id: str | None) -> None: ...

    def delivery_report(
        self,
        session: Session,
        message: Message,
        status: DeliveryStatus,
        source: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """A provider's report or a hard bounce changed the message's delivery status; `detail` is what
        the report said (a bounce's status code and diagnostic), for the timeline."""
        ...

    def delivery_delayed(
        self, session: Session, message: Message, source: str, detail: Mapping[str, Any]
    ) -> None:
        """A soft bounce: the message is delayed, its delivery status unchanged."""
        ...
