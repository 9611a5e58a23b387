from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from passgate.db import Base
from passgate.db.types import JSONType, UTCDateTime


class Message(Base):
    """The outbox: written in the same transaction as the session; a worker sends it.

    `sealed_secret` holds the code or link token encrypted (AES-GCM, bound to this row's id) only until the
    provider accepted the message; then it is erased, leaving the keyed hash on the session as the only trace.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_due", "status", "next_attempt_at"),
        Index("ix_messages_session", "session_id"),
        Index("ix_messages_provider_id", "provider_message_id"),
        Index("ix_messages_client_created", "client_id", "created_at"),  # the retention purge
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    secret_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    channel: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(254))
    template_name: Mapped[str] = mapped_column(String(100))
    locale: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))  # challenge | test
    sealed_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    delivery_status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(32), nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MessageAttempt(Base):
    __tablename__ = "message_attempts"
    __table_args__ = (Index("ix_message_attempts_message", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(32))
    result: Mapped[str] = mapped_column(String(16))  # sent | retry | failed
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageBounce(Base):
    """A bounce received for an email (`messaging.bounces`): one row per distinct bounce, so the same
    bounce received twice (a relay's retry, the SMTP listener and the HTTP endpoint) counts once."""

    __tablename__ = "message_bounces"
    __table_args__ = (UniqueConstraint("message_id", "bounce_key", name="uq_message_bounces_message_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    bounce_key: Mapped[str] = mapped_column(String(64))  # sha256 of its Message-ID, else of its bytes
    kind: Mapped[str] = mapped_column(String(8))  # hard | soft
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # enhanced status code
    source: Mapped[str] = mapped_column(String(16))  # smtp | http
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DevInboxMessage(Base):
    """What the dev provider 'sent': shown at /dev/inbox so a new user needs no account anywhere."""

    __tablename__ = "dev_inbox"
    __table_args__ = (Index("ix_dev_inbox_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    client_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    html: Mapped[str | None] = mapped_column(Text, nullable=True)
    link: Mapped[str | None] = mapped_column(Text, nullable=True)
    code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClientTemplate(Base):
    """A client's own messaging template; a name shared with a built-in overrides it for that client.

    The locales are stored as the JSON the management API accepted (after save-time validation), so a
    stored template is exactly what the author wrote and is checked again when it is compiled.
    """

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("client_id", "name", name="uq_message_templates_client_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))  # EMAIL | SMS
    kind: Mapped[str] = mapped_column(String(8))  # OTH | OTP
    default_locale: Mapped[str] = mapped_column(String(32))
    locales: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClientBranding(Base):
    """How a client's messages and hosted pages look, and the address its email comes from."""

    __tablename__ = "client_branding"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    company_name: Mapped[str] = mapped_column(String(100))
    logo_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    primary_color: Mapped[str] = mapped_column(String(7))
    support_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    sender_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Up to three domains the client sends from (it has set up SPF/DKIM for the operator's relay on them);
    # from_address, when set, is always on one of them.
    sending_domains: Mapped[list[str]] = mapped_column(JSONType)
    from_address: Mapped[str | None] = mapped_column(String(254), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
