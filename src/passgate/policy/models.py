from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from passgate.db import Base
from passgate.db.types import JSONType, UTCDateTime


class PolicySet(Base):
    """One per client and event type: the editable draft and a pointer to the active version."""

    __tablename__ = "policy_sets"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    draft: Mapped[dict[str, Any]] = mapped_column(JSONType)
    draft_updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    active_version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    next_version: Mapped[int] = mapped_column(Integer, default=1)


class PolicySetVersion(Base):
    """A published version: written once, never updated."""

    __tablename__ = "policy_set_versions"
    __table_args__ = (UniqueConstraint("client_id", "event_type", "version_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(32))
    version_name: Mapped[str] = mapped_column(String(32))
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    restored_from: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_client_created", "client_id", "created_at"),
        Index("ix_decisions_client_inquiry", "client_id", "inquiry_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(32))
    inquiry_id: Mapped[str] = mapped_column(String(256))
    device_session_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    decision: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str] = mapped_column(String(80))
    set_version: Mapped[str] = mapped_column(String(32))
    tags: Mapped[list[Any]] = mapped_column(JSONType)
    # The request as received, less account.userPassword (never stored).
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Device(Base):
    """A (account, deviceSessionId) pair this client has seen, with its trust state."""

    __tablename__ = "devices"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    device_session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seen: Mapped[bool] = mapped_column(default=False)
    trust_state: Mapped[str | None] = mapped_column(String(16), nullable=True)  # TRUSTED | BANNED
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PolicyList(Base):
    """A named allow/block list of one kind of value."""

    __tablename__ = "policy_lists"
    __table_args__ = (UniqueConstraint("client_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))  # email | emailDomain | phone | ip | country | deviceId | accountId
    description: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # Bumped on every change so API processes know when their cached copy is stale.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PolicyListEntry(Base):
    __tablename__ = "policy_list_entries"

    list_id: Mapped[str] = mapped_column(ForeignKey("policy_lists.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[str] = mapped_column(String(320), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VelocityCounter(Base):
    """Events counted per minute, per client, dimension, key and metric (velocities without Redis).

    A count per minute, not a row per event: reading a window costs at most one row per minute of it,
    however busy the key (an IP under a credential-stuffing attack is exactly the key that must stay cheap).
    """

    __tablename__ = "velocity_counters"

    client_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(12), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    metric: Mapped[str] = mapped_column(String(24), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # Unix time // 60
    count: Mapped[int] = mapped_column(Integer)
