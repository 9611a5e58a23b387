"""Stored answers of requests that may be retried (docs/idempotency.md).

Decisions: the same `inquiryId` from the same client on the same endpoint within `RETENTION` gets the
stored answer. The record is looked up inside the decision's unit of work and written, complete, by the
same transaction as the decision (a deferred insert: `db.deferred`), so a decision and its record exist
together or not at all, and there is no "running" state to see. Of concurrent duplicates the primary key
lets one through: the other's transaction fails on it, and its unit, run again (the group commit runs the
units of a failed batch again one by one), finds the stored answer.

Management POSTs with an `Idempotency-Key` header: the record is claimed (status NULL) in a transaction
of its own before the request runs and completed with its answer after, so a concurrent repeat sees the
first running and is answered 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from passgate.db import transaction
from passgate.db.deferred import DeferredWrites, StaleRows
from passgate.db.group_commit import Ahead, read_ahead
from passgate.idempotency import queries
from passgate.idempotency.exceptions import InquiryReused, KeyReused, RequestInProgress
from passgate.idempotency.queries import TABLE, StoredRow
from passgate.keyring import KeyRing

T = TypeVar("T")
RETENTION = timedelta(hours=24)
MANAGE_SCOPE = "manage"
# A management request still running after this long is taken as abandoned (its process stopped before
# it stored an answer): a repeat then runs it again rather than waiting for the record to expire.
ABANDONED_AFTER = timedelta(seconds=60)


def canonical_json_plain(parsed: Any) -> str:
    """A parsed JSON value as JSON with keys sorted, no whitespace, non-ASCII as is (the canonical form)."""
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# `json.dumps` with arguments builds a JSONEncoder, and from it the C encoder, on every call: about a
# quarter of the time of writing a login body that way. This is that C encoder with the same settings, made
# once. Without the circular-reference check: a value parsed from JSON text cannot contain itself.
_CANONICAL = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, json.JSONEncoder().default, encode_basestring, None, ":", ",", True, False, True
    )
)


def canonical_json(parsed: Any) -> str:
    """`canonical_json_plain(parsed)`, the same text, written by a C encoder made once (a value parsed
    from JSON text; tests/unit/idempotency/test_services.py holds the two to the same text)."""
    if _CANONICAL is None or isinstance(parsed, str):
        return canonical_json_plain(parsed)
    return "".join(_CANONICAL(parsed, 0))


def request_hash(parsed: Any) -> str:
    """sha256 of the request's canonical form: its parsed value as JSON with keys sorted, no whitespace,
    non-ASCII as UTF-8. Whitespace and the order of keys do not change it; any value does."""
    return hashlib.sha256(canonical_json(parsed).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer to replay: status, the headers stored with it, the body's bytes, the correlation id."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    correlation_id: str | None


def _answer(row: StoredRow, body: bytes | None = None) -> StoredAnswer:
    assert row.status is not None and row.body is not None
    headers = [(str(name), str(value)) for name, value in row.headers or ()]
    return StoredAnswer(row.status, headers, bytes(row.body) if body is None else body, row.correlation_id)


def _context(client_id: str, key: str) -> str:
    return f"idempotency:{client_id}:{key}"


# -- decisions -------------------------------------------------------------------------------------------


class DecisionClaim:
    """What a decision's unit found for its inquiry: the stored answer to replay, or none (then the unit
    decides and `remember`s its answer in its own transaction)."""

    __slots__ = ("answer", "client_id", "key", "request_hash", "scope", "seen_at")

    def __init__(
        self,
        client_id: str,
        scope: str,
        key: str,
        request_hash: str,
        answer: StoredAnswer | None,
        seen_at: datetime | None,
    ) -> None:
        self.client_id = client_id
        self.scope = scope
        self.key = key
        self.request_hash = request_hash
        self.answer = answer
        self.seen_at = seen_at  # the created_at of an expired record this one replaces

    def remember(self, session: Session, body: bytes, correlation_id: str, now: datetime) -> None:
        """Store the answer (status 200) with the transaction's other writes, at its commit."""
        values = {
            "request_hash": self.request_hash,
            "status": 200,
            "headers": None,
            "body": body,
            "correlation_id": correlation_id,
            "created_at": now,
        }
        writes = DeferredWrites.of(session)
        if self.seen_at is None:
            writes.insert(
                TABLE, [{"client_id": self.client_id, "scope": self.scope, "key": self.key, **values}]
            )
        else:
            writes.update(
                queries.take_over_statement(),
                [queries.take_over_values(self.client_id, self.scope, self.key, self.seen_at, values)],
            )


class _StoredAnswers:
    """The decision records of a group-commit batch, read in one statement (`db.group_commit.ReadAhead`)."""

    def read(self, session: Session, keys: Sequence[Any]) -> Mapping[Any, Any]:
        return queries.lookup_many(session.connection(), keys)


