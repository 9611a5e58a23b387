from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from passgate.db import Base
from passgate.db.types import UTCDateTime


class ClientRetention(Base):
    """A client's retention periods in days; a null column means the documented default (plan.DEFAULTS)."""

    __tablename__ = "client_retention"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    sessions_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decisions_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    webhook_deliveries_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    audit_log_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
