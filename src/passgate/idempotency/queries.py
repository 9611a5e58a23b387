"""The statements of stored answers: the decision path's look-up and take-over on the DBAPI cursor
(`db.fastpath.CursorStatement`, held to `Connection.execute` by tests/unit/db/test_fastpath.py), and the
management API's claim, completion, release and the purge through Core."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from passgate.db.fastpath import CursorStatement, dialect_insert
from passgate.idempotency.models import IdempotencyRecord

TABLE = cast(Table, IdempotencyRecord.__table__)
_t = TABLE.c


class StoredRow(NamedTuple):
    """A record as read: the request it answered (its hash), and the answer (status None: still running)."""

    request_hash: str
    status: int | None
    headers: list[Any] | None
    body: bytes | None
    correlation_id: str | None
    created_at: datetime


_KEY = (
    (_t.client_id == bindparam("b_client_id"))
    & (_t.scope == bindparam("b_scope"))
    & (_t.key == bindparam("b_key"))
)

# Built once: on the decision path, constructing a statement costs more than running it.
_LOOKUP = CursorStatement(
    select(_t.request_hash, _t.status, _t.headers, _t.body, _t.correlation_id, _t.created_at).where(_KEY)
)

# An expired record (past the retention, not yet purged) taken over by a new request: only if it is still
# the one read (its created_at), so two requests cannot both take it over.
_TAKE_OVER = CursorStatement(
    update(TABLE)
    .where(_KEY & (_t.created_at == bindparam("b_seen_at")))
    .values(
        request_hash=bindparam("request_hash"),
        status=bindparam("status"),
        headers=bindparam("headers"),
        body=bindparam("body"),
        correlation_id=bindparam("correlation_id"),
        created_at=bindparam("created_at"),
    )
)


def lookup(conn: Any, client_id: str, scope: str, key: str) -> StoredRow | None:
    """The record of (client, scope, key), or None."""
    rows = _LOOKUP.rows(conn, {"b_client_id": client_id, "b_scope": scope, "b_key": key})
    return StoredRow(*rows[0]) if rows else None


# The look-up of many keys of one (client, scope) at once, by how many keys it takes (a power of two: the
# keys of a batch are padded with repeats of its last key), with the names of its key parameters.
_LOOKUP_MANY: dict[int, tuple[CursorStatement, tuple[str, ...]]] = {}
MAX_KEYS_PER_LOOKUP = 256  # well under any database's limit of parameters per statement


def _lookup_many_statement(size: int) -> tuple[CursorStatement, tuple[str, ...]]:
    found = _LOOKUP_MANY.get(size)
    if found is None:
        names = tuple(f"k{i}" for i in range(size))
        statement = CursorStatement(
            select(
                _t.key, _t.request_hash, _t.status, _t.headers, _t.body, _t.correlation_id, _t.created_at
            ).where(
                (_t.client_id == bindparam("b_client_id"))
                & (_t.scope == bindparam("b_scope"))
                & _t.key.in_([bindparam(name) for name in names])
            )
        )
        found = _LOOKUP_MANY[size] = (statement, names)
    return found


def lookup_many(
    conn: Any, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], StoredRow | None]:
    """The records of these (client, scope, key)s, each as `lookup` gives it (None: no record), in one
    statement per (client, scope)."""
    groups: dict[tuple[str, str], dict[str, None]] = {}
    for client_id, scope, key in keys:
        group = groups.get((client_id, scope))
        if group is None:
            group = groups[(client_id, scope)] = {}
        group[key] = None
    found: dict[tuple[str, str, str], StoredRow | None] = dict.fromkeys(keys)
    for (client_id, scope), group in groups.items():
        every = list(group)
        for start in range(0, len(every), MAX_KEYS_PER_LOOKUP):
            names = every[start : start + MAX_KEYS_PER_LOOKUP]
            size = 1
            while size < len(names):
                size *= 2
            statement, params = _lookup_many_statement(size)
            names += [names[-1]] * (size - len(names))
            values: dict[str, Any] = dict(zip(params, names, strict=True))
            values["b_client_id"] = client_id
            values["b_scope"] = scope
            for key, *row in statement.rows(conn, values):
                found[(client_id, scope, key)] = StoredRow(*row)
    return found


def take_over_statement() -> CursorStatement:
    """The guarded UPDATE that replaces an expired record (for `DeferredWrites.update`)."""
    return _TAKE_OVER


def take_over_values(
    client_id: str, scope: str, key: str, seen_at: datetime, values: dict[str, Any]
) -> dict[str, Any]:
    return {"b_client_id": client_id, "b_scope": scope, "b_key": key, "b_seen_at": seen_at, **values}


# -- management requests: claimed before they run, completed after ---------------------------------------


def claim(session: Session, row: dict[str, Any]) -> bool:
    """Insert the record of a request about to run (status NULL); False when (client, scope, key) exists
    (on PostgreSQL, after the transaction that holds a concurrent insert of it ends)."""
    dialect = session.get_bind().dialect.name
    statement = dialect_insert(dialect, TABLE).values(**row).on_conflict_do_nothing().returning(_t.key)
    return session.execute(statement).first() is not None


def read(session: Session, client_id: str, scope: str, key: str) -> StoredRow | None:
    """The record of (client, scope, key), or None (through Core, for the management API)."""
    row = session.execute(
        select(_t.request_hash, _t.status, _t.headers, _t.body, _t.correlation_id, _t.created_at).where(
            _t.client_id == client_id, _t.scope == scope, _t.key == key
        )
    ).first()
    return StoredRow(*row) if row is not None else None


def take_over(
    session: Session, client_id: str, scope: str, key: str, seen_at: datetime, row: dict[str, Any]
) -> bool:
    """Replace an expired or abandoned record with a new request's, if it is still the one read."""
    result = session.execute(
        update(TABLE)
        .where(_t.client_id == client_id, _t.scope == scope, _t.key == key, _t.created_at == seen_at)
        .values(**row)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(
    session: Session,
    client_id: str,
    scope: str,
    key: str,
    request_hash: str,
    status: int,
    headers: list[Any],
    body: bytes,
) -> bool:
    """Store the answer of the running request that holds the record; False when it no longer does."""
    result = session.execute(
        update(TABLE)
        .where(
            _t.client_id == client_id,
            _t.scope == scope,
            _t.key == key,
            _t.request_hash == request_hash,
            _t.status.is_(None),
        )
        .values(status=status, headers=headers, body=body)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, client_id: str, scope: str, key: str, request_hash: str) -> None:
    """Forget the record of a running request that stored no answer (so a retry runs it again)."""
    session.execute(
        delete(TABLE).where(
            _t.client_id == client_id,
            _t.scope == scope,
            _t.key == key,
            _t.request_hash == request_hash,
            _t.status.is_(None),
        )
    )


def purge(session: Session, cutoff: datetime) -> int:
    """Delete the records made before `cutoff`; returns how many."""
    result = session.execute(delete(TABLE).where(_t.created_at < cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]
