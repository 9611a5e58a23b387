"""Every statement the MFA service runs, behind a named function.

Why here and not in the service: the fast path (statements on the DBAPI cursor, `db.CursorStatement`, built
once because building one and its cache key costs more than running it) has rules of its own, and they are
kept in this one module. What a statement reads comes back as a frozen `SessionSnapshot` / `SessionRow`
(or a small tuple), never as an ORM object the mapper did not load: a reader can only read what was read.
Status changes written here are checked against `mfa.states.TRANSITIONS` (`check_move`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    String,
    Table,
    bindparam,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from passgate.auth.models import Client
from passgate.auth.settings import ClientSettings
from passgate.db.fastpath import CursorStatement, dialect_insert
from passgate.messaging.models import Message
from passgate.mfa.models import FailureCounter, MfaEvent, MfaSecret, MfaSession
from passgate.mfa.secrets import VALID_CODES
from passgate.mfa.states import OPEN, Status, check_move
from passgate.policy.models import Device

SESSIONS = cast(Table, MfaSession.__table__)
SECRETS = cast(Table, MfaSecret.__table__)
DEVICES = cast(Table, Device.__table__)
_COUNTERS = cast(Table, FailureCounter.__table__)
_counters = _COUNTERS.c
_clients = Client.__table__.c
_settings = ClientSettings.__table__.c

# What a status listener may read of the session it is given: where a status changes for many sessions at
# once (`MfaService.messages_sent`) only these columns are read, so a `SessionSnapshot` holds only these.
LISTENER_COLUMNS = (
    "id",
    "client_id",
    "event_type",
    "type",
    "channel",
    "status",
    "termination_reason",
    "delivery_status",
    "send_attempts",
    "verification_attempts",
    "ttl_seconds",
    "expires_at",
    "sequence",
    "source",
)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session as a status listener sees it: the `LISTENER_COLUMNS`, and nothing else (reading another
    attribute is an AttributeError, not a silent None)."""

    id: str
    client_id: str
    event_type: str
    type: str
    channel: str
    status: str
    termination_reason: str | None
    delivery_status: str | None
    send_attempts: int
    verification_attempts: int
    ttl_seconds: int
    expires_at: datetime
    sequence: int
    source: str  # decision | verify | console (the console's own sign-in)

    @classmethod
    def of(cls, mfa: Any) -> SessionSnapshot:
        """The listener columns of a loaded session (ORM, transient or `SessionChanges`)."""
        return cls(
            mfa.id,
            mfa.client_id,
            mfa.event_type,
            mfa.type,
            mfa.channel,
            str(mfa.status),
            mfa.termination_reason,
            None if mfa.delivery_status is None else str(mfa.delivery_status),
            mfa.send_attempts,
            mfa.verification_attempts,
            mfa.ttl_seconds,
            mfa.expires_at,
            mfa.sequence,
            mfa.source,
        )


@dataclass(frozen=True, slots=True)
class SessionRow(SessionSnapshot):
    """A whole session row, as read (`load_locked`, `row_of`)."""

    decision_id: str | None
    template_name: str
    locale: str
    destination: str
    destination_hash: str
    account_id: str | None
    device_session_id: str | None
    max_sends: int
    max_attempts: int
    code_length: int
    created_at: datetime
    updated_at: datetime
    verified_at: datetime | None
    target_url: str | None
    bind_to_device: bool
    match_number: str | None
    sandbox: bool
    render_context: dict[str, Any]
    link_opens: int
    purpose: str | None


# A CursorStatement binds a fixed number of values: a destination is looked up under at most this many
# keyed hashes (the current secret key and the previous ones).
_HASHES = 4
_ROW_FIELDS = tuple(f.name for f in fields(SessionRow))
_SESSION_COLUMN_NAMES = tuple(c.name for c in SESSIONS.c)
# Where each SessionRow field is in a `select(SESSIONS)` row (built positionally: cheaper than keywords).
_ROW_ORDER = tuple(_SESSION_COLUMN_NAMES.index(name) for name in _ROW_FIELDS)


