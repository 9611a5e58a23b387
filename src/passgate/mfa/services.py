"""MFA sessions: start a challenge, verify, resend, cancel, confirm or deny a link, expire.

Every state change and its outbox rows are written in the caller's transaction; nothing is sent here.
The statements are in `mfa.queries` (the fast path lives there); the answers are typed (`mfa.results`)
and spelled out for the wire by `api/views.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from passgate.auth.settings import MfaConfig
from passgate.auth.settings import StoredSettings as _StoredSettings
from passgate.auth.settings import config_from as _config_from
from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.contacts import (
    mask,
    normalise_destination,
    phone_prefix,
)
from passgate.db.deferred import DeferredWrites
from passgate.keyring import KeyRing
from passgate.messaging import outbox
from passgate.messaging.outbox import OutboxMessage
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import DeliveryStatus
from passgate.mfa import queries
from passgate.mfa import secrets as mfa_secrets
from passgate.mfa.breaker import REFUSAL_REASON as BREAKER_REFUSAL
from passgate.mfa.breaker_services import SmsBreakerService
from passgate.mfa.challenge import (
    DECISION,
    ChallengeRequest,
    Origin,
    Picked,
    checked_destination,
    new_session_row,
    pending_key,
    pick_template,
)
from passgate.mfa.exceptions import (
    InvalidDestination,
    SendLimitReached,
    SendRateLimited,
    SessionClosed,
    SessionNotFound,
    Throttled,
    WrongMethod,
)
from passgate.mfa.models import MfaEvent, MfaSession
from passgate.mfa.queries import LISTENER_COLUMNS, SessionChanges, SessionRow, SessionSnapshot
from passgate.mfa.results import (
    AttemptResult,
    ChallengeRefused,
    ChallengeResult,
    ChallengeStarted,
    TimelineEntry,
    UnlockResult,
)
from passgate.mfa.secrets import VALID_CODES
from passgate.mfa.states import Status, TerminationReason, check_move, is_terminal
from passgate.policy.decisions import DecisionContext
from passgate.ratelimit import RateLimiter

__all__ = [
    "LISTENER_COLUMNS",
    "VALID_CODES",
    "AttemptResult",
    "ChallengeRefused",
    "ChallengeResult",
    "ChallengeStarted",
    "MfaService",
    "SessionSnapshot",
    "StatusListener",
    "UnlockResult",
    "throttle_wait",
]

log = logging.getLogger("passgate.mfa")

# Send limits per destination and per SMS prefix (the number less its last 4 digits).
DESTINATION_SEND_RATES = "5/10 minutes;20/day"
PREFIX_SEND_RATES = "30/hour"
# Consecutive failures per person (destination, account) before waiting, and before locking.
THROTTLE_AFTER = 10
LOCK_AFTER = 100
FIRST_WAIT_SECONDS = 30
MAX_WAIT_SECONDS = 3600
PREFETCH_WINDOW_SECONDS = 10
# The timeline's reason for a session ended by a wrong pick on the confirm page (`confirm_link`).
NUMBER_MISMATCH = "NUMBER_MISMATCH"
# Opens of a link that get a LINK_OPENED timeline row each; the rest are only counted (`link_opens`).
LISTED_LINK_OPENS = 20
LINK_OPENS_UNLISTED = "LINK_OPENS_UNLISTED"


# Timeline rows that carry a second entry (see `timeline_entries`): the key it is under, and its type.
_QUEUED = "queued"
STATUS_CHANGED = "statusChanged"
_FOLDED = {"CREATED": ("MESSAGE_QUEUED", _QUEUED), "MESSAGE_SENT": ("STATUS_CHANGED", STATUS_CHANGED)}
# A session a unit of work changes: an ORM object (flushed at commit), a read row with its changes
# (`SessionChanges`, written back by `queries.write_back`) or the plain columns of a row being made or
# written back by hand (`queries.PlainSession`).
_Working = MfaSession | SessionChanges | queries.PlainSession
# What a unit of work reads of a session: a frozen row, or the ORM object itself.
_Read = SessionRow | MfaSession


class StatusListener(Protocol):
    """Called inside the transaction of every status change (webhooks write their outbox rows here).

    A listener gets a `SessionSnapshot`: the session's `LISTENER_COLUMNS` as they are after the change,
    and nothing else (when a worker records a round of sent messages only those are read: every column
    read and decoded there is paid per message). It writes only by deferring (`db.defer_insert`): the
    record may run on a read snapshot, its writes at commit."""

    def __call__(
        self, session: Session, mfa: SessionSnapshot, old: str | None, new: str, now: datetime
    ) -> None: ...


@dataclass
class MfaService:
    keyring: KeyRing
    clock: Clock
    limiter: RateLimiter
    templates: TemplateSource
    public_url: str
    listeners: list[StatusListener] = field(default_factory=list)
    # The SMS pumping breaker (mfa.breaker): asked before each SMS challenge's first send.
    breaker: SmsBreakerService | None = None
    # A client's challenge settings (and sandbox flag) are remembered this long: every challenge reads
    # them. A change made through this process is seen at once (`forget_config`), through another within
    # this many seconds, as for templates and brands.
    config_seconds: float = 1.0
    _configs: TtlCache[str, tuple[bool, MfaConfig]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._configs = TtlCache(self.config_seconds, self.clock)

    def forget_config(self, client_id: str) -> None:
        self._configs.invalidate(client_id)

    def client_config(self, session: Session, client_id: str) -> tuple[bool, MfaConfig]:
        """The client's sandbox flag and effective challenge settings (`_client_config`)."""
        return self._client_config(session, client_id)

    def _client_config(self, session: Session, client_id: str) -> tuple[bool, MfaConfig]:
        """The client's sandbox flag and effective settings, read at most once a `config_seconds`."""
        hit = self._configs.get(client_id)
        if hit is not None:
            return hit
        sandbox, country, stored = queries.client_config(session.connection(), client_id)
        config = _config_from(country, _StoredSettings(*stored) if stored is not None else None)
        return self._configs.put(client_id, (sandbox, config))

    # -- creation ------------------------------------------------------------------------------------

    def start_challenge(
        self, session: Session, ctx: DecisionContext, *, at_commit: bool = True
    ) -> ChallengeResult:
        """Start a challenge in the caller's transaction: the session, its outbox message and
        its timeline. Nothing in a decision reads these rows back, so by default they are inserted when the
        transaction commits, with those of the other decisions sharing it (`db.defer_insert`): a few
        multi-row inserts per batch instead of an ORM flush per challenge. A caller that reads the session
        back in the same transaction (the console's sign-in) passes `at_commit=False`: the session row is
        then written at once.

        A session still pending for the same client, destination, template, account and device is returned
        instead of a new one, and nothing is sent (`strategy.forceNewChallenge` asks for a new one)."""
        return self.start(session, ctx, DECISION, at_commit=at_commit)

    def start(
        self, session: Session, ctx: ChallengeRequest, origin: Origin, *, at_commit: bool = True
    ) -> ChallengeResult:
        """`start_challenge` for any origin: a decision's CHALLENGE or a Verify API start (`mfa.verify`)."""
        return self._start(session, ctx, origin, at_commit)[0]

    def start_session(
        self, session: Session, ctx: ChallengeRequest, origin: Origin
    ) -> tuple[ChallengeResult, SessionRow | None]:
        """`start`, its rows written at commit, and the session it started or handed back as its row will
        read once committed (None when refused): for a caller that answers with the whole session (the
        Verify API) without reading it back, so that the unit only reads and can share a group commit's
        read snapshot as a decision does."""
        result, values = self._start(session, ctx, origin, True)
        if values is None or isinstance(values, SessionRow):
            return result, values
        return result, queries.row_from(values)

    def _start(
        self, session: Session, ctx: ChallengeRequest, origin: Origin, at_commit: bool
    ) -> tuple[ChallengeResult, SessionRow | dict[str, Any] | None]:
        """The one implementation of `start` and `start_session`: the result, and the session's row (the
        pending one read, or the new one's values as written), None when refused."""
        picked = pick_template(self.templates, session, ctx)
        if isinstance(picked, ChallengeRefused):
            return picked, None
        sandbox, config = self._client_config(session, ctx.client_id)
        destination = checked_destination(picked, sandbox, config)
        if isinstance(destination, ChallengeRefused):
            return destination, None
        dest_hash = self.keyring.keyed_hash("destination", destination)
        # A locked destination or account could never verify: no message is sent to it (to another address
        # of the account neither), and no pending session is handed out for it. A sandbox client's are never
        # locked. A session still pending for the same key is handed back instead of a new one, unless the
        # request asks for a new one. Both read in one statement (`queries.challenge_reads`).
        account_hash = None if sandbox else self._account_hash(ctx)
        strategy = ctx.body.get("strategy") or {}
        reuse = origin.reuse_pending and not strategy.get("forceNewChallenge")
        conn = session.connection()
        key = pending_key(ctx, picked, dest_hash, origin)
        if reuse and origin.one_at_a_time:
            queries.hold_pending_key(conn, key)
        locked, pending = queries.challenge_reads(conn, key, account_hash, ctx.now, pending=reuse)
        if locked:
            reason = "DESTINATION_LOCKED" if "destination" in locked else "ACCOUNT_LOCKED"
            log.info("challenge refused: %s", reason, extra={"channel": picked.channel})
            return picked.refused("RATE_LIMITED", destination, reason), None
        if pending is not None:
            return self._reused(session, ctx, picked, pending), pending
        if not sandbox and not _send_allowed(self.limiter, picked.channel, destination, dest_hash):
            return picked.refused("RATE_LIMITED", destination, "TOO_MANY_SENDS"), None
        # The SMS pumping breaker (mfa.breaker) counts a send here, once the other limits let it go; a
        # pending session handed back above sends nothing and is not counted.
        if not sandbox and picked.channel == "SMS" and self.breaker is not None:
            if not self.breaker.admit(session, ctx.client_id, destination, config.sms_breaker, ctx.now):
                return picked.refused("RATE_LIMITED", destination, BREAKER_REFUSAL), None
        row = new_session_row(ctx, picked, destination, dest_hash, sandbox, config, origin)
        return self._create(session, ctx, picked, row, at_commit), row

    def _account_hash(self, ctx: ChallengeRequest) -> str:
        """The keyed hash of the request's account id, by which its failure counter is kept ("" without one)."""
        account_id = (ctx.body.get("account") or {}).get("id")
        return self.keyring.keyed_hash("account", account_id) if account_id else ""

    def _reused(
        self, session: Session, ctx: ChallengeRequest, picked: Picked, pending: SessionRow
    ) -> ChallengeStarted:
        """A pending session returned for a new request: nothing sent, one timeline row."""
        data = {"decisionId": ctx.decision_id} if ctx.decision_id else {}
        self._event(session, pending, "REUSED", "api", data)
        return ChallengeStarted(
            pending.id,
            pending.type,
            pending.channel,
            pending.status,
            pending.expires_at,
            pending.send_attempts,
            pending.verification_attempts,
            pending.match_number,
            picked.echoed(pending.destination),
            reused=True,
        )

    def _create(
        self, session: Session, ctx: ChallengeRequest, picked: Picked, row: dict[str, Any], at_commit: bool
    ) -> ChallengeStarted:
        """The session, its first send and its timeline row written (at commit unless `at_commit` is
        False); the listeners told."""
        now = ctx.now
        # The send (`_queue_send`) and the listeners move counters on the object they are given: a plain
        # one holding the row's columns (`queries.PlainSession`), never an ORM object.
        mfa = queries.PlainSession(row)
        if at_commit:
            # Inserted at commit before the rows that reference it (secret, message, events): deferred rows
            # go in in foreign-key order.
            DeferredWrites.of(session).insert(queries.SESSIONS, [row])
        self._notify(session, mfa, None, Status.UNKNOWN, now)
        queued = self._queue_send(session, mfa, now, event=False)
        # One timeline row for the creation and the first send queued (`timeline` lists them as two).
        created = {"decisionId": ctx.decision_id, "templateName": picked.name, "locale": row["locale"]}
        self._event(session, mfa, "CREATED", "api", {**created, "sandbox": row["sandbox"], _QUEUED: queued})
        # The counters the listeners and the send moved, into the row before it is written.
        row["sequence"] = mfa.sequence
        row["send_attempts"] = mfa.send_attempts
        if not at_commit:
            queries.insert_session(session.connection(), row)
        return ChallengeStarted(
            row["id"],
            row["type"],
            row["channel"],
            row["status"],
            row["expires_at"],
            mfa.send_attempts,
            0,
            row["match_number"],
            picked.echoed(row["destination"]),
        )

    def _queue_send(
        self, session: Session, mfa: MfaSession | queries.PlainSession, now: datetime, event: bool = True
    ) -> dict[str, Any]:
        """The outbox row of a send, inserted at commit (nothing in the transaction reads it back; the
        worker claims it after). Its code or link token is made by the worker that first claims it
        (`mfa.delivery`), not here: the request does less, and no secret exists before a worker holds it."""
        message_id = outbox.queue(
            session,
            OutboxMessage(
                client_id=mfa.client_id,
                channel=mfa.channel,
                destination=mfa.destination,
                template_name=mfa.template_name,
                locale=mfa.locale,
                purpose="challenge",
                queued_at=now,
                session_id=mfa.id,
            ),
        )
        mfa.send_attempts += 1
        mfa.delivery_status = DeliveryStatus.QUEUED
        queued = {"messageId": message_id, "send": mfa.send_attempts}
        if event:  # else the caller stores it on a timeline row of its own (`_QUEUED`)
            self._event(session, mfa, "MESSAGE_QUEUED", "api", queued)
        return queued

    # -- reading -------------------------------------------------------------------------------------

    def load(self, session: Session, client_id: str, session_id: str, lock: bool = False) -> MfaSession:
        mfa = queries.load(session, client_id, session_id, lock)
        if mfa is None:
            raise SessionNotFound(session_id)
        return mfa

    def get(self, session: Session, client_id: str, session_id: str) -> SessionRow:
        """The client's session as read now (SessionNotFound when it has none)."""
        return queries.row_of(self.load(session, client_id, session_id))

    def timeline_entries(self, session: Session, client_id: str, session_id: str) -> list[TimelineEntry]:
        """The session's timeline: its rows, oldest first, each folded row listed as the two entries it
        stands for, and past the listed link opens, how many more there were."""
        mfa = self.load(session, client_id, session_id)
        return _timeline(queries.events(session, session_id), mfa.link_opens)

    # -- state changes -------------------------------------------------------------------------------

    def verify_code(self, session: Session, client_id: str, session_id: str, code: str) -> AttemptResult:
        """An OTP verify. The session is read with Core statements into a frozen row and what the verify
        changed (`SessionChanges`) is written back at once, in one UPDATE (`queries.write_back`): the row is
        locked for the transaction (the write lock on SQLite, FOR UPDATE on PostgreSQL), so a second verify
        of the same session, later in the same transaction or in another, reads it as this one left it."""
        return self.check_code(session, client_id, session_id, code)[0]

    def check_code(
        self, session: Session, client_id: str, session_id: str, code: str, source: str | None = None
    ) -> tuple[AttemptResult, SessionRow]:
        """`verify_code`, and the session as the verify left it. With `source`, a session started by
        another (`MfaSession.source`) is not found: the Verify API checks only its own."""
        now = self.clock.now()
        conn = _connection_after_flush(session)
        row = queries.load_locked(conn, client_id, session_id)
        if row is None or (source is not None and row.source != source):
            raise SessionNotFound(session_id)
        if row.type != "OTP":
            raise WrongMethod("this session is verified through its link, not a code")
        if is_terminal(row.status):
            raise SessionClosed(row.status, row.termination_reason)
        mfa = SessionChanges.of(row)
        if now >= row.expires_at:
            self._terminate(session, mfa, TerminationReason.EXPIRED, now, "api")
            queries.write_back(session, conn, mfa)
            return AttemptResult(mfa.status, mfa.termination_reason), mfa.after()
        subjects = _subjects(self.keyring, row)
        if not row.sandbox:
            _check_throttle(conn, row.client_id, subjects, now)
        # Count the attempt before checking the code, so no answer escapes the budget.
        mfa.verification_attempts += 1
        matched = _code_matches(self.keyring, conn, row.id, code, now)
        self._event(
            session, mfa, "VERIFY_ATTEMPT", "api", {"attempt": mfa.verification_attempts, "ok": matched}
        )
        if matched:
            self._verify(session, mfa, row, now, "api")
            result = AttemptResult(Status.VERIFIED.value)
        else:
            result = self._failed_attempt(session, mfa, row, subjects, now, "api")
        queries.write_back(session, conn, mfa)
        return result, mfa.after()

    def _failed_attempt(
        self,
        session: Session,
        mfa: _Working,
        read: _Read,
        subjects: list[tuple[str, str]],
        now: datetime,
        source: str,
    ) -> AttemptResult:
        if not read.sandbox:
            _record_failure(session.connection(), read.client_id, subjects, now)
        remaining = read.max_attempts - mfa.verification_attempts
        if remaining <= 0:
            self._terminate(session, mfa, TerminationReason.MAX_ATTEMPTS, now, source)
            return AttemptResult(mfa.status, mfa.termination_reason, 0)
        self._move(session, mfa, Status.VERIFICATION_ATTEMPT_FAILED, now, source)
        return AttemptResult(mfa.status, remaining_attempts=remaining)

    def _verify(self, session: Session, mfa: _Working, read: _Read, now: datetime, source: str) -> None:
        # The atomic consume: only one concurrent answer can move an open session to VERIFIED. The columns
        # it wrote are set on `mfa` as the row now has them (on an ORM object as committed values: its
        # other changes are flushed at commit; a verify's changes are written back by `verify_code`).
        old = mfa.status
        closed = queries.consume(session.connection(), mfa.id, old, now)
        if closed is not None:
            raise SessionClosed(*closed)
        if isinstance(mfa, SessionChanges):
            mfa.status, mfa.verified_at, mfa.updated_at = Status.VERIFIED.value, now, now
        else:
            set_committed_value(mfa, "status", Status.VERIFIED.value)
            set_committed_value(mfa, "verified_at", now)
            set_committed_value(mfa, "updated_at", now)
        self._event(session, mfa, "STATUS_CHANGED", source, {"from": old, "to": Status.VERIFIED.value})
        self._notify(session, mfa, old, Status.VERIFIED, now)
        if not read.sandbox:
            queries.clear_failures(session.connection(), read.client_id, _subjects(self.keyring, read), now)
        if read.account_id and read.device_session_id:
            if _trust_device(session, read.client_id, read.account_id, read.device_session_id, now):
                self._event(session, mfa, "DEVICE_TRUSTED", "system", {})

    def resend(self, session: Session, client_id: str, session_id: str) -> SessionRow:
        now = self.clock.now()
        mfa = self.load(session, client_id, session_id, lock=True)
        _open_or_raise(mfa, now)
        if mfa.send_attempts >= mfa.max_sends:
            raise SendLimitReached(mfa.max_sends)
        if not mfa.sandbox:
            # The account's counter too: a message to a locked account could never verify.
            _check_throttle(session.connection(), mfa.client_id, _subjects(self.keyring, mfa), now)
            if not _send_allowed(self.limiter, mfa.channel, mfa.destination, mfa.destination_hash):
                raise SendRateLimited(60)
        self._event(session, mfa, "RESEND_REQUESTED", "api", {})
        self._queue_send(session, mfa, now)
        mfa.updated_at = now
        return queries.row_of(mfa)

    def cancel(self, session: Session, client_id: str, session_id: str) -> SessionRow:
        now = self.clock.now()
        mfa = self.load(session, client_id, session_id, lock=True)
        if is_terminal(mfa.status):
            raise SessionClosed(mfa.status, mfa.termination_reason)
        self._terminate(session, mfa, TerminationReason.CANCELLED, now, "api")
        return queries.row_of(mfa)

    # -- hosted link ---------------------------------------------------------------------------------

    def find_by_token(self, session: Session, token: str, lock: bool = False) -> MfaSession | None:
        """The open session a live link token belongs to, or None (unknown, expired or used alike)."""
        return _session_of_token(session, self.keyring, self.clock.now(), token, lock)

    def record_link_open(
        self,
        session: Session,
        mfa: MfaSession,
        method: str,
        user_agent: str,
        ip: str | None,
        browser_like: bool,
    ) -> bool:
        now = self.clock.now()
        sent = queries.last_sent_at(session, mfa.id)
        fast = sent is not None and (now - sent).total_seconds() < PREFETCH_WINDOW_SECONDS
        prefetch = method == "HEAD" or not browser_like or fast
        # Anyone holding the link can open it any number of times: past the first few, opens are counted
        # on the session instead of each writing a timeline row.
        if queries.link_opened(session.connection(), mfa.id) <= LISTED_LINK_OPENS:
            self._event(
                session,
                mfa,
                "LINK_OPENED",
                "link",
                {"method": method, "userAgent": user_agent[:300], "ip": ip, "prefetch": prefetch},
            )
        return prefetch

    def confirm_link(self, session: Session, mfa: MfaSession, chosen_number: str | None) -> AttemptResult:
        now = self.clock.now()
        _open_or_raise(mfa, now)
        mfa.verification_attempts += 1
        if mfa.bind_to_device and not mfa_secrets.same_number(chosen_number, mfa.match_number):
            # A wrong pick ends the session, as "This wasn't me" does (authenticator apps do the same): the
            # person at the link is not the one at the screen. Were it one attempt of several, picking each
            # of the three numbers in turn would always verify.
            attempt = {"attempt": mfa.verification_attempts, "ok": False, "reason": NUMBER_MISMATCH}
            self._event(session, mfa, "VERIFY_ATTEMPT", "link", attempt)
            if not mfa.sandbox:
                _record_failure(session.connection(), mfa.client_id, _subjects(self.keyring, mfa), now)
            self._terminate(session, mfa, TerminationReason.NOT_ME, now, "link")
            return AttemptResult(mfa.status, mfa.termination_reason, reason=NUMBER_MISMATCH)
        self._event(
            session, mfa, "VERIFY_ATTEMPT", "link", {"attempt": mfa.verification_attempts, "ok": True}
        )
        self._verify(session, mfa, mfa, now, "link")
        return AttemptResult(Status.VERIFIED.value)

    def deny_link(self, session: Session, mfa: MfaSession) -> None:
        now = self.clock.now()
        _open_or_raise(mfa, now)
        self._terminate(session, mfa, TerminationReason.NOT_ME, now, "link")

    # -- worker-side changes -------------------------------------------------------------------------

    def any_expired(self, session: Session) -> bool:
        """Whether an open session has passed its expiry (a read: see Worker._sweep)."""
        return queries.any_expired(session, self.clock.now())

    def expire_due(self, session: Session, limit: int = 200) -> int:
        now = self.clock.now()
        due = queries.expire_due(session, now, limit)
        for mfa in due:
            self._terminate(session, mfa, TerminationReason.EXPIRED, now, "sweeper")
        return len(due)

    # -- helpers -------------------------------------------------------------------------------------

    def _move(
        self, session: Session, mfa: _Working, new: Status, now: datetime, source: str, event: bool = True
    ) -> dict[str, Any]:
        old = mfa.status
        check_move(old, new)
        mfa.status = new.value
        mfa.updated_at = now
        change = {"from": old, "to": new.value}
        if event:  # else the caller stores it on a timeline row of its own (`STATUS_CHANGED`)
            self._event(session, mfa, "STATUS_CHANGED", source, change)
        self._notify(session, mfa, old, new, now)
        return change

    def _terminate(
        self, session: Session, mfa: _Working, reason: TerminationReason, now: datetime, source: str
    ) -> None:
        mfa.termination_reason = reason.value
        self._move(session, mfa, Status.TERMINATED, now, source)

    def _notify(self, session: Session, mfa: _Working, old: str | None, new: str, now: datetime) -> None:
        mfa.sequence += 1
        if self.listeners:
            snapshot = mfa.snapshot() if isinstance(mfa, SessionChanges) else SessionSnapshot.of(mfa)
            for listener in self.listeners:
                listener(session, snapshot, old, str(new), now)

    def _event(
        self,
        session: Session,
        mfa: _Working | SessionRow,
        kind: str,
        source: str,
        data: dict[str, Any],
    ) -> None:
        # Append-only and never read back in the same transaction: one multi-row insert at commit.
        DeferredWrites.of(session).insert(
            MfaEvent.__table__,
            [
                dict(
                    session_id=mfa.id,
                    client_id=mfa.client_id,
                    type=kind,
                    source=source,
                    data=data,
                    created_at=self.clock.now(),
                )
            ],
        )

    def unlock_destination(
        self, session: Session, client_id: str, channel: str, destination: str
    ) -> UnlockResult:
        """Clear a destination's consecutive failures, its wait and its lock for one client (`_unlock`)."""
        return _unlock(self.keyring, session.connection(), self.clock.now(), client_id, channel, destination)


