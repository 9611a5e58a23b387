from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from passgate.db import Base
from passgate.db.types import JSONType, UTCDateTime


class IdempotencyRecord(Base):
    """One request that may be retried, and the answer it got.

    `scope` is the decision endpoint (`/login/v2`, `/newaccountopening/v2`) with the request's `inquiryId`
    as `key`, or `manage` with the `Idempotency-Key` header of a management POST. The primary key is the
    unique constraint that lets exactly one of concurrent duplicates through. `status` is NULL while the
    first request is still running (management POSTs only: a decision's record is written in the
    decision's own transaction, complete). Rows older than the retention (24 h) are purged."""

    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_created_at", "created_at"),)

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    # sha256 (hex) of the request's canonical form (docs/idempotency.md says what is hashed).
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The response headers replayed with the body, as [name, value] pairs.
    headers: Mapped[list[Any] | None] = mapped_column(JSONType, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    correlation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