def row_of(mfa: Any) -> SessionRow:
    """A frozen copy of a session the ORM holds (what the API answers after a resend or a cancel)."""
    return SessionRow(*(getattr(mfa, name) for name in _ROW_FIELDS))


def row_from(values: dict[str, Any]) -> SessionRow:
    """A frozen row of a session's column values (a new session's, as it is inserted)."""
    return SessionRow(*(values[name] for name in _ROW_FIELDS))


@dataclass(slots=True)
class SessionChanges:
    """The explicit changes a verify makes to a row it read (`load_locked`): the columns `write_back`
    writes, over the frozen row they started from."""

    row: SessionRow
    status: str
    termination_reason: str | None
    verification_attempts: int
    updated_at: datetime
    verified_at: datetime | None
    sequence: int

    @classmethod
    def of(cls, row: SessionRow) -> SessionChanges:
        return cls(
            row,
            row.status,
            row.termination_reason,
            row.verification_attempts,
            row.updated_at,
            row.verified_at,
            row.sequence,
        )

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def client_id(self) -> str:
        return self.row.client_id

    def after(self) -> SessionRow:
        """The row as `write_back` leaves it."""
        return replace(
            self.row,
            status=self.status,
            termination_reason=self.termination_reason,
            verification_attempts=self.verification_attempts,
            updated_at=self.updated_at,
            verified_at=self.verified_at,
            sequence=self.sequence,
        )

    def snapshot(self) -> SessionSnapshot:
        row = self.row
        return SessionSnapshot(
            row.id,
            row.client_id,
            row.event_type,
            row.type,
            row.channel,
            self.status,
            self.termination_reason,
            row.delivery_status,
            row.send_attempts,
            self.verification_attempts,
            row.ttl_seconds,
            row.expires_at,
            self.sequence,
            row.source,
        )


# -- transitional: an ORM object built without the mapper ---------------------------------------------

_SESSION_CLASS = MfaSession.__mapper__.class_manager


def transient_session(row: dict[str, Any]) -> MfaSession:
    """An MfaSession never added to the ORM session, holding only the columns in `row`: the plain path
    `PlainSession` is checked against (it once stood where that does)."""
    mfa: MfaSession = _SESSION_CLASS.new_instance()
    mfa.__dict__.update(row)
    return mfa


class PlainSession:
    """A session's columns as plain attributes, worked on before they are written: a session being created
    (`MfaService._create`, whose first send and listeners move `sequence`, `send_attempts` and
    `delivery_status`) and a worker's record of sent messages (`ChallengeDelivery.messages_sent`, which moves the
    status, the delivery status and the expiry). It stands in for `transient_session` there: an ORM
    object, even one built without the mapper, reads and writes each attribute through SQLAlchemy's
    instrumentation, which costs more than the rest of the work on it. Checked against
    `transient_session` on generated rows (tests/unit/mfa/test_plain_session.py)."""

    id: str
    client_id: str
    event_type: str
    type: str
    channel: str
    status: str
    termination_reason: str | None
    delivery_status: str | None
    destination: str
    template_name: str
    locale: str
    send_attempts: int
    verification_attempts: int
    ttl_seconds: int
    expires_at: datetime
    updated_at: datetime
    sequence: int
    source: str

    def __init__(self, row: dict[str, Any]) -> None:
        self.__dict__.update(row)


# -- client settings -----------------------------------------------------------------------------------

# What a challenge needs to know about its client, in one read on the transaction's connection (no ORM
# identity map, no autoflush of the other decisions sharing the transaction, no result wrapping).
_CLIENT_CONFIG = CursorStatement(
    select(
        _clients.sandbox,
        _clients.country,
        _settings.client_id.label("has_settings"),
        _settings.link_ttl_seconds,
        _settings.otp_ttl_seconds,
        _settings.otp_length,
        _settings.max_verify_attempts,
        _settings.max_sends,
        _settings.sms_allowed_countries,
        _settings.reject_voip,
        _settings.sms_breaker,
    )
    .select_from(Client.__table__.outerjoin(ClientSettings.__table__, _settings.client_id == _clients.id))
    .where(_clients.id == bindparam("client_id"))
)