def _subjects(keyring: KeyRing, mfa: _Read) -> list[tuple[str, str]]:
    """The counters a session's failures move: its destination's, and its account's when it has one."""
    subjects = [("destination", mfa.destination_hash)]
    if mfa.account_id:
        subjects.append(("account", keyring.keyed_hash("account", mfa.account_id)))
    return subjects


def _send_allowed(limiter: RateLimiter, channel: str, destination: str, dest_hash: str) -> bool:
    """Whether the send limits (per destination, and per SMS prefix) leave room for one more message."""
    if not limiter.hit("send:destination", dest_hash, DESTINATION_SEND_RATES).allowed:
        return False
    if channel == "SMS":
        return limiter.hit("send:prefix", phone_prefix(destination), PREFIX_SEND_RATES).allowed
    return True


def _session_of_token(
    session: Session, keyring: KeyRing, now: datetime, token: str, lock: bool
) -> MfaSession | None:
    """`MfaService.find_by_token`: the open session a live link token belongs to, or None."""
    if not token or len(token) > 128:
        return None
    secret = queries.link_secret(session, keyring.all_hashes(mfa_secrets.LINK_PURPOSE, token))
    if secret is None or not secret.active or secret.expires_at <= now:
        return None
    if not keyring.matches(mfa_secrets.LINK_PURPOSE, token, secret.secret_hash, secret.key_id):
        return None
    mfa = queries.session_by_id(session, secret.session_id, lock)
    if mfa is None or is_terminal(mfa.status) or mfa.expires_at <= now:
        return None
    # The last three links stay valid; an older one is as dead as an unknown one.
    return mfa if secret.id in queries.recent_secret_ids(session, mfa.id) else None