STORED_ANSWERS = _StoredAnswers()


def claiming(unit: Callable[[Session], T], client_id: str, scope: str, inquiry_id: str) -> Ahead[T]:
    """A decision's unit of work that calls `claim_decision` for this inquiry, handed to the group commit
    with its key: the records of a batch's decisions are then read in one statement, not one each."""
    return Ahead(unit, STORED_ANSWERS, (client_id, scope, inquiry_id))


def claim_decision(
    session: Session, client_id: str, scope: str, inquiry_id: str, hashed: str, now: datetime
) -> DecisionClaim:
    """The stored answer of this inquiry, if any; InquiryReused when it answered a different request."""
    found, row = read_ahead(STORED_ANSWERS, (client_id, scope, inquiry_id))
    if not found:
        row = queries.lookup(session.connection(), client_id, scope, inquiry_id)
    if row is None:
        return DecisionClaim(client_id, scope, inquiry_id, hashed, None, None)
    if row.created_at <= now - RETENTION:
        return DecisionClaim(client_id, scope, inquiry_id, hashed, None, row.created_at)
    if row.request_hash != hashed:
        raise InquiryReused()
    return DecisionClaim(client_id, scope, inquiry_id, hashed, _answer(row), None)


def is_duplicate_record(exc: BaseException) -> bool:
    """Whether a failed decision unit lost the race for its record to a concurrent duplicate (the
    primary key refused its insert): running the unit again finds the stored answer."""
    if isinstance(exc, StaleRows):  # an expired record another request took over first
        return True
    if not isinstance(exc, IntegrityError):
        return False
    text = str(exc.orig).lower()
    return TABLE.name in text or "pk_idempotency_records" in text


# -- management requests -----------------------------------------------------------------------------


def begin_request(
    sessions: sessionmaker[Session],
    keyring: KeyRing,
    client_id: str,
    key: str,
    hashed: str,
    correlation_id: str,
    now: datetime,
) -> StoredAnswer | None:
    """Claim `key` for a request about to run: None when claimed (run it, then `finish_request` or
    `release_request`), the stored answer to replay when it ran before with the same request.
    KeyReused when it ran with a different request, RequestInProgress while the first still runs."""
    row = {
        "client_id": client_id,
        "scope": MANAGE_SCOPE,
        "key": key,
        "request_hash": hashed,
        "status": None,
        "headers": None,
        "body": None,
        "correlation_id": correlation_id,
        "created_at": now,
    }
    with transaction(sessions) as session:
        for _ in range(2):  # twice: the record found may be purged before it is read
            if queries.claim(session, row):
                return None
            found = queries.read(session, client_id, MANAGE_SCOPE, key)
            if found is not None:
                break
        else:
            raise RequestInProgress("Idempotency-Key")
        expired = found.created_at <= now - RETENTION
        abandoned = found.status is None and found.created_at <= now - ABANDONED_AFTER
        if expired or abandoned:
            if queries.take_over(session, client_id, MANAGE_SCOPE, key, found.created_at, row):
                return None
            raise RequestInProgress("Idempotency-Key")
    if found.request_hash != hashed:
        raise KeyReused()
    if found.status is None:
        raise RequestInProgress("Idempotency-Key")
    assert found.body is not None
    try:
        body = keyring.unseal(bytes(found.body).decode(), _context(client_id, key)).encode()
    except ValueError:
        # Sealed with a key retired since: the answer cannot be given again, and running the request
        # again could do it twice.
        raise RequestInProgress("Idempotency-Key", retry_after=3600) from None
    return _answer(found, body)


def finish_request(
    sessions: sessionmaker[Session],
    keyring: KeyRing,
    client_id: str,
    key: str,
    hashed: str,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> bool:
    """Store the answer of the request that claimed `key`; False if its claim was lost meanwhile, or the
    body is not text. The body is sealed with the key ring (a management answer may show a secret once:
    a new API key, a webhook's signing secret), so the table holds no secret in the clear."""
    try:
        sealed = keyring.seal(body.decode(), _context(client_id, key)).encode()
    except UnicodeDecodeError:
        return False
    with transaction(sessions) as session:
        return queries.complete(
            session, client_id, MANAGE_SCOPE, key, hashed, status, [list(h) for h in headers], sealed
        )


def release_request(sessions: sessionmaker[Session], client_id: str, key: str, hashed: str) -> None:
    """Forget the claim of a request whose answer is not kept (a retry runs it again)."""
    with transaction(sessions) as session:
        queries.release(session, client_id, MANAGE_SCOPE, key, hashed)


def purge(session: Session, now: datetime) -> int:
    """Delete the records past the retention (the worker's periodic job); returns how many."""
    return queries.purge(session, now - RETENTION)