def client_config(conn: Any, client_id: str) -> tuple[bool, str, tuple[Any, ...] | None]:
    """The client's sandbox flag, its country and its settings row (link_ttl_seconds, otp_ttl_seconds,
    otp_length, max_verify_attempts, max_sends, sms_allowed_countries, reject_voip, sms_breaker), None without one."""
    [client] = _CLIENT_CONFIG.rows(conn, {"client_id": client_id})
    return bool(client[0]), client[1], tuple(client[3:]) if client[2] is not None else None


# -- sessions ------------------------------------------------------------------------------------------

_LOAD = select(MfaSession).where(
    MfaSession.id == bindparam("session_id"), MfaSession.client_id == bindparam("client_id")
)
_LOAD_LOCKED = _LOAD.with_for_update()


def load(session: Session, client_id: str, session_id: str, lock: bool = False) -> MfaSession | None:
    """The client's session as an ORM object (changed and flushed with the transaction), or None."""
    return session.scalars(
        _LOAD_LOCKED if lock else _LOAD, {"session_id": session_id, "client_id": client_id}
    ).first()


def search_sessions(
    session: Session,
    client_id: str,
    *,
    status: str = "",
    channel: str = "",
    account_id: str = "",
    q: str = "",
    before: datetime | None = None,
    limit: int,
) -> Sequence[MfaSession]:
    """The client's sessions, newest first, at most `limit`: each non-empty filter narrows the list; `q`
    is a session id or an account id (what a support person has at hand); `before` pages back in time."""
    stmt = select(MfaSession).where(MfaSession.client_id == client_id)
    if status:
        stmt = stmt.where(MfaSession.status == status)
    if channel:
        stmt = stmt.where(MfaSession.channel == channel)
    if account_id:
        stmt = stmt.where(MfaSession.account_id == account_id)
    if q:
        stmt = stmt.where((MfaSession.id == q.lower()) | (MfaSession.account_id == q))
    if before is not None:
        stmt = stmt.where(MfaSession.created_at < before)
    return session.scalars(stmt.order_by(MfaSession.created_at.desc(), MfaSession.id).limit(limit)).all()


class SessionPage(NamedTuple):
    """One page of `list_sessions`: its rows, newest first, and the (created_at, id) of the last row when
    more follow."""

    rows: list[SessionRow]
    more_after: tuple[datetime, str] | None