def _trust_device(
    session: Session, client_id: str, account_id: str, device_session_id: str, now: datetime
) -> bool:
    """The device becomes trusted for the account (not a banned one), written when the transaction
    commits (`db.defer_upsert`), as a decision marks a device seen. False for a banned one."""
    trust = queries.device_trust(session.connection(), client_id, account_id, device_session_id)
    if trust == "BANNED":
        return False
    DeferredWrites.of(session).upsert(
        queries.DEVICES,
        {
            "client_id": client_id,
            "account_id": account_id,
            "device_session_id": device_session_id,
            "seen": True,
            "trust_state": "TRUSTED",
            "first_seen_at": now,
            "last_seen_at": now,
        },
        ("client_id", "account_id", "device_session_id"),
        ("seen", "trust_state", "last_seen_at"),
    )
    return True


def _code_matches(keyring: KeyRing, conn: Any, session_id: str, code: str, now: datetime) -> bool:
    presented = mfa_secrets.normalise_code(code)
    matched = False
    for secret_hash, key_id, expires_at in queries.live_codes(conn, session_id):
        # Check every candidate (no early exit) so timing does not tell which code matched.
        ok = keyring.matches(mfa_secrets.CODE_PURPOSE, presented, secret_hash, key_id)
        matched = matched or (ok and expires_at > now)
    return matched


