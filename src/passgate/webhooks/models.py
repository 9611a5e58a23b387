from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from passgate.db import Base
from passgate.db.types import JSONType, UTCDateTime


class WebhookEndpoint(Base):
    """Where a client wants its events, which ones, and how they are signed.

    The Standard Webhooks secret is stored sealed (AES-GCM under PASSGATE_SECRET_KEYS, bound to the endpoint
    id); during a rotation the previous secret keeps signing until `previous_secret_until`.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_client", "client_id", "enabled"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200), nullable=True)
    events: Mapped[list[str]] = mapped_column(JSONType)
    channel: Mapped[str | None] = mapped_column(String(8), nullable=True)
    signature_scheme: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sealed_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    sealed_previous_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Start of the current run of failures (None after a success); 5 days of it disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookSigningKey(Base):
    """A client's RSA key for the Kount scheme; the private key is sealed, the public one published.

    A rotation adds a newer key and sets the older keys' `valid_until` to the end of the overlap; until then
    they stay published, so receivers that still hold them keep verifying (see `signing.key_ring`).
    """

    __tablename__ = "webhook_signing_keys"
    __table_args__ = (Index("ix_webhook_signing_keys_client", "client_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    sealed_private_pem: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(Text)  # base64 DER SubjectPublicKeyInfo
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookEvent(Base):
    """One event, written in the transaction of the change it reports (the outbox). `id` is the event id
    receivers dedupe on; `body` is the exact JSON sent on every try."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_client_created", "client_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    sequence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(8), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event on its way to one endpoint (the fan-out row a worker claims).

    `session_id` and `sequence` are copied from the event so the claim query can hold back a session's
    later events until the earlier ones are delivered or given up. `tries` counts the current round (a
    replay starts a new one); `attempts` counts every try ever made.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "endpoint_id", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "endpoint_id", "session_id", "sequence"),
        Index("ix_webhook_deliveries_locks", "status", "locked_until"),
        Index("ix_webhook_deliveries_event", "event_id"),
        Index("ix_webhook_deliveries_client_created", "client_id", "created_at"),  # the retention purge
        # The deliveries log, newest first (migration 0014_scale_indexes).
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    sequence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A fresh value per claim: only the worker holding the current claim may record the outcome.
    lock_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookAttempt(Base):
    """One try of a delivery, for the deliveries log: when, the answer's status, latency, error, next try."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(String(16))  # delivered | retry | failed
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# The tables, for the Core statements of the delivery hot path (typed for mypy).
endpoints_table = cast(Table, WebhookEndpoint.__table__)
deliveries_table = cast(Table, WebhookDelivery.__table__)
events_table = cast(Table, WebhookEvent.__table__)
attempts_table = cast(Table, WebhookAttempt.__table__)