def list_sessions(
    session: Session,
    client_id: str,
    *,
    status: str | None = None,
    channel: str | None = None,
    account_id: str | None = None,
    destination_hashes: Sequence[str] = (),
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> SessionPage:
    """The client's sessions, newest first (then by id), at most `limit`: each filter given narrows the
    list; `destination_hashes` are the keyed hashes of one destination under every configured key;
    `created_from` is inclusive, `created_to` exclusive; `after` is the (created_at, id) of the last row of
    the previous page (keyset paging over ix_mfa_sessions_client_created: a row made meanwhile neither
    shifts nor repeats a page)."""
    stmt = select(MfaSession).where(MfaSession.client_id == client_id)
    if status is not None:
        stmt = stmt.where(MfaSession.status == status)
    if channel is not None:
        stmt = stmt.where(MfaSession.channel == channel)
    if account_id is not None:
        stmt = stmt.where(MfaSession.account_id == account_id)
    if destination_hashes:
        stmt = stmt.where(MfaSession.destination_hash.in_(list(destination_hashes)))
    if created_from is not None:
        stmt = stmt.where(MfaSession.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(MfaSession.created_at < created_to)
    if after is not None:
        at, last_id = after
        stmt = stmt.where(
            (MfaSession.created_at < at) | ((MfaSession.created_at == at) & (MfaSession.id < last_id))
        )
    stmt = stmt.order_by(MfaSession.created_at.desc(), MfaSession.id.desc()).limit(limit + 1)
    rows = [row_of(m) for m in session.scalars(stmt)]
    if len(rows) <= limit:
        return SessionPage(rows, None)
    rows = rows[:limit]
    return SessionPage(rows, (rows[-1].created_at, rows[-1].id))


class PendingKey(NamedTuple):
    """What makes a new challenge the same as a pending one (`pending_session`): a None is matched as a
    None (no account, no device, no purpose), not as "any"."""

    client_id: str
    destination_hash: str
    source: str  # decision | verify
    event_type: str
    template_name: str
    account_id: str | None
    device_session_id: str | None
    purpose: str | None
    bind_to_device: bool


_S = SESSIONS.c
_OPEN_STATUS = or_(*(_S.status == s.value for s in sorted(OPEN)))
# The open, unexpired sessions of a destination, newest first, with what `PendingKey` compares; by the
# `ix_mfa_sessions_pending` index (client, destination). Only the client and the destination are bound:
# a new destination (the usual case) finds no row, and the fewer values bound, the less that costs; the
# rest of the key is compared on the few rows found (`pending_session`).
_KEY_COLUMNS = tuple(f for f in PendingKey._fields if f not in ("client_id", "destination_hash"))
_PENDING = CursorStatement(
    select(_S.id, *(_S[name] for name in _KEY_COLUMNS))
    .where(
        _S.client_id == bindparam("b_client_id"),
        _S.destination_hash == bindparam("b_destination_hash"),
        _OPEN_STATUS,
        _S.expires_at > bindparam("b_now", type_=_S.expires_at.type),
    )
    .order_by(_S.created_at.desc(), _S.id.desc())
)
_SESSION_BY_ID = CursorStatement(select(SESSIONS).where(_S.id == bindparam("b_id")))
# The newest open, unexpired session of a destination from one source (a check by destination).
_NEWEST_PENDING = CursorStatement(
    select(SESSIONS)
    .where(
        _S.client_id == bindparam("b_client_id"),
        _S.destination_hash.in_([bindparam(f"b_hash{i}") for i in range(_HASHES)]),
        _S.source == bindparam("b_source"),
        _OPEN_STATUS,
        _S.expires_at > bindparam("b_now", type_=_S.expires_at.type),
    )
    .order_by(_S.created_at.desc(), _S.id.desc())
    .limit(1)
)


def _session_row(rows: list[tuple[Any, ...]]) -> SessionRow | None:
    return SessionRow(*[rows[0][i] for i in _ROW_ORDER]) if rows else None


def pending_session(conn: Any, key: PendingKey, now: datetime) -> SessionRow | None:
    """The newest session of this key that is still pending (open, not expired), or None. A None in the
    key matches a None (no account, no device, no purpose)."""
    rows = _PENDING.rows(
        conn, {"b_client_id": key.client_id, "b_destination_hash": key.destination_hash, "b_now": now}
    )
    wanted = key[2:]
    for row in rows:
        if tuple(row[1:]) == wanted:
            return _session_row(_SESSION_BY_ID.rows(conn, {"b_id": row[0]}))
    return None


# The two reads a new challenge makes before it writes anything, in one statement (`challenge_reads`): its
# destination's and account's counters that are locked (as `_LOCKED`), and its destination's open,
# unexpired sessions (as `_PENDING`). Each row says which it is: L (its scope in the `id` column), or S.
_READ_KIND = literal_column("'S'", String).label("kind")
_CHALLENGE_READS = CursorStatement(
    union_all(
        select(_READ_KIND, _S.id, *(_S[name] for name in _KEY_COLUMNS), _S.created_at).where(
            _S.client_id == bindparam("b_client_id"),
            _S.destination_hash == bindparam("b_destination_hash"),
            _OPEN_STATUS,
            _S.expires_at > bindparam("b_now", type_=_S.expires_at.type),
        ),
        select(literal_column("'L'", String), _counters.scope, *(null() for _ in _KEY_COLUMNS), null()).where(
            _counters.client_id == bindparam("b_client_id"),
            _counters.locked.is_(True),
            or_(
                (_counters.scope == "destination")
                & (_counters.subject_hash == bindparam("b_destination_hash")),
                (_counters.scope == "account") & (_counters.subject_hash == bindparam("b_account")),
            ),
        ),
    ).order_by(literal_column("kind"), literal_column("created_at").desc(), literal_column("id").desc())
)
_KEY_END = 2 + len(_KEY_COLUMNS)


def challenge_reads(
    conn: Any, key: PendingKey, account_hash: str | None, now: datetime, *, pending: bool = True
) -> tuple[set[str], SessionRow | None]:
    """What a new challenge reads before it writes: which of its destination's and account's counters are
    locked (as `locked_scopes`; not looked at when `account_hash` is None: a sandbox client's challenges
    are never locked out), and, when `pending`, the session of this key still pending (as
    `pending_session`), None when a counter is locked (the challenge is refused then). When both are read
    it is in one statement: a round trip and a cursor less per challenge. Checked against the two reads
    on generated sessions and counters (tests/unit/mfa/test_queries.py)."""
    if account_hash is None:
        return set(), (pending_session(conn, key, now) if pending else None)
    if not pending:
        return locked_scopes(conn, key.client_id, key.destination_hash, account_hash), None
    rows = _CHALLENGE_READS.rows(
        conn,
        {
            "b_client_id": key.client_id,
            "b_destination_hash": key.destination_hash,
            "b_account": account_hash,
            "b_now": now,
        },
    )
    locked = {row[1] for row in rows if row[0] == "L"}
    if locked:
        return locked, None
    wanted = key[2:]
    for row in rows:
        if tuple(row[2:_KEY_END]) == wanted:
            return locked, _session_row(_SESSION_BY_ID.rows(conn, {"b_id": row[1]}))
    return locked, None


_HOLD_KEY = text("SELECT pg_advisory_xact_lock(:k)")


def hold_pending_key(conn: Any, key: PendingKey) -> None:
    """PostgreSQL: hold a lock of this key's own until the transaction ends (an advisory lock, on a 64-bit
    number made from the key), so that a start of the same key in another transaction, in another API
    process, waits here for this one's commit and then finds its session pending. Nothing on SQLite: it
    has one API process (`passgate serve` refuses more), whose identical starts already wait for each
    other (`api.idempotency.OneAtATime`)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(_HOLD_KEY, {"k": pending_lock_number(key)})


def pending_lock_number(key: PendingKey) -> int:
    """The advisory lock's number of a pending key: 64 bits of the SHA-256 of its parts."""
    digest = hashlib.sha256("\x1f".join("" if v is None else str(v) for v in key).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def newest_pending(
    conn: Any, client_id: str, destination_hashes: Sequence[str], source: str, now: datetime
) -> SessionRow | None:
    """The newest pending session of one source for a destination (under any of its keyed hashes, so
    sessions made before a key rotation are found), or None."""
    hashes = list(destination_hashes)[:_HASHES]
    hashes += [hashes[-1]] * (_HASHES - len(hashes))
    values = {f"b_hash{i}": h for i, h in enumerate(hashes)}
    return _session_row(
        _NEWEST_PENDING.rows(conn, {**values, "b_client_id": client_id, "b_source": source, "b_now": now})
    )


def insert_session(conn: Any, row: dict[str, Any]) -> None:
    """The session row written at once (a caller that reads it back in the same transaction)."""
    conn.execute(insert(SESSIONS), row)


# A verify's reads and writes, on the DBAPI cursor: through the ORM (statement cache keys, identity map,
# unit of work) the same handful of statements cost several times what SQLite does.
_SESSION_ROW = CursorStatement(
    select(SESSIONS)
    .where(SESSIONS.c.id == bindparam("b_id"), SESSIONS.c.client_id == bindparam("b_client_id"))
    .with_for_update()
)


def load_locked(conn: Any, client_id: str, session_id: str) -> SessionRow | None:
    """The client's session row, locked for the transaction where the database locks rows (the write lock
    on SQLite, FOR UPDATE on PostgreSQL); None when the client has no such session."""
    rows = _SESSION_ROW.rows(conn, {"b_id": session_id, "b_client_id": client_id})
    if not rows:
        return None
    return _session_row(rows)


# What a verify changed on its row, written back in one statement.
_WRITE_BACK = CursorStatement(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        termination_reason=bindparam("b_reason"),
        verification_attempts=bindparam("b_attempts"),
        updated_at=bindparam("b_updated"),
        verified_at=bindparam("b_verified"),
        sequence=bindparam("b_sequence"),
    )
)


def write_back(session: Session, conn: Any, changes: SessionChanges) -> None:
    """The changes written to their row (the status move checked first). A copy of the session the ORM
    loaded earlier in the transaction is expired, so that it is read again, as now written, before
    anything uses or changes it."""
    row = changes.row
    if changes.status != row.status:
        check_move(row.status, changes.status)
    tracked = session.identity_map.get(session.identity_key(MfaSession, (row.id,)))
    if tracked is not None:
        session.expire(tracked)
    _WRITE_BACK.executemany(
        conn,
        [
            {
                "b_id": row.id,
                "b_status": changes.status,
                "b_reason": changes.termination_reason,
                "b_attempts": changes.verification_attempts,
                "b_updated": changes.updated_at,
                "b_verified": changes.verified_at,
                "b_sequence": changes.sequence,
            }
        ],
    )


# The atomic consume of a verify: only one concurrent answer moves an open session to VERIFIED.
_CONSUME = CursorStatement(
    update(SESSIONS)
    # The statuses as bound values one by one (a CursorStatement does not expand an IN list).
    .where(SESSIONS.c.id == bindparam("b_id"), or_(*(SESSIONS.c.status == s.value for s in sorted(OPEN))))
    .values(status=Status.VERIFIED.value, verified_at=bindparam("b_now"), updated_at=bindparam("b_now"))
)
_STATUS_NOW = CursorStatement(
    select(SESSIONS.c.status, SESSIONS.c.termination_reason).where(SESSIONS.c.id == bindparam("b_id"))
)


def consume(conn: Any, session_id: str, current: str, now: datetime) -> tuple[str, str | None] | None:
    """Move an open session to VERIFIED, if it is still open: None when this call did, else the status
    (and termination reason) that another answer or a sweep left it in. `current` is the status the caller
    read; a move from it that the lifecycle forbids is refused before anything is written."""
    check_move(current, Status.VERIFIED)
    if _CONSUME.executemany(conn, [{"b_id": session_id, "b_now": now}]) == 1:
        return None
    [(status, reason)] = _STATUS_NOW.rows(conn, {"b_id": session_id})
    return status, reason


def status_now(conn: Any, session_id: str) -> tuple[str, str | None]:
    """The session's status and termination reason as the row has them now."""
    [(status, reason)] = _STATUS_NOW.rows(conn, {"b_id": session_id})
    return status, reason


# One more open of a session's link, counted by the database; the new count comes back.
_LINK_OPENED = CursorStatement(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("b_id"))
    .values(link_opens=SESSIONS.c.link_opens + 1)
    .returning(SESSIONS.c.link_opens)
)


def link_opened(conn: Any, session_id: str) -> int:
    """Count one more open of the session's link; the count now."""
    [(opens,)] = _LINK_OPENED.rows(conn, {"b_id": session_id})
    return int(opens)


def _expired(now: datetime) -> tuple[Any, Any]:
    """The sessions still open past their expiry (what the sweeper ends)."""
    return MfaSession.status.in_([s.value for s in OPEN]), MfaSession.expires_at <= now


def any_expired(session: Session, now: datetime) -> bool:
    """Whether an open session has passed its expiry (a read)."""
    return session.execute(select(MfaSession.id).where(*_expired(now)).limit(1)).first() is not None


def expire_due(session: Session, now: datetime, limit: int) -> Sequence[MfaSession]:
    """Open sessions past their expiry, oldest first, locked (those another sweeper holds are skipped)."""
    return session.scalars(
        select(MfaSession)
        .where(*_expired(now))
        .order_by(MfaSession.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def events(session: Session, session_id: str) -> Sequence[MfaEvent]:
    """The session's timeline rows, oldest first."""
    return session.scalars(
        select(MfaEvent).where(MfaEvent.session_id == session_id).order_by(MfaEvent.id)
    ).all()


def last_sent_at(session: Session, session_id: str) -> datetime | None:
    """When the provider last accepted a message of the session (None before the first)."""
    return session.scalar(
        select(Message.sent_at)
        .where(Message.session_id == session_id, Message.sent_at.is_not(None))
        .order_by(Message.sent_at.desc())
        .limit(1)
    )


# -- secrets -------------------------------------------------------------------------------------------

_LIVE_CODES = CursorStatement(
    select(SECRETS.c.secret_hash, SECRETS.c.key_id, SECRETS.c.expires_at)
    .where(
        SECRETS.c.session_id == bindparam("b_session_id"),
        SECRETS.c.kind == "CODE",
        SECRETS.c.active.is_(True),
    )
    .order_by(SECRETS.c.activated_at.desc())
    .limit(VALID_CODES)
)


def live_codes(conn: Any, session_id: str) -> list[tuple[str, str, datetime]]:
    """The hash, hash key id and expiry of the session's last `VALID_CODES` active codes."""
    return [(r[0], r[1], r[2]) for r in _LIVE_CODES.rows(conn, {"b_session_id": session_id})]


def link_secret(session: Session, hashes: Iterable[str]) -> MfaSecret | None:
    """The link secret stored under one of these keyed hashes, or None."""
    return session.scalars(
        select(MfaSecret).where(MfaSecret.secret_hash.in_(list(hashes)), MfaSecret.kind == "LINK")
    ).first()


def session_by_id(session: Session, session_id: str, lock: bool = False) -> MfaSession | None:
    stmt = select(MfaSession).where(MfaSession.id == session_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def recent_secret_ids(session: Session, session_id: str) -> Sequence[str]:
    """The ids of the session's last `VALID_CODES` active secrets (the ones that still verify)."""
    return session.scalars(
        select(MfaSecret.id)
        .where(MfaSecret.session_id == session_id, MfaSecret.active.is_(True))
        .order_by(MfaSecret.activated_at.desc())
        .limit(VALID_CODES)
    ).all()


# messages_sent: the round's sessions, what it and the listeners read, locked where the database can.
SENT_SESSIONS = (
    select(*(SESSIONS.c[name] for name in LISTENER_COLUMNS))
    .where(SESSIONS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(SESSIONS.c.id)
    .with_for_update()
)
EXISTING_SECRETS = select(SECRETS.c.id).where(SECRETS.c.id.in_(bindparam("ids", expanding=True)))
# Once per accepted message of a round: on the DBAPI cursor, not Connection.execute.
ACTIVATE_SECRET = CursorStatement(
    update(SECRETS)
    .where(SECRETS.c.id == bindparam("b_id"))
    .values(active=True, activated_at=bindparam("b_now"), expires_at=bindparam("b_expires"))
)
# Guarded by the version read (`sequence`, moved by every status change): a session that changed since
# is not overwritten (`db.defer_update`).
SENT_SESSION_UPDATE = CursorStatement(
    update(SESSIONS)
    .where(SESSIONS.c.id == bindparam("b_id"), SESSIONS.c.sequence == bindparam("b_read_sequence"))
    .values(
        status=bindparam("b_status"),
        delivery_status=bindparam("b_delivery"),
        updated_at=bindparam("b_updated"),
        expires_at=bindparam("b_expires"),
        sequence=bindparam("b_sequence"),
    )
)


# -- devices -------------------------------------------------------------------------------------------

_DEVICE_TRUST = CursorStatement(
    select(DEVICES.c.trust_state).where(
        DEVICES.c.client_id == bindparam("b_client_id"),
        DEVICES.c.account_id == bindparam("b_account_id"),
        DEVICES.c.device_session_id == bindparam("b_device_session_id"),
    )
)


def device_trust(conn: Any, client_id: str, account_id: str, device_session_id: str) -> str | None:
    """The device's trust state for the account, None for a device not seen."""
    rows = _DEVICE_TRUST.rows(
        conn, {"b_client_id": client_id, "b_account_id": account_id, "b_device_session_id": device_session_id}
    )
    return rows[0][0] if rows else None


# -- failure counters ----------------------------------------------------------------------------------


class CounterState(NamedTuple):
    failures: int
    next_allowed_at: datetime | None
    locked: bool


def _failure_hit(dialect_name: str) -> Any:
    """One more consecutive failure, counted by the database (no read-modify-write to lose a concurrent
    one): the row inserted at 1 or its count moved up; the new count comes back."""
    keys: dict[str, Any] = {
        "client_id": bindparam("b_client_id"),
        "scope": bindparam("b_scope"),
        "subject_hash": bindparam("b_subject"),
    }
    row = dialect_insert(dialect_name, _COUNTERS).values(
        **keys, failures=1, locked=False, next_allowed_at=null(), updated_at=bindparam("b_now")
    )
    return row.on_conflict_do_update(
        index_elements=list(keys),
        set_={"failures": _counters.failures + 1, "updated_at": row.excluded.updated_at},
    ).returning(_counters.failures)


_FAILURE_HIT = CursorStatement(_failure_hit)
_COUNTER_KEY = (
    _counters.client_id == bindparam("b_client_id"),
    _counters.scope == bindparam("b_scope"),
    _counters.subject_hash == bindparam("b_subject"),
)
_FAILURE_WAIT = CursorStatement(
    update(_COUNTERS).where(*_COUNTER_KEY).values(next_allowed_at=bindparam("b_next"))
)
_FAILURE_LOCK = CursorStatement(update(_COUNTERS).where(*_COUNTER_KEY).values(locked=True))
_COUNTER_STATE = CursorStatement(
    select(_counters.failures, _counters.next_allowed_at, _counters.locked).where(*_COUNTER_KEY)
)
# Whether a challenge's destination or account is locked: the scopes of the two counters that are.
_LOCKED = CursorStatement(
    select(_counters.scope).where(
        _counters.client_id == bindparam("b_client_id"),
        _counters.locked.is_(True),
        or_(
            (_counters.scope == "destination") & (_counters.subject_hash == bindparam("b_destination")),
            (_counters.scope == "account") & (_counters.subject_hash == bindparam("b_account")),
        ),
    )
)
_COUNTER_CLEAR = CursorStatement(
    update(_COUNTERS)
    .where(*_COUNTER_KEY)
    .values(failures=0, locked=False, next_allowed_at=null(), updated_at=bindparam("b_now"))
)


def _key(client_id: str, scope: str, subject: str) -> dict[str, Any]:
    return {"b_client_id": client_id, "b_scope": scope, "b_subject": subject}


def counter_state(conn: Any, client_id: str, scope: str, subject: str) -> CounterState | None:
    """The failure counter of one subject (a destination or account keyed hash), None when it has none."""
    rows = _COUNTER_STATE.rows(conn, _key(client_id, scope, subject))
    return CounterState(*rows[0]) if rows else None


def locked_scopes(conn: Any, client_id: str, destination_hash: str, account_hash: str) -> set[str]:
    """Which of the destination's and the account's counters are locked ("destination", "account")."""
    rows = _LOCKED.rows(
        conn, {"b_client_id": client_id, "b_destination": destination_hash, "b_account": account_hash}
    )
    return {r[0] for r in rows}


def record_failure(conn: Any, client_id: str, scope: str, subject: str, now: datetime) -> int:
    """One more consecutive failure of a subject; the count now."""
    [(failures,)] = _FAILURE_HIT.rows(conn, {**_key(client_id, scope, subject), "b_now": now})
    return int(failures)


def set_wait(conn: Any, client_id: str, scope: str, subject: str, until: datetime) -> None:
    """No attempt for this subject before `until`."""
    _FAILURE_WAIT.executemany(conn, [{**_key(client_id, scope, subject), "b_next": until}])


def lock_counter(conn: Any, client_id: str, scope: str, subject: str) -> None:
    """The subject is locked until someone unlocks it."""
    _FAILURE_LOCK.executemany(conn, [_key(client_id, scope, subject)])


def clear_failures(conn: Any, client_id: str, subjects: Iterable[tuple[str, str]], now: datetime) -> None:
    """The subjects' failures, waits and locks cleared ((scope, subject) pairs)."""
    keys = [{**_key(client_id, scope, subject), "b_now": now} for scope, subject in subjects]
    if keys:
        _COUNTER_CLEAR.executemany(conn, keys)