def _unlock(
    keyring: KeyRing, conn: Any, now: datetime, client_id: str, channel: str, destination: str
) -> UnlockResult:
    """`MfaService.unlock_destination`: clear a destination's consecutive failures, its wait and its lock (after 100 failures new
    challenges to it answer RATE_LIMITED) for one client. `destination` is normalised here as challenges
    normalise it, and looked up under every configured secret key, so counters kept before a key
    rotation are found too. The send limits (per destination and prefix) are windows that pass by
    themselves and are left alone."""
    check = normalise_destination(channel, destination)
    if not check.ok:
        raise InvalidDestination("emailAddress" if channel == "EMAIL" else "phoneNumber", check.reason)
    failures, locked, waiting = 0, False, None
    found = []
    for subject in keyring.all_hashes("destination", check.value):
        state = queries.counter_state(conn, client_id, "destination", subject)
        if state is None:
            continue
        failures = max(failures, state.failures)
        locked = locked or state.locked
        if state.next_allowed_at is not None and state.next_allowed_at > now:
            waiting = max(waiting or state.next_allowed_at, state.next_allowed_at)
        found.append(("destination", subject))
    queries.clear_failures(conn, client_id, found, now)
    return UnlockResult(channel, mask(channel, check.value), failures, locked, waiting)


