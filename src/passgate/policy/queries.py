"""The decision path's statements on the DBAPI cursor (`db.fastpath.CursorStatement`), behind named
functions: a device's marks and the velocity counts a set reads. Built once (constructing a statement costs
more than running it); tests/unit/db/test_fastpath.py holds each to `Connection.execute`.

The statements the HTTP side needs are here too, behind named functions on the ORM session: a recorded
decision by its correlation id, and a device's trust state set, read and forgotten."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from passgate.db import upsert
from passgate.db.fastpath import CursorStatement
from passgate.policy.models import Decision, Device, VelocityCounter

# Built once: on the decision path, constructing a statement costs more than running it.
_DEVICE = CursorStatement(
    select(Device.seen, Device.trust_state).where(
        Device.client_id == bindparam("client_id"),
        Device.account_id == bindparam("account_id"),
        Device.device_session_id == bindparam("device_session_id"),
    )
)


def device_marks(conn: Any, client_id: str, account_id: str, device_session_id: str) -> list[Any]:
    """(seen, trust_state) of the device for the account, as a list of at most one row."""
    return _DEVICE.rows(
        conn, {"client_id": client_id, "account_id": account_id, "device_session_id": device_session_id}
    )


@lru_cache(maxsize=16)
def _counts_statement(dims: tuple[str, ...]) -> CursorStatement:
    """One statement for every dimension a set reads (a UNION ALL of index ranges), built once per
    combination of dimensions; both windows are summed in one pass."""
    branches = []
    for i, dim in enumerate(dims):
        branches.append(
            select(
                literal(dim).label("dimension"),
                VelocityCounter.metric,
                func.sum(VelocityCounter.count),
                func.sum(
                    case((VelocityCounter.minute > bindparam("hour_cut"), VelocityCounter.count), else_=0)
                ),
            )
            .where(
                VelocityCounter.client_id == bindparam("client_id"),
                VelocityCounter.dimension == dim,
                VelocityCounter.key_hash == bindparam(f"key{i}"),
                VelocityCounter.minute > bindparam("day_cut"),
                VelocityCounter.minute <= bindparam("now_min"),
            )
            .group_by(VelocityCounter.metric)
        )
    return CursorStatement(branches[0] if len(branches) == 1 else union_all(*branches))


def velocity_counts(conn: Any, dims: tuple[str, ...], params: dict[str, Any]) -> list[Any]:
    """(dimension, metric, 24-hour count, 1-hour count) rows for the dimensions a set reads."""
    return _counts_statement(dims).rows(conn, params)


def decision_of(session: Session, client_id: str, decision_id: str) -> Decision | None:
    """The client's recorded decision with this correlation id, or None (another client's is None too)."""
    return session.scalars(
        select(Decision).where(Decision.id == decision_id, Decision.client_id == client_id)
    ).first()


def recent_decisions(session: Session, client_id: str, event_type: str, limit: int) -> list[Decision]:
    """The client's newest recorded decisions of an event type, newest first, at most `limit`."""
    return list(
        session.scalars(
            select(Decision)
            .where(Decision.client_id == client_id, Decision.event_type == event_type)
            .order_by(Decision.created_at.desc(), Decision.id.desc())
            .limit(limit)
        )
    )


def set_device_trust(
    session: Session,
    client_id: str,
    account_id: str,
    device_session_id: str,
    state: str | None,
    now: datetime,
    friendly_name: str | None = None,
) -> None:
    """The device's trust state for the account (TRUSTED, BANNED): inserted, or changed in place. A
    device marked TRUSTED counts as seen; one first known through a ban does not. The trust record keeps
    when it was first set and when it last changed; a `friendly_name` given replaces the stored one, none
    keeps it."""
    table = Device.__table__
    update: dict[str, Any] = {
        "trust_state": state,
        "last_seen_at": now,
        # Bound with the column's own type, so SQLite stores it as every other UTC time.
        "trust_created_at": func.coalesce(
            table.c.trust_created_at, literal(now, table.c.trust_created_at.type)
        ),
        "trust_updated_at": now,
    }
    if friendly_name is not None:
        update["friendly_name"] = friendly_name
    upsert(
        session,
        table,
        {
            "client_id": client_id,
            "account_id": account_id,
            "device_session_id": device_session_id,
            "seen": state == "TRUSTED",
            "trust_state": state,
            "first_seen_at": now,
            "last_seen_at": now,
            "friendly_name": friendly_name,
            "trust_created_at": now,
            "trust_updated_at": now,
        },
        ["client_id", "account_id", "device_session_id"],
        update,
    )


def devices_of(
    session: Session, client_id: str, *, account_id: str | None = None, device_session_id: str | None = None
) -> list[Device]:
    """The client's device rows for an account, or for a device across accounts (at most 1,000, oldest
    first)."""
    stmt = select(Device).where(Device.client_id == client_id)
    if account_id is not None:
        stmt = stmt.where(Device.account_id == account_id)
    if device_session_id is not None:
        stmt = stmt.where(Device.device_session_id == device_session_id)
    order = (Device.first_seen_at, Device.account_id, Device.device_session_id)
    return list(session.scalars(stmt.order_by(*order).limit(1000)))


def device(session: Session, client_id: str, account_id: str, device_session_id: str) -> Device | None:
    """The device's row for the account, or None when the account never used nor marked it."""
    return session.get(Device, (client_id, account_id, device_session_id))


def forget_device(session: Session, client_id: str, account_id: str, device_session_id: str) -> bool:
    """Deletes the device's row for the account (it is new again); False when there was none."""
    row = device(session, client_id, account_id, device_session_id)
    if row is None:
        return False
    session.delete(row)
    return True
