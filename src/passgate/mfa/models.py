from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from passgate.db import Base
from passgate.db.types import JSONType, UTCDateTime


class MfaSession(Base):
    """One challenge: a login MFA (`mfa`) or an account-opening verification (`verification`)."""

    __tablename__ = "mfa_sessions"
    __table_args__ = (
        Index("ix_mfa_sessions_client_created", "client_id", "created_at"),
        Index("ix_mfa_sessions_open_expiry", "status", "expires_at"),
        # The session search by account and the erasure (migration 0014_scale_indexes).
        Index("ix_mfa_sessions_client_account", "client_id", "account_id", "created_at"),
        # A pending session for the same destination is looked up before a new one is made
        # (`queries.pending_session`).
        Index("ix_mfa_sessions_pending", "client_id", "destination_hash", "created_at"),
        # The session a decision started, for the console's activity list and decision page
        # (`console.activity.sessions_of`; migration 0016_session_decision_index).
        Index("ix_mfa_sessions_decision", "decision_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    decision_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    event_type: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(16))  # NONCE_OTH | OTP
    channel: Mapped[str] = mapped_column(String(8))  # EMAIL | SMS
    template_name: Mapped[str] = mapped_column(String(100))
    locale: Mapped[str] = mapped_column(String(16))
    # The address is needed to resend; it is shown masked and never logged.
    destination: Mapped[str] = mapped_column(String(254))
    destination_hash: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    device_session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    termination_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    delivery_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)
    verification_attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_sends: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    code_length: Mapped[int] = mapped_column(Integer, default=6)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    target_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    bind_to_device: Mapped[bool] = mapped_column(Boolean, default=False)
    match_number: Mapped[str | None] = mapped_column(String(2), nullable=True)
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    render_context: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Per-session order of status events, so webhook receivers can sort MESSAGE_SENT before VERIFIED.
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # Opens of the session's link (GET or HEAD); only the first few get a timeline row each.
    link_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Who started the session: a decision's CHALLENGE ("decision") or the Verify API ("verify").
    source: Mapped[str] = mapped_column(String(16), default="decision", server_default="decision")
    # The Verify API's purpose (signup, email_change, password_reset, other); None for a decision's.
    purpose: Mapped[str | None] = mapped_column(String(16), nullable=True)


class MfaSecret(Base):
    """A code or link token, only as a keyed hash. Pending until the provider accepted its message."""

    __tablename__ = "mfa_secrets"
    __table_args__ = (
        Index("ix_mfa_secrets_session", "session_id"),
        Index("ix_mfa_secrets_hash", "secret_hash"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("mfa_sessions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # CODE | LINK
    secret_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MfaEvent(Base):
    """The session's timeline: sends, delivery reports, link opens, attempts, status changes. Never a code."""

    __tablename__ = "mfa_events"
    __table_args__ = (Index("ix_mfa_events_session", "session_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("mfa_sessions.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FailureCounter(Base):
    """Consecutive verification failures per destination and per account (NIST SP 800-63B throttling)."""

    __tablename__ = "mfa_failure_counters"

    client_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # destination | account
    subject_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_allowed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SmsBreaker(Base):
    """The SMS pumping breaker of one client and destination country as last changed (`mfa.breaker`): what
    the console shows. The breaker itself runs on its store (memory or Redis); this row and the
    transitions are its durable record."""

    __tablename__ = "sms_breakers"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # closed | open | half_open
    mode: Mapped[str] = mapped_column(String(16))  # monitor | enforce, when it changed
    sent: Mapped[int] = mapped_column(Integer)  # the window's counts when it changed
    verified: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When an open breaker starts probing (the cool-down's end); null otherwise.
    probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SmsBreakerTransition(Base):
    """Every state change of a breaker, in order (the console's history, the audit of what was refused)."""

    __tablename__ = "sms_breaker_transitions"
    __table_args__ = (Index("ix_sms_breaker_transitions_client_at", "client_id", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    country: Mapped[str] = mapped_column(String(2))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    sent: Mapped[int] = mapped_column(Integer)
    verified: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