def _open_or_raise(mfa: MfaSession, now: datetime) -> None:
    if is_terminal(mfa.status):
        raise SessionClosed(mfa.status, mfa.termination_reason)
    if now >= mfa.expires_at:
        # Raising rolls this transaction back; the sweeper records the expiry within a second.
        raise SessionClosed(Status.TERMINATED.value, TerminationReason.EXPIRED.value)


def _timeline(rows: Any, link_opens: int) -> list[TimelineEntry]:
    unlisted = link_opens - LISTED_LINK_OPENS
    listed_opens = LISTED_LINK_OPENS if unlisted > 0 else None
    out: list[TimelineEntry] = []
    for e in rows:
        at, data = e.created_at, e.data
        # A row may stand for two entries: a creation with its first send queued, a send with the
        # status it moved the session to (stored as one, to write a row less per challenge and send).
        kind, inner = _FOLDED.get(e.type, (None, None))
        if kind is not None and inner is not None and isinstance(data, dict) and inner in data:
            data = dict(data)
            follow = data.pop(inner)
            out.append(TimelineEntry(e.type, at, e.source, data))
            out.append(TimelineEntry(kind, at, e.source, follow))
        else:
            out.append(TimelineEntry(e.type, at, e.source, data))
        if e.type == "LINK_OPENED" and listed_opens is not None:
            listed_opens -= 1
            if listed_opens == 0:  # after the last open listed: how many more there were
                out.append(TimelineEntry(LINK_OPENS_UNLISTED, at, "link", {"count": unlisted}))
    return out


