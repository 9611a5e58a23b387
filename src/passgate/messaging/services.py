"""The outbox dispatcher: claim due messages, render, send, record every attempt, retry or give up loudly."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, TypeVar, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, bindparam, null, or_, select, union_all, update
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.models import Client
from passgate.batching import GroupCommitter
from passgate.clock import Clock
from passgate.db import HotStatement, defer_insert, defer_update, is_sqlite, read_only, transaction
from passgate.keyring import KeyRing
from passgate.messaging import test_sends
from passgate.messaging.branding import from_header
from passgate.messaging.models import Message, MessageAttempt
from passgate.messaging.render_pool import SENDING, RenderPool, RenderTimeout
from passgate.messaging.senders.base import (
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    SendError,
    SmsSender,
    TemporarySendError,
)
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import RETRY_SCHEDULE, DeliveryStatus, MessageStatus
from passgate.messaging.templates import (
    Brand,
    MessageTemplate,
    PersonName,
    RenderContext,
    TemplateRenderError,
    render,
)
from passgate.mfa.models import MfaSession
from passgate.mfa.services import MfaService, NewSecret, SentMessage
from passgate.mfa.states import is_terminal
from passgate.observability import Metrics

log = logging.getLogger("passgate.worker")
T = TypeVar("T")
# Codes and link tokens made before a claim (`Dispatcher.look_ahead`), by message id: each with its row.
Premade = dict[str, tuple[NewSecret, dict[str, Any]]]
# A claimed round: each message's row, its session's row (None for a test send) and the secret made for it.
ClaimedRows = list[tuple[Any, Any, str | None]]
# A message of a round after rendering: what to send (with its link and code), why it cannot be sent, or
# _DEFERRED (to the next round).
Rendered = tuple["OutgoingEmail | OutgoingSms", str | None, str | None] | SendError | object
_DEFERRED = object()
LOCK_SECONDS = 60
# Messages claimed per round. The round's sends run concurrently (over the SMTP sender's pooled
# connections); under load the in-process worker waits on the GIL between SMTP replies, so a round of many
# keeps more conversations moving per wait: measured with passgate serve at full challenge load, 50 -> 200
# per round took the mails delivered while the load ran from ~240/s to ~450/s.
ROUND_LIMIT = 200
# Render time a client's messages may take in one round (see Dispatcher._render_batch).
ROUND_RENDER_SECONDS = 0.25
# See `Dispatcher._send_recording_early`: how long the first finished sends of a round wait for others to
# be recorded with, while the round goes on.
RECORD_WINDOW = 0.05


@dataclass
class Claimed:
    message_id: str
    client_id: str
    channel: str
    destination: str
    attempt: int
    secret: str | None
    template: MessageTemplate | None
    brand: Brand
    locale: str
    context: dict[str, Any]
    ttl_minutes: int
    mfa_type: str | None
    sandbox: bool
    # "test" for a management test send (no MFA session, sample values, marked as a test).
    purpose: str = "challenge"
    from_address: str | None = None


@dataclass
class Sent:
    """A message the provider accepted, waiting to be recorded with the others of its round."""

    claimed: Claimed
    provider: str
    provider_id: str
    started: datetime


# What a send comes back with (`Dispatcher._send_one`): the accepted send, or how to record its failure.
Outcome = Sent | Callable[[Session], None]


_messages = cast(Table, Message.__table__)
# The claimed messages a round's record finds still SENDING (locked on PostgreSQL, as the update was).
_STILL_SENDING = (
    select(_messages.c.id, _messages.c.session_id, _messages.c.secret_id)
    .where(_messages.c.id.in_(bindparam("ids", expanding=True)), _messages.c.status == MessageStatus.SENDING)
    .with_for_update()
)
# An accepted message, SENT, with its provider's id, if it is still SENDING (`db.defer_update`: the record
# may have read it on a snapshot).
_MARK_SENT = HotStatement(
    update(_messages)
    .where(_messages.c.id == bindparam("mid"), _messages.c.status == MessageStatus.SENDING.value)
    .values(
        status=MessageStatus.SENT.value,
        delivery_status=DeliveryStatus.SENT.value,
        sent_at=bindparam("now"),
        sealed_secret=null(),
        locked_until=null(),
        last_error=null(),
        provider=bindparam("provider"),
        provider_message_id=bindparam("provider_id"),
    )
)
_sessions_table = cast(Table, MfaSession.__table__)
_QUEUED_DUE = (_messages.c.status == MessageStatus.QUEUED) & (_messages.c.next_attempt_at <= bindparam("now"))
# A worker that died mid-send leaves SENDING with an expired lock: take it over.
_STALE_DUE = (_messages.c.status == MessageStatus.SENDING) & (_messages.c.locked_until < bindparam("now"))
_IS_DUE = or_(_QUEUED_DUE, _STALE_DUE)


def _first_due(columns: tuple[Any, ...], order: tuple[Any, ...]) -> Any:
    """`columns` (of messages outer-joined to their sessions) of the first `limit` due messages by `order`.

    Each kind of due message (queued, or claimed by a worker whose claim expired) is read in the order of
    the due-messages index and stops at `limit`; the two short lists are merged. One statement over
    `_IS_DUE` with the same ORDER BY sorted every due message first: after an outage with 50,000 mails
    waiting, 22 ms per read, and a round reads twice (the look ahead and the claim)."""
    joined = _messages.outerjoin(_sessions_table, _sessions_table.c.id == _messages.c.session_id)

    def first(kind: Any) -> Any:
        # Ordered by the index's own column only: a tie-breaker there would sort every due message again.
        return (
            select(*columns)
            .select_from(joined)
            .where(kind)
            .order_by(_messages.c.next_attempt_at)
            .limit(bindparam("limit"))
        )

    both = union_all(select(first(_QUEUED_DUE).subquery()), select(first(_STALE_DUE).subquery())).subquery()
    return select(both).order_by(*(both.c[c.key] for c in order)).limit(bindparam("limit"))


_DUE = (
    select(_messages.c.id)
    .where(_IS_DUE)
    .order_by(_messages.c.next_attempt_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# What a claim gives back of each message it takes (its RETURNING, or the read of a snapshot claim), in
# the order of `_ClaimedRow`.
_CLAIMED_COLUMNS = (
    _messages.c.id,
    _messages.c.client_id,
    _messages.c.session_id,
    _messages.c.channel,
    _messages.c.destination,
    _messages.c.template_name,
    _messages.c.locale,
    _messages.c.purpose,
    _messages.c.sealed_secret,
    _messages.c.secret_id,
    _messages.c.attempts,
    _messages.c.next_attempt_at,
)
_CLAIM = (
    update(_messages)
    .where(_messages.c.id.in_(_DUE.scalar_subquery()))
    .values(
        status=MessageStatus.SENDING.value,
        attempts=_messages.c.attempts + 1,
        locked_until=bindparam("until"),
        locked_by=bindparam("by"),
    )
    .returning(*_CLAIMED_COLUMNS)
)
# What the claim reads of its sessions under the write lock: whether they are still open, and what a
# code or link token is made from. Their render context (JSON) is read after the commit (`prepare`).
_CLAIM_SESSIONS = select(
    _sessions_table.c.id,
    _sessions_table.c.status,
    _sessions_table.c.ttl_seconds,
    _sessions_table.c.type,
    _sessions_table.c.sandbox,
    _sessions_table.c.code_length,
).where(_sessions_table.c.id.in_(bindparam("ids", expanding=True)))
_RENDER_CONTEXTS = select(_sessions_table.c.id, _sessions_table.c.render_context).where(
    _sessions_table.c.id.in_(bindparam("ids", expanding=True))
)
# The round a claim worked out on a read snapshot takes (`_claim_on_snapshot`): the due messages as the
# claim's RETURNING gives them, each with its session's row.
_DUE_ROUND = _first_due(
    (
        *_CLAIMED_COLUMNS,
        _sessions_table.c.id.label("s_id"),
        _sessions_table.c.status.label("s_status"),
        _sessions_table.c.ttl_seconds.label("s_ttl_seconds"),
        _sessions_table.c.type.label("s_type"),
        _sessions_table.c.sandbox.label("s_sandbox"),
        _sessions_table.c.code_length.label("s_code_length"),
    ),
    (_messages.c.next_attempt_at, _messages.c.id),
)
# One message of such a round claimed, only if it is still due (`db.defer_update`: else the claim runs
# again with the write lock held).
_CLAIM_ONE = HotStatement(
    update(_messages)
    .where(_messages.c.id == bindparam("mid"), _IS_DUE)
    .values(
        status=MessageStatus.SENDING.value,
        attempts=_messages.c.attempts + 1,
        locked_until=bindparam("until"),
        locked_by=bindparam("by"),
        secret_id=bindparam("secret_id"),
        sealed_secret=bindparam("sealed"),
    )
)


class _ClaimedRow(NamedTuple):
    """A message as the claim's RETURNING gives it (attempts counted), for a claim worked out on a snapshot:
    the fields of `_CLAIMED_COLUMNS`, in their order."""

    id: str
    client_id: str
    session_id: str | None
    channel: str
    destination: str
    template_name: str
    locale: str
    purpose: str
    sealed_secret: str | None
    secret_id: str | None
    attempts: int
    next_attempt_at: datetime


class _SessionOfClaim(NamedTuple):
    id: str
    status: str
    ttl_seconds: int
    type: str
    sandbox: bool
    code_length: int


# The look before a claim (`look_ahead`), in a transaction that only reads: the messages the claim would
# take, with what their codes or link tokens are made from.
_LOOK_AHEAD = _first_due(
    (
        _messages.c.id.label("message_id"),
        _messages.c.channel,
        _messages.c.destination,
        _messages.c.secret_id,
        _messages.c.purpose,
        _messages.c.next_attempt_at,
        _sessions_table.c.id,
        _sessions_table.c.type,
        _sessions_table.c.sandbox,
        _sessions_table.c.code_length,
        _sessions_table.c.ttl_seconds,
    ),
    (_messages.c.next_attempt_at,),
)
# Once per claimed message that gets its code or link token at the claim.
_SET_SECRET = HotStatement(
    update(_messages)
    .where(_messages.c.id == bindparam("mid"))
    .values(secret_id=bindparam("secret_id"), sealed_secret=bindparam("sealed"))
)
_SKIP = (
    update(_messages)
    .where(_messages.c.id == bindparam("mid"))
    .values(
        status=MessageStatus.FAILED.value,
        attempts=_messages.c.attempts - 1,
        last_error=bindparam("error"),
        sealed_secret=None,
        locked_until=None,
    )
)


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        keyring: KeyRing,
        templates: TemplateSource,
        mfa: MfaService,
        email_sender: EmailSender,
        sms_sender: SmsSender,
        public_url: str,
        mail_from: str,
        metrics: Metrics,
        worker_id: str,
        sandbox_sender: Any,
        retry_schedule: tuple[float, ...] = RETRY_SCHEDULE,
        lock_seconds: int = LOCK_SECONDS,
        committer: GroupCommitter | None = None,
        render_pool: RenderPool = SENDING,
    ) -> None:
        self.committer = committer
        # Templates render there, never on the event loop the round's sends run on.
        self.render_pool = render_pool
        self.lock_seconds = lock_seconds
        # Sandbox clients' messages never leave the machine: they go to the dev inbox whatever is configured.
        self.sandbox_sender = sandbox_sender
        self.sessions = sessions
        self.clock = clock
        self.keyring = keyring
        self.templates = templates
        self.mfa = mfa
        self.email_sender = email_sender
        self.sms_sender = sms_sender
        self.public_url = public_url
        self.host = urlsplit(public_url).hostname or "localhost"
        self.mail_from = mail_from
        self.metrics = metrics
        self.worker_id = worker_id
        self.retry_schedule = retry_schedule
        # A long-running worker keeps provider connections open between rounds (see `release`); a one-off
        # round (a script, a test) closes what it opened before its event loop goes away.
        self.keep_connections = False
        # The event loop the group commit runs on, when the dispatcher runs on another (see `_db`).
        self.home_loop: asyncio.AbstractEventLoop | None = None
        # SQLite: a round's claim is worked out on a read snapshot (`_claim_on_snapshot`). PostgreSQL
        # claims with FOR UPDATE SKIP LOCKED, so that workers never wait on each other's rows.
        bind = sessions.kw.get("bind")
        self._snapshots = bind is not None and is_sqlite(bind)
        # Messages claimed together with the last round's record, sent by the next round (`run_once`).
        self._claimed_ahead: ClaimedRows | None = None
        # Sends of a round that finish within this many seconds of each other are recorded together
        # (`_send_recording_early`).
        self.record_window = RECORD_WINDOW

    # -- claiming (one short transaction) --------------------------------------------------------------

    def claim(self, limit: int = 20, premade: Premade | None = None) -> list[Claimed]:
        with transaction(self.sessions) as session:
            rows = self._claim(session, limit, premade)
        return self.prepare(rows)

    def look_ahead(self, limit: int) -> Premade | None:
        """Before a claim, with a read (no write lock on SQLite): None when nothing is due (the claim is
        skipped), else the codes and link tokens of the due messages that need one, made now
        (`MfaService.make_secret`), by message id. The claim stores those of the messages it takes, so
        the hashing and sealing happen outside its transaction, which the API's decisions wait for."""
        with read_only(self.sessions) as session:
            due = session.connection().execute(_LOOK_AHEAD, {"now": self.clock.now(), "limit": limit}).all()
        if not due:
            return None
        return {
            r.message_id: self.mfa.make_secret(r.message_id, r, r.channel, r.destination)
            for r in due
            if r.id is not None and r.secret_id is None and r.purpose != test_sends.PURPOSE
        }

    def _secret_for(
        self, m: Any, mfa: Any | None, premade: Premade | None
    ) -> tuple[NewSecret, dict[str, Any]] | None:
        """The code or link token a claimed message goes out with, if it needs one now (a challenge's
        message that has none yet): the one made before the claim, else one made here."""
        if mfa is None or m.secret_id is not None or m.purpose == test_sends.PURPOSE:
            return None
        pre = premade.get(m.id) if premade else None
        return pre if pre is not None else self.mfa.make_secret(m.id, mfa, m.channel, m.destination)

    def _claim(
        self,
        session: Session,
        limit: int,
        premade: Premade | None = None,
    ) -> ClaimedRows:
        """Take a round: the claimed messages' rows, each with its session's row (None for a test send)
        and the code or link token made for it now (None when it had one, or needs none): a challenge
        message gets its secret when a worker first claims it (`MfaService.new_secret`).
        Only the statements that must hold the write lock run here; what sending needs is worked out
        after the commit (`prepare`): on SQLite the API waits for this lock, so every microsecond spent
        holding it is one the API may spend idle."""
        now = self.clock.now()
        conn = session.connection()
        # One statement takes the round: the due rows (FOR UPDATE SKIP LOCKED on PostgreSQL, so workers
        # never wait on each other's rows; SQLite's write lock serialises them) move to SENDING, attempt
        # counted and claim stamped, and come back. An ORM load, attribute sets and a flush of the same
        # rows cost the worker more than sending them.
        due = sorted(
            conn.execute(
                _CLAIM,
                {
                    "now": now,
                    "limit": limit,
                    "until": now + timedelta(seconds=self.lock_seconds),
                    "by": self.worker_id,
                },
            ).all(),
            key=lambda m: (m.next_attempt_at, m.id),
        )
        if not due:
            return []
        # The sessions of the round in one read.
        session_ids = [m.session_id for m in due if m.session_id]
        sessions = (
            {s.id: s for s in conn.execute(_CLAIM_SESSIONS, {"ids": session_ids})} if session_ids else {}
        )
        rows: ClaimedRows = []
        skipped = []
        made = []
        stored = []
        for m in due:
            mfa = sessions.get(m.session_id) if m.session_id else None
            if mfa is not None and is_terminal(mfa.status):
                skipped.append((m, mfa.status))
                continue
            fresh = None
            pre = self._secret_for(m, mfa, premade)
            if pre is not None:
                secret, row = pre
                stored.append(row)
                made.append({"mid": m.id, "secret_id": secret.secret_id, "sealed": secret.sealed})
                fresh = secret.value
            rows.append((m, mfa, fresh))
        if made:
            self.mfa.store_secrets(session, stored)
            _SET_SECRET.executemany(conn, made)
        if skipped:
            # Closed before it went out: not sent, and not counted as an attempt.
            conn.execute(
                _SKIP,
                [{"mid": m.id, "error": f"not sent: session {status}"} for m, status in skipped],
            )
            for m, _ in skipped:
                self.mfa.message_skipped(session, m.id, m.session_id)
        return rows

    def _claim_on_snapshot(
        self,
        session: Session,
        limit: int,
        premade: Premade | None = None,
    ) -> ClaimedRows:
        """`_claim` for a unit worked out on a read snapshot (SQLite, `writes_at_commit`): the due messages
        are read, and each one's claim (with the code or link token made for it) is written at commit
        only if it is still due then (`db.defer_update`): if another worker took one meanwhile, nothing
        is written and the unit runs again with the write lock held. A round with a message whose session
        closed goes the ordinary way at once (`_claim`: its skip writes are refused on a snapshot)."""
        now = self.clock.now()
        due = session.connection().execute(_DUE_ROUND, {"now": now, "limit": limit}).all()
        if not due:
            return []
        if any(r.s_id is not None and is_terminal(r.s_status) for r in due):
            return self._claim(session, limit, premade)
        until = now + timedelta(seconds=self.lock_seconds)
        rows: ClaimedRows = []
        claims = []
        stored = []
        for r in due:
            mfa = (
                _SessionOfClaim(r.s_id, r.s_status, r.s_ttl_seconds, r.s_type, r.s_sandbox, r.s_code_length)
                if r.s_id is not None
                else None
            )
            secret_id, sealed, fresh = r.secret_id, r.sealed_secret, None
            pre = self._secret_for(r, mfa, premade)
            if pre is not None:
                secret, row = pre
                stored.append(row)
                secret_id, sealed, fresh = secret.secret_id, secret.sealed, secret.value
            claims.append(
                {
                    "mid": r.id,
                    "now": now,
                    "until": until,
                    "by": self.worker_id,
                    "secret_id": secret_id,
                    "sealed": sealed,
                }
            )
            m = _ClaimedRow(*r[: len(_CLAIMED_COLUMNS)])._replace(
                sealed_secret=sealed, secret_id=secret_id, attempts=r.attempts + 1
            )
            rows.append((m, mfa, fresh))
        self.mfa.store_secrets(session, stored)
        defer_update(session, _CLAIM_ONE, claims)
        return rows

    def prepare(self, rows: ClaimedRows) -> list[Claimed]:
        """What sending the claimed rows needs (the secret unsealed, template, brand, sender), read outside
        the claim's transaction: templates and brands come from their caches, and the rare miss reads in
        a transaction of its own that takes no write lock (`db.read_only`)."""
        if not rows:
            return []
        with read_only(self.sessions) as session:
            ids = [mfa.id for _, mfa, _ in rows if mfa is not None]
            contexts = dict(session.connection().execute(_RENDER_CONTEXTS, {"ids": ids}).all()) if ids else {}
            return [
                self._prepare(session, m, mfa, fresh, contexts.get(mfa.id) if mfa is not None else None)
                for m, mfa, fresh in rows
            ]

    def _prepare(
        self, session: Session, m: Any, mfa: Any | None, fresh: str | None, ctx: dict[str, Any] | None
    ) -> Claimed:
        """What sending needs, from the claimed message's row and its session's (Core rows), the secret
        made at this claim (`fresh`), if one was, and the session's render context."""
        secret = fresh
        if secret is None and m.sealed_secret:
            try:
                secret = self.keyring.unseal(m.sealed_secret, m.id)
            except ValueError:
                secret = None  # the key is gone: the send fails permanently below
        if m.purpose == test_sends.PURPOSE:
            return self._prepare_test(session, m)
        return Claimed(
            message_id=m.id,
            client_id=m.client_id,
            channel=m.channel,
            destination=m.destination,
            attempt=m.attempts,
            secret=secret,
            template=self.templates.get(session, m.client_id, m.template_name),
            brand=self.templates.brand(session, m.client_id),
            locale=m.locale,
            context=dict(ctx or {}),
            ttl_minutes=max(1, (mfa.ttl_seconds if mfa else 600) // 60),
            mfa_type=mfa.type if mfa else None,
            sandbox=bool(mfa and mfa.sandbox),
            from_address=self.templates.from_address(session, m.client_id),
        )

    def _prepare_test(self, session: Session, m: Any) -> Claimed:
        template = self.templates.get(session, m.client_id, m.template_name)
        client = session.get(Client, m.client_id)
        minutes, code_length = test_sends.sample_settings(session, client, template)
        return Claimed(
            message_id=m.id,
            client_id=m.client_id,
            channel=m.channel,
            destination=m.destination,
            attempt=m.attempts,
            secret=None,
            template=template,
            brand=self.templates.brand(session, m.client_id),
            locale=m.locale,
            context={"codeLength": code_length},
            ttl_minutes=minutes,
            mfa_type=None,
            # A sandbox client's test sends stay on the machine, like its challenges.
            sandbox=bool(client is None or client.sandbox),
            purpose=m.purpose,
            from_address=self.templates.from_address(session, m.client_id),
        )

    # -- sending ---------------------------------------------------------------------------------------

    async def _db(self, fn: Callable[[Session], T], writes_at_commit: bool = False) -> T:
        """A unit of work: in the API's group commit when it runs (one writer, no thread hand-over),
        else in a transaction of its own on a thread.

        The workers of `passgate serve` run on a loop of their own, while on SQLite the group commit runs
        on the API's loop (`home_loop`): their units are handed over to it. Committing them from a thread
        of their own instead makes the two writers queue on SQLite's write lock, and a writer that finds
        it taken sleeps in SQLite's busy handler — the API's loop included — well after it is free."""
        committer = self.committer
        if committer is not None and committer.serves_this_loop():
            return await committer.run(fn, writes_at_commit)
        home = self.home_loop
        if committer is not None and committer.running and home is not None and home.is_running():
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(committer.run(fn, writes_at_commit), home)
            )
        return await asyncio.to_thread(self._tx, fn)

    def _tx(self, fn: Callable[[Session], T]) -> T:
        with transaction(self.sessions) as session:
            return fn(session)

    async def run_once(self, limit: int = ROUND_LIMIT, chain: bool = True) -> int:
        """One round: claim what is due, send it, record the results. Returns how many messages it took.

        `chain` (a long-running worker on SQLite, `keep_connections`): the round's record and the next
        round's claim are written in one transaction. Both are worked out on one read snapshot and the
        write lock is taken once for the two; the next call sends what was claimed (`has_claimed`). A
        worker that stops calls `run_once(chain=False)` to send it first; one killed leaves those
        messages claimed, and they are taken over when the claim expires, as for a kill mid-send."""
        try:
            # (An empty claim ahead, every message taken by another worker meanwhile, looks again.)
            rows, self._claimed_ahead = self._claimed_ahead or None, None
            if rows is None:
                premade = self.look_ahead(limit)
                if premade is None:
                    return 0
                rows = await self._take(limit, premade)
            if not rows:
                return 0
            claimed = self.prepare(rows)
            outcomes = await self._send_recording_early(self._sends(claimed))
            record = partial(self._record_outcomes, outcomes)

            # The accepted ones only read and defer their writes: on SQLite the group commit works them
            # out on a read snapshot and holds the write lock only for their statements, the lock the
            # API's decisions wait for; a row changed in between sends the round back to run again with
            # the lock held (db.defer_update). A failure writes through the ORM: the ordinary way.
            premade = None
            if chain and self._snapshots and self.keep_connections:
                try:
                    premade = self.look_ahead(limit)
                except Exception:  # the record goes alone; the next round looks again
                    log.exception("looking ahead failed", extra={"workerId": self.worker_id})
            if premade is None:
                await self._db(record, writes_at_commit=True)
                return len(claimed)
            # Submitted in the same turn of the loop, the two units land in one group-commit batch. The
            # look ahead ran before the record: this round's messages were still SENDING (not due), and
            # the claim's guards check again at the write.
            recorded, taken = await asyncio.gather(
                self._db(record, writes_at_commit=True), self._take(limit, premade), return_exceptions=True
            )
            if not isinstance(taken, BaseException):
                self._claimed_ahead = taken
            for outcome in (recorded, taken):
                if isinstance(outcome, BaseException):
                    raise outcome
            return len(claimed)
        finally:
            if not self.keep_connections:
                await self.release()

    async def _send_recording_early(self, sends: list[Coroutine[Any, Any, Outcome]]) -> list[Outcome]:
        """Runs the round's sends (one coroutine per message) concurrently. While some are still going,
        those that finished are recorded (with those finishing within `record_window` of the first, in one
        unit of work): an accepted message waits for its record no longer than that and a transaction, not
        for the round's slowest send, so a worker that dies mid-round leaves unrecorded (and sent again by
        the worker that takes it over) only what was in flight. Returns the outcomes of the sends that
        finished last, for the caller to record (with the next claim, see `run_once`). A round whose sends
        end together, the usual case, is recorded once, as a whole."""
        pending = {asyncio.ensure_future(send) for send in sends}
        carried: list[Outcome] = []
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if pending:
                    more, pending = await asyncio.wait(pending, timeout=self.record_window)
                    done |= more
                outcomes = carried + [task.result() for task in done]
                if not pending:
                    return outcomes
                try:
                    await self._db(partial(self._record_outcomes, outcomes), writes_at_commit=True)
                    carried = []
                except Exception:  # recorded with the next ones; the round's last record raises
                    log.exception(
                        "recording sends failed; retried with the next", extra={"workerId": self.worker_id}
                    )
                    carried = outcomes
        finally:
            for task in pending:
                task.cancel()

    def _record_outcomes(self, outcomes: list[Outcome], session: Session) -> None:
        """Results of a round's sends in one transaction; the accepted ones in a few statements."""
        self._record_sent(session, [o for o in outcomes if isinstance(o, Sent)])
        for outcome in outcomes:
            if not isinstance(outcome, Sent):
                outcome(session)

    @property
    def has_claimed(self) -> bool:
        """Whether messages claimed with the last round's record are waiting to be sent (see `run_once`)."""
        return bool(self._claimed_ahead)

    async def _take(self, limit: int, premade: Premade) -> ClaimedRows:
        if self._snapshots:
            # SQLite: worked out on a read snapshot, the write lock held only for its statements.
            return await self._db(
                lambda session: self._claim_on_snapshot(session, limit, premade), writes_at_commit=True
            )
        return await self._db(lambda session: self._claim(session, limit, premade))

    async def release(self) -> None:
        """Close the connections the senders keep open on this event loop (SMTP)."""
        seen: set[int] = set()
        for sender in (self.email_sender, self.sms_sender, self.sandbox_sender):
            release = getattr(sender, "release", None)
            if release is not None and id(sender) not in seen:
                seen.add(id(sender))
                await release()

    def _render(self, c: Claimed) -> tuple[OutgoingEmail | OutgoingSms, str | None, str | None]:
        if c.template is None:
            raise SendError("the message's template no longer exists")
        if c.purpose == test_sends.PURPOSE:
            rendered, link, code = test_sends.render_test(
                c.template,
                c.locale,
                c.brand,
                self.public_url,
                self.host,
                c.ttl_minutes,
                int(c.context.get("codeLength", 6)),
            )
        else:
            if c.secret is None:
                raise SendError("the message's secret cannot be read (secret keys rotated away?)")
            link = f"{self.public_url}/v/{c.secret}" if c.mfa_type == "NONCE_OTH" else None
            code = c.secret if c.mfa_type == "OTP" else None
            person = c.context.get("person") or {}
            context = RenderContext(
                brand=c.brand,
                host=self.host,
                expires_in_minutes=c.ttl_minutes,
                link=link,
                code=code,
                person=PersonName(**{k: person.get(k) for k in ("first", "last", "preferred")}),
                values=c.context.get("values") or {},
            )
            rendered = render(c.template, c.locale, context)
        if c.channel == "EMAIL":
            return (
                OutgoingEmail(
                    message_id=c.message_id,
                    to=c.destination,
                    from_addr=from_header(c.brand, c.from_address, self.mail_from),
                    subject=rendered.subject or "",
                    text=rendered.text or "",
                    html=rendered.html or "",
                    client_id=c.client_id,
                    link=link,
                    code=code,
                ),
                link,
                code,
            )
        return (
            OutgoingSms(
                message_id=c.message_id,
                to=c.destination,
                body=rendered.sms or "",
                client_id=c.client_id,
                link=link,
                code=code,
            ),
            link,
            code,
        )

    def _sends(self, claimed: list[Claimed]) -> list[Coroutine[Any, Any, Outcome]]:
        """A round's sends, one coroutine per message: each client's messages are rendered together in the
        render pool (see `_render_batch`), beside the other clients', and each is sent as soon as its
        client's are rendered."""
        by_client: dict[str, list[Claimed]] = {}
        for c in claimed:
            by_client.setdefault(c.client_id, []).append(c)
        sends = []
        for group in by_client.values():
            rendering = asyncio.ensure_future(self._render_group(group))
            sends += [self._send_rendered(c, rendering, i) for i, c in enumerate(group)]
        return sends

    async def _render_group(self, group: list[Claimed]) -> list[Rendered]:
        try:
            return await self.render_pool.run_async(self._render_batch, group, ROUND_RENDER_SECONDS)
        except RenderTimeout as exc:
            return [TemporarySendError(str(exc))] * len(group)

    async def _send_rendered(self, c: Claimed, rendering: asyncio.Future[list[Rendered]], i: int) -> Outcome:
        # Shielded: the group's render is awaited by each of its messages' sends; one cancelled must not
        # cancel it for the others.
        rendered = (await asyncio.shield(rendering))[i]
        return await self._send_one(c, rendered)

    def _render_batch(self, group: list[Claimed], allowance: float) -> list[Rendered]:
        """In the render pool: one client's messages of a round, until `allowance` seconds are used; the
        rest wait for the next round. So a client whose templates are heavy (or who has many messages
        due) holds one pool thread for a bounded time, and never delays another client's mail."""
        started = time.monotonic()
        out: list[Rendered] = []
        for c in group:
            if out and time.monotonic() - started >= allowance:
                out.append(_DEFERRED)
                continue
            try:
                out.append(self._render(c))
            except TemplateRenderError as exc:
                failure = TemporarySendError if exc.retryable else SendError
                out.append(failure(f"template failed to render: {exc}"))
            except SendError as exc:
                out.append(exc)
            except Exception as exc:  # a bug must not kill the worker; retry it like a transient fault
                log.exception("rendering raised unexpectedly", extra={"messageId": c.message_id})
                out.append(TemporarySendError(type(exc).__name__))
        return out

    async def _send_one(self, c: Claimed, rendered: Rendered) -> Sent | Callable[[Session], None]:
        """Sends; returns the accepted send, or how to record the failure (run later, with the others of
        the round)."""
        if rendered is _DEFERRED:
            return partial(self._record_deferred, c=c)
        started = self.clock.now()
        email_sender = self.sandbox_sender if c.sandbox else self.email_sender
        sms_sender = self.sandbox_sender if c.sandbox else self.sms_sender
        provider = email_sender.name if c.channel == "EMAIL" else sms_sender.name
        try:
            if isinstance(rendered, SendError):
                raise rendered
            outgoing = cast(tuple[OutgoingEmail | OutgoingSms, Any, Any], rendered)[0]
            if isinstance(outgoing, OutgoingEmail):
                provider_id = await email_sender.send_email(outgoing)
            else:
                provider_id = await sms_sender.send_sms(outgoing)
                provider = getattr(sms_sender, "last_used", provider)
        except SendError as exc:
            self.metrics.messages.labels(c.channel, "retry" if exc.retryable else "failed").inc()
            return partial(self._record_failure, c=c, provider=provider, exc=exc, started=started)
        except Exception as exc:  # an adapter bug must not kill the worker; retry it like a transient fault
            log.exception("sender raised unexpectedly", extra={"messageId": c.message_id})
            failure = TemporarySendError(type(exc).__name__)
            return partial(self._record_failure, c=c, provider=provider, exc=failure, started=started)
        self.metrics.messages.labels(c.channel, "sent").inc()
        return Sent(c, provider, provider_id[:128], started)

    def _record_deferred(self, session: Session, *, c: Claimed) -> None:
        """Not rendered this round (its client's render time ran out): due again at once, the attempt not
        counted, the code or link token kept."""
        message = session.get(Message, c.message_id)
        if message is None or message.status != MessageStatus.SENDING:
            return
        message.status = MessageStatus.QUEUED
        message.attempts = max(message.attempts - 1, 0)
        message.locked_until = None
        message.next_attempt_at = self.clock.now()

    def _record_sent(self, session: Session, sent: list[Sent]) -> None:
        """The provider accepted these: each message SENT (unless another worker already recorded it after
        re-claiming it from a stall), one attempt each, and their sessions told."""
        if not sent:
            return
        now = self.clock.now()
        conn = session.connection()
        # Only rows still SENDING move: read here, and checked again by the update's own WHERE when it runs
        # at commit (the record may run on a read snapshot, its writes later: see run_once).
        moved = {
            row.id: row for row in conn.execute(_STILL_SENDING, {"ids": [s.claimed.message_id for s in sent]})
        }
        if moved:
            defer_update(
                session,
                _MARK_SENT,
                [
                    {
                        "mid": s.claimed.message_id,
                        "now": now,
                        "provider": s.provider,
                        "provider_id": s.provider_id,
                    }
                    for s in sent
                    if s.claimed.message_id in moved
                ],
            )
        # The attempt is recorded either way: the send happened.
        defer_insert(
            session,
            MessageAttempt.__table__,
            [
                {
                    "message_id": s.claimed.message_id,
                    "attempt": s.claimed.attempt,
                    "provider": s.provider,
                    "result": "sent",
                    "error": None,
                    "started_at": s.started,
                    "finished_at": now,
                }
                for s in sent
            ],
        )
        self.mfa.messages_sent(
            session,
            [
                SentMessage(
                    message_id=s.claimed.message_id,
                    session_id=moved[s.claimed.message_id].session_id,
                    secret_id=moved[s.claimed.message_id].secret_id,
                    attempt=s.claimed.attempt,
                    provider=s.provider,
                )
                for s in sent
                if s.claimed.message_id in moved
            ],
            now,
        )

    def _record_failure(
        self, session: Session, *, c: Claimed, provider: str, exc: SendError, started: datetime
    ) -> None:
        now = self.clock.now()
        reason = str(exc)[:500] or type(exc).__name__
        give_up = not exc.retryable or c.attempt > len(self.retry_schedule)
        message = session.get(Message, c.message_id)
        if message is None or message.status != MessageStatus.SENDING:
            return
        session.add(
            MessageAttempt(
                message_id=c.message_id,
                attempt=c.attempt,
                provider=provider,
                result="failed" if give_up else "retry",
                error=reason,
                started_at=started,
                finished_at=now,
            )
        )
        message.last_error = reason
        message.locked_until = None
        message.provider = provider
        if give_up:
            message.status = MessageStatus.FAILED
            message.delivery_status = DeliveryStatus.UNDELIVERED
            message.sealed_secret = None
            log.warning("message failed for good", extra={"messageId": c.message_id, "reason": reason})
            self.mfa.message_failed(session, message, exc.authorization, reason, now)
        else:
            delay = self.retry_schedule[c.attempt - 1]
            message.status = MessageStatus.QUEUED
            message.next_attempt_at = now + timedelta(seconds=delay * random.uniform(1.0, 1.25))
            log.info(
                "message will be retried",
                extra={"messageId": c.message_id, "reason": reason, "inSeconds": delay},
            )
