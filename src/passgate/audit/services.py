"""Record and read audit entries. Entries are written in the transaction of the change they describe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.audit.models import AuditEntry


def record(
    session: Session,
    client_id: str,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            client_id=client_id, actor=actor, action=action, target=target, details=details or {}, at=now
        )
    )


def entries(
    session: Session, client_id: str, limit: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    stmt = select(AuditEntry).where(AuditEntry.client_id == client_id)
    if before is not None:
        stmt = stmt.where(AuditEntry.id < before)
    rows = session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)).all()
    return [
        {
            "id": r.id,
            "at": r.at.isoformat().replace("+00:00", "Z"),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "details": r.details,
        }
        for r in rows
    ]