def _connection_after_flush(session: Session) -> Any:
    """The transaction's connection, for Core statements that must see (or must not be overwritten by)
    ORM changes made earlier in the transaction and not yet flushed."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection()


def throttle_wait(failures: int) -> int:
    """Seconds to wait after `failures` consecutive failures: none up to 10, then 30 s doubling to 1 h."""
    if failures < THROTTLE_AFTER:
        return 0
    return int(min(MAX_WAIT_SECONDS, FIRST_WAIT_SECONDS * 2 ** (failures - THROTTLE_AFTER)))


def _check_throttle(conn: Any, client_id: str, subjects: list[tuple[str, str]], now: datetime) -> None:
    """Throttled when one of the subjects is locked or must still wait."""
    for scope, subject in subjects:
        c = queries.counter_state(conn, client_id, scope, subject)
        if c is None:
            continue
        if c.locked:
            raise Throttled(MAX_WAIT_SECONDS, locked=True)
        if c.next_allowed_at is not None and c.next_allowed_at > now:
            raise Throttled(max(1, int((c.next_allowed_at - now).total_seconds()) + 1))


def _record_failure(conn: Any, client_id: str, subjects: list[tuple[str, str]], now: datetime) -> None:
    """One more consecutive failure for each subject: a wait past `THROTTLE_AFTER`, a lock at `LOCK_AFTER`."""
    for scope, subject in subjects:
        failures = queries.record_failure(conn, client_id, scope, subject, now)
        wait = throttle_wait(failures)
        if wait:
            queries.set_wait(conn, client_id, scope, subject, now + timedelta(seconds=wait))
        if failures >= LOCK_AFTER:
            queries.lock_counter(conn, client_id, scope, subject)
