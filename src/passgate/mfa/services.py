"""MFA sessions: start a challenge, verify, resend, cancel, confirm or deny a link, expire.

Every state change and its outbox rows are written in the caller's transaction; nothing is sent here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Table, bindparam, insert, null, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from passgate.auth.models import Client
from passgate.auth.settings import ClientSettings, MfaConfig
from passgate.auth.settings import StoredSettings as _StoredSettings
from passgate.auth.settings import config_from as _config_from
from passgate.clock import Clock
from passgate.contacts import (
    check_email,
    check_phone,
    is_sandbox_destination,
    mask,
    normalise_destination,
    phone_prefix,
)
from passgate.db import HotStatement, defer_insert, defer_update, defer_upsert, dialect_insert
from passgate.ids import new_uuid
from passgate.keyring import KeyRing
from passgate.messaging.models import Message
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import DeliveryStatus, MessageStatus
from passgate.messaging.templates import choose_locale
from passgate.mfa import secrets as mfa_secrets
from passgate.mfa.exceptions import (
    InvalidDestination,
    SendLimitReached,
    SendRateLimited,
    SessionClosed,
    SessionNotFound,
    Throttled,
    WrongMethod,
)
from passgate.mfa.models import FailureCounter, MfaEvent, MfaSecret, MfaSession
from passgate.mfa.states import OPEN, Status, TerminationReason, check_move, is_terminal
from passgate.policy.decisions import DecisionContext
from passgate.policy.models import Device
from passgate.ratelimit import RateLimiter

log = logging.getLogger("passgate.mfa")

# Send limits per destination and per SMS prefix (the number less its last 4 digits).
DESTINATION_SEND_RATES = "5/10 minutes;20/day"
PREFIX_SEND_RATES = "30/hour"
# Consecutive failures per person (destination, account) before waiting, and before locking.
THROTTLE_AFTER = 10
LOCK_AFTER = 100
FIRST_WAIT_SECONDS = 30
MAX_WAIT_SECONDS = 3600
VALID_CODES = 3  # the last three codes issued stay valid (resend does not break a code in flight)
PREFETCH_WINDOW_SECONDS = 10
# The timeline's reason for a session ended by a wrong pick on the confirm page (`confirm_link`).
NUMBER_MISMATCH = "NUMBER_MISMATCH"
# Opens of a link that get a LINK_OPENED timeline row each; the rest are only counted (`link_opens`).
LISTED_LINK_OPENS = 20
LINK_OPENS_UNLISTED = "LINK_OPENS_UNLISTED"


# Timeline rows that carry a second entry (see `timeline`): the key it is under, and its type.
_QUEUED = "queued"
_STATUS_CHANGED = "statusChanged"
_FOLDED = {"CREATED": ("MESSAGE_QUEUED", _QUEUED), "MESSAGE_SENT": ("STATUS_CHANGED", _STATUS_CHANGED)}
_SESSIONS = cast(Table, MfaSession.__table__)
_SECRETS = cast(Table, MfaSecret.__table__)
# What a status listener may read of the session it is given (`StatusListener`): where a status changes
# for many sessions at once (`messages_sent`), only these columns are read.
LISTENER_COLUMNS = (
    "id",
    "client_id",
    "event_type",
    "type",
    "channel",
    "status",
    "delivery_status",
    "send_attempts",
    "verification_attempts",
    "ttl_seconds",
    "expires_at",
    "sequence",
)
# messages_sent: the round's sessions, what it and the listeners read, locked where the database can.
_SENT_SESSIONS = (
    select(*(_SESSIONS.c[name] for name in LISTENER_COLUMNS))
    .where(_SESSIONS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_SESSIONS.c.id)
    .with_for_update()
)
_EXISTING_SECRETS = select(_SECRETS.c.id).where(_SECRETS.c.id.in_(bindparam("ids", expanding=True)))
# Once per accepted message of a round: on the DBAPI cursor (db.HotStatement), not Connection.execute.
_ACTIVATE_SECRET = HotStatement(
    update(_SECRETS)
    .where(_SECRETS.c.id == bindparam("b_id"))
    .values(active=True, activated_at=bindparam("b_now"), expires_at=bindparam("b_expires"))
)
# Guarded by the version read (`sequence`, moved by every status change): a session that changed since
# is not overwritten (`db.defer_update`).
_SENT_SESSION_UPDATE = HotStatement(
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("b_id"), _SESSIONS.c.sequence == bindparam("b_read_sequence"))
    .values(
        status=bindparam("b_status"),
        delivery_status=bindparam("b_delivery"),
        updated_at=bindparam("b_updated"),
        expires_at=bindparam("b_expires"),
        sequence=bindparam("b_sequence"),
    )
)
_clients = Client.__table__.c
_settings = ClientSettings.__table__.c
_counters = FailureCounter.__table__.c


def _transient_session(row: dict[str, Any]) -> MfaSession:
    mfa: MfaSession = _SESSION_CLASS.new_instance()
    mfa.__dict__.update(row)
    return mfa


_SESSION_CLASS = MfaSession.__mapper__.class_manager
# What a challenge needs to know about its client, in one read on the transaction's connection (no ORM
# identity map, no autoflush of the other decisions sharing the transaction, no result wrapping).
_CLIENT_CONFIG_STATEMENT = (
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
    )
    .select_from(Client.__table__.outerjoin(ClientSettings.__table__, _settings.client_id == _clients.id))
    .where(_clients.id == bindparam("client_id"))
)
_CLIENT_CONFIG = HotStatement(_CLIENT_CONFIG_STATEMENT)
# Statements every verify runs, built once (building one and its cache key costs more than running it).
_LOAD = select(MfaSession).where(
    MfaSession.id == bindparam("session_id"), MfaSession.client_id == bindparam("client_id")
)
_LOAD_LOCKED = _LOAD.with_for_update()
# A verify's reads and writes, on the DBAPI cursor (db.HotStatement): through the ORM (statement cache
# keys, identity map, unit of work) the same handful of statements cost several times what SQLite does.
_SESSION_ROW = HotStatement(
    select(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("b_id"), _SESSIONS.c.client_id == bindparam("b_client_id"))
    .with_for_update()
)
_SESSION_COLUMN_NAMES = tuple(c.name for c in _SESSIONS.c)
# What a verify changes on its (transient) session, written back in one statement.
_WRITE_BACK = HotStatement(
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        termination_reason=bindparam("b_reason"),
        verification_attempts=bindparam("b_attempts"),
        updated_at=bindparam("b_updated"),
        verified_at=bindparam("b_verified"),
        sequence=bindparam("b_sequence"),
    )
)
_STATUS_NOW = HotStatement(
    select(_SESSIONS.c.status, _SESSIONS.c.termination_reason).where(_SESSIONS.c.id == bindparam("b_id"))
)
_LIVE_CODES = HotStatement(
    select(_SECRETS.c.secret_hash, _SECRETS.c.key_id, _SECRETS.c.expires_at)
    .where(
        _SECRETS.c.session_id == bindparam("b_session_id"),
        _SECRETS.c.kind == "CODE",
        _SECRETS.c.active.is_(True),
    )
    .order_by(_SECRETS.c.activated_at.desc())
    .limit(VALID_CODES)
)
# The atomic consume of a verify: only one concurrent answer moves an open session to VERIFIED.
_CONSUME = HotStatement(
    update(_SESSIONS)
    # The statuses as bound values one by one (a HotStatement does not expand an IN list).
    .where(_SESSIONS.c.id == bindparam("b_id"), or_(*(_SESSIONS.c.status == s.value for s in sorted(OPEN))))
    .values(status=Status.VERIFIED.value, verified_at=bindparam("b_now"), updated_at=bindparam("b_now"))
)
_DEVICES = cast(Table, Device.__table__)
_DEVICE_TRUST = HotStatement(
    select(_DEVICES.c.trust_state).where(
        _DEVICES.c.client_id == bindparam("b_client_id"),
        _DEVICES.c.account_id == bindparam("b_account_id"),
        _DEVICES.c.device_session_id == bindparam("b_device_session_id"),
    )
)


# One more open of a session's link, counted by the database; the new count comes back.
_LINK_OPENED = HotStatement(
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("b_id"))
    .values(link_opens=_SESSIONS.c.link_opens + 1)
    .returning(_SESSIONS.c.link_opens)
)
_COUNTER_TABLE = cast(Table, FailureCounter.__table__)


def _failure_hit(dialect_name: str) -> Any:
    """One more consecutive failure, counted by the database (no read-modify-write to lose a concurrent
    one): the row inserted at 1 or its count moved up; the new count comes back."""
    keys: dict[str, Any] = {
        "client_id": bindparam("b_client_id"),
        "scope": bindparam("b_scope"),
        "subject_hash": bindparam("b_subject"),
    }
    row = dialect_insert(dialect_name, _COUNTER_TABLE).values(
        **keys, failures=1, locked=False, next_allowed_at=null(), updated_at=bindparam("b_now")
    )
    return row.on_conflict_do_update(
        index_elements=list(keys),
        set_={"failures": _counters.failures + 1, "updated_at": row.excluded.updated_at},
    ).returning(_counters.failures)


_FAILURE_HIT = HotStatement(_failure_hit)
_COUNTER_KEY = (
    _counters.client_id == bindparam("b_client_id"),
    _counters.scope == bindparam("b_scope"),
    _counters.subject_hash == bindparam("b_subject"),
)
_FAILURE_WAIT = HotStatement(
    update(_COUNTER_TABLE).where(*_COUNTER_KEY).values(next_allowed_at=bindparam("b_next"))
)
_FAILURE_LOCK = HotStatement(update(_COUNTER_TABLE).where(*_COUNTER_KEY).values(locked=True))
_COUNTER_STATE = HotStatement(
    select(_counters.failures, _counters.next_allowed_at, _counters.locked).where(*_COUNTER_KEY)
)
# Whether a challenge's destination or account is locked: the scopes of the two counters that are.
_LOCKED = HotStatement(
    select(_counters.scope).where(
        _counters.client_id == bindparam("b_client_id"),
        _counters.locked.is_(True),
        or_(
            (_counters.scope == "destination") & (_counters.subject_hash == bindparam("b_destination")),
            (_counters.scope == "account") & (_counters.subject_hash == bindparam("b_account")),
        ),
    )
)
_COUNTER_CLEAR = HotStatement(
    update(_COUNTER_TABLE)
    .where(*_COUNTER_KEY)
    .values(failures=0, locked=False, next_allowed_at=null(), updated_at=bindparam("b_now"))
)


class _CounterState(NamedTuple):
    failures: int
    next_allowed_at: datetime | None
    locked: bool


@dataclass(frozen=True)
class UnlockResult:
    """What `MfaService.unlock_destination` found and cleared (the state before it)."""

    channel: str
    masked: str
    failures: int
    locked: bool
    waiting_until: datetime | None

    def view(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "destination": self.masked,
            "failures": self.failures,
            "locked": self.locked,
            "waitingUntil": self.waiting_until.isoformat().replace("+00:00", "Z")
            if self.waiting_until
            else None,
            "cleared": self.failures > 0 or self.locked or self.waiting_until is not None,
        }


class NewSecret(NamedTuple):
    """A code or link token just made for an outbox message (see `MfaService.new_secret`)."""

    secret_id: str
    value: str
    sealed: str


@dataclass(frozen=True)
class SentMessage:
    """An outbox message the provider accepted (see `MfaService.messages_sent`)."""

    message_id: str
    session_id: str | None
    secret_id: str | None
    attempt: int
    provider: str


class StatusListener(Protocol):
    """Called inside the transaction of every status change (webhooks write their outbox rows here).

    A listener reads only the session's `LISTENER_COLUMNS`: when a worker records a round of sent
    messages, the sessions it hands over hold those and nothing else (every column read and decoded
    there is paid per message). It writes only by deferring (`db.defer_insert`): the record may run on a
    read snapshot, its writes at commit."""

    def __call__(
        self, session: Session, mfa: MfaSession, old: str | None, new: str, now: datetime
    ) -> None: ...


@dataclass
class MfaService:
    keyring: KeyRing
    clock: Clock
    limiter: RateLimiter
    templates: TemplateSource
    public_url: str
    listeners: list[StatusListener] = field(default_factory=list)
    # A client's challenge settings (and sandbox flag) are remembered this long: every challenge reads
    # them. A change made through this process is seen at once (`forget_config`), through another within
    # this many seconds, as for templates and brands.
    config_seconds: float = 1.0
    _configs: dict[str, tuple[float, bool, MfaConfig]] = field(default_factory=dict, repr=False)

    def forget_config(self, client_id: str) -> None:
        self._configs.pop(client_id, None)

    def _client_config(self, session: Session, client_id: str) -> tuple[bool, MfaConfig]:
        """The client's sandbox flag and effective settings, read at most once a `config_seconds`."""
        now = time.monotonic()
        hit = self._configs.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        [client] = _CLIENT_CONFIG.rows(session.connection(), {"client_id": client_id})
        sandbox = bool(client[0])
        config = _config_from(client[1], _StoredSettings(*client[3:]) if client[2] is not None else None)
        if len(self._configs) > 100_000:
            self._configs.clear()
        self._configs[client_id] = (now + self.config_seconds, sandbox, config)
        return sandbox, config

    # -- creation ------------------------------------------------------------------------------------

    def start_challenge(
        self, session: Session, ctx: DecisionContext, *, at_commit: bool = True
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Start a challenge in the caller's transaction: the session, its outbox message and
        its timeline. Nothing in a decision reads these rows back, so by default they are inserted when the
        transaction commits, with those of the other decisions sharing it (`db.defer_insert`): a few
        multi-row inserts per batch instead of an ORM flush per challenge. A caller that reads the session
        back in the same transaction (the console's sign-in) passes `at_commit=False`: the session row is
        then written at once."""
        body = ctx.body
        login = ctx.event_type == "LOGIN"
        strategy = body.get("strategy") or {}
        name_key = "mfaTemplateName" if login else "verificationTemplateName"
        values_key = "mfaTemplateValues" if login else "verificationTemplateValues"
        person = body.get("person") or {}
        name = strategy.get(name_key)
        if not name:
            return _error("NOT_ENOUGH_INFO"), {}
        template = self.templates.get(session, ctx.client_id, name)
        if template is None:
            return _error("TEMPLATE_NOT_FOUND"), {"strategy": {name_key: name}}
        channel = template.channel
        mfa_type = "NONCE_OTH" if template.kind == "OTH" else "OTP"
        echo_key = "emailAddress" if channel == "EMAIL" else "phoneNumber"
        raw_destination = person.get(echo_key)
        echoed: dict[str, Any] = {"strategy": {name_key: name}}
        if not raw_destination:
            return _error("NOT_ENOUGH_INFO", mfa_type, channel), echoed
        echoed["person"] = {echo_key: raw_destination}
        conn = session.connection()
        sandbox, config = self._client_config(session, ctx.client_id)

        magic = is_sandbox_destination(channel, raw_destination)
        if magic and not sandbox:
            return _error("INVALID_DESTINATION", mfa_type, channel), echoed
        if channel == "EMAIL":
            check = check_email(raw_destination)
        elif magic:
            check = check_phone(raw_destination, ["US"], False)
        else:
            check = check_phone(raw_destination, list(config.sms_allowed_countries), config.reject_voip)
        if not check.ok:
            log.info("challenge refused: %s", check.reason, extra={"channel": channel})
            return _error("INVALID_DESTINATION", mfa_type, channel), echoed
        destination = check.value
        echoed["person"] = {echo_key: destination}
        dest_hash = self.keyring.keyed_hash("destination", destination)

        account_id = (body.get("account") or {}).get("id")
        if not sandbox:
            # A locked destination or account could never verify: no message is sent to it (to another
            # address of the account neither).
            account_hash = self.keyring.keyed_hash("account", account_id) if account_id else ""
            locked = _LOCKED.rows(
                conn, {"b_client_id": ctx.client_id, "b_destination": dest_hash, "b_account": account_hash}
            )
            if locked:
                reason = "DESTINATION_LOCKED" if "destination" in (r[0] for r in locked) else "ACCOUNT_LOCKED"
                log.info("challenge refused: %s", reason, extra={"channel": channel})
                return _error("RATE_LIMITED", mfa_type, channel, reason), echoed
            if not self._send_allowed(channel, destination, dest_hash):
                return _error("RATE_LIMITED", mfa_type, channel, "TOO_MANY_SENDS"), echoed

        now = ctx.now
        ttl = config.ttl(channel, mfa_type, ctx.event_type)
        bind = bool(strategy.get("bindToDevice")) and mfa_type == "NONCE_OTH"
        match_number = mfa_secrets.new_match_number() if bind else None
        locale = choose_locale(
            list(template.locales),
            template.default_locale,
            body.get("preferredLanguageCode"),
            # DESIGN §2: the phone number's country decides next, for an email challenge too when the
            # request gave person.phoneNumber (E.164, already checked by the request schema).
            destination if channel == "SMS" else person.get("phoneNumber"),
        )
        name_parts = person.get("name") or {}
        row: dict[str, Any] = {
            "id": new_uuid(),
            "client_id": ctx.client_id,
            "decision_id": ctx.decision_id,
            "event_type": ctx.event_type,
            "type": mfa_type,
            "channel": channel,
            "template_name": name,
            "locale": locale,
            "destination": destination,
            "destination_hash": dest_hash,
            "account_id": account_id,
            "device_session_id": body.get("deviceSessionId"),
            "status": Status.UNKNOWN.value,
            "termination_reason": None,
            "delivery_status": DeliveryStatus.QUEUED.value,
            "send_attempts": 0,
            "verification_attempts": 0,
            "max_sends": config.max_sends,
            "max_attempts": config.max_attempts,
            "ttl_seconds": ttl,
            "code_length": config.otp_length,
            "expires_at": now + timedelta(seconds=ttl),
            "created_at": now,
            "updated_at": now,
            "verified_at": None,
            "target_url": strategy.get("verificationTargetUrl"),
            "bind_to_device": bind,
            "match_number": match_number,
            "sandbox": sandbox,
            "render_context": {
                "values": dict(strategy.get(values_key) or {}),
                "person": {k: name_parts.get(k) for k in ("first", "last", "preferred")},
            },
            "sequence": 0,
            "link_opens": 0,
        }
        # A transient object (never added to the session) for the listeners and the answer; made without
        # the mapped constructor, which costs more than the rest of this function's bookkeeping.
        mfa = _transient_session(row)
        if at_commit:
            # Inserted at commit before the rows that reference it (secret, message, events): deferred rows
            # go in in foreign-key order.
            defer_insert(session, _SESSIONS, [row])
        self._status_changed(session, mfa, None, Status.UNKNOWN, now)
        queued = self._queue_send(session, mfa, now, event=False)
        # One timeline row for the creation and the first send queued (`timeline` lists them as two).
        self._event(
            session,
            mfa,
            "CREATED",
            "api",
            {
                "decisionId": ctx.decision_id,
                "templateName": name,
                "locale": locale,
                "sandbox": sandbox,
                _QUEUED: queued,
            },
        )
        # The counters the listeners and the send moved, into the row before it is written.
        row["sequence"] = mfa.sequence
        row["send_attempts"] = mfa.send_attempts
        if not at_commit:
            conn.execute(insert(_SESSIONS), row)
        return self.challenge_view(mfa), echoed

    def _send_allowed(self, channel: str, destination: str, dest_hash: str) -> bool:
        if not self.limiter.hit("send:destination", dest_hash, DESTINATION_SEND_RATES).allowed:
            return False
        if channel == "SMS":
            return self.limiter.hit("send:prefix", phone_prefix(destination), PREFIX_SEND_RATES).allowed
        return True

    def _queue_send(
        self, session: Session, mfa: MfaSession, now: datetime, event: bool = True
    ) -> dict[str, Any]:
        """The outbox row of a send, inserted at commit (nothing in the transaction reads it back; the
        worker claims it after). Its code or link token is made by the worker that first claims it
        (`new_secret`), not here: the request does less, and no secret exists before a worker holds it."""
        message_id = new_uuid()
        defer_insert(
            session,
            Message.__table__,
            [
                {
                    "id": message_id,
                    "client_id": mfa.client_id,
                    "session_id": mfa.id,
                    "secret_id": None,
                    "channel": mfa.channel,
                    "destination": mfa.destination,
                    "template_name": mfa.template_name,
                    "locale": mfa.locale,
                    "purpose": "challenge",
                    "sealed_secret": None,
                    "status": MessageStatus.QUEUED.value,
                    "delivery_status": DeliveryStatus.QUEUED.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "locked_until": None,
                    "locked_by": None,
                    "provider": None,
                    "provider_message_id": None,
                    "last_error": None,
                    "created_at": now,
                    "sent_at": None,
                }
            ],
        )
        mfa.send_attempts += 1
        mfa.delivery_status = DeliveryStatus.QUEUED
        queued = {"messageId": message_id, "send": mfa.send_attempts}
        if event:  # else the caller stores it on a timeline row of its own (`_QUEUED`)
            self._event(session, mfa, "MESSAGE_QUEUED", "api", queued)
        # Read after commit to wake an in-process worker (see bootstrap.WorkNotifier).
        session.info["work_queued"] = True
        return queued

    def new_secret(
        self, session: Session, message_id: str, mfa: Any, channel: str, destination: str
    ) -> NewSecret:
        """The code or link token of a claimed outbox message that has none yet, made in the claim's
        transaction: its keyed hash is inserted (pending until the provider accepts the message, see
        `messages_sent`) and the value comes back sealed to the message (AES-GCM, bound to its id), so a
        worker that dies after claiming sends the same value when the message is taken over. `mfa` is
        the session's row (type, code_length, sandbox, ttl_seconds, id)."""
        secret, row = self.make_secret(message_id, mfa, channel, destination)
        self.store_secrets(session, [row])
        return secret

    def make_secret(
        self, message_id: str, mfa: Any, channel: str, destination: str
    ) -> tuple[NewSecret, dict[str, Any]]:
        """`new_secret` without the write: the secret and its row for `store_secrets`. A worker makes them
        before it takes SQLite's write lock (for the messages it is about to claim) and stores, in the
        claim's transaction, those of the messages it did claim; the others are dropped unsent."""
        now = self.clock.now()
        if mfa.type == "OTP":
            value = (
                mfa_secrets.sandbox_code(mfa.code_length)
                if mfa.sandbox and is_sandbox_destination(channel, destination)
                else mfa_secrets.new_code(mfa.code_length)
            )
            kind, purpose = "CODE", mfa_secrets.CODE_PURPOSE
        else:
            value = mfa_secrets.new_link_token()
            kind, purpose = "LINK", mfa_secrets.LINK_PURPOSE
        secret_id = new_uuid()
        row = {
            "id": secret_id,
            "session_id": mfa.id,
            "kind": kind,
            "secret_hash": self.keyring.keyed_hash(purpose, value),
            "key_id": self.keyring.current_hash_key_id,
            "active": False,
            "created_at": now,
            "activated_at": None,
            "expires_at": now + timedelta(seconds=mfa.ttl_seconds),
        }
        return NewSecret(secret_id, value, self.keyring.seal(value, message_id)), row

    def store_secrets(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Inserts secrets made by `make_secret` (at the commit, with the transaction's other rows)."""
        if rows:
            defer_insert(session, MfaSecret.__table__, rows)

    # -- reading -------------------------------------------------------------------------------------

    def load(self, session: Session, client_id: str, session_id: str, lock: bool = False) -> MfaSession:
        stmt = _LOAD_LOCKED if lock else _LOAD
        mfa = session.scalars(stmt, {"session_id": session_id, "client_id": client_id}).first()
        if mfa is None:
            raise SessionNotFound(session_id)
        return mfa

    def challenge_view(self, mfa: MfaSession) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ID": mfa.id,
            "type": mfa.type,
            "channel": mfa.channel,
            "status": mfa.status,
            "expiresAt": _iso(mfa.expires_at),
            "sendAttempts": mfa.send_attempts,
            "verificationAttempts": mfa.verification_attempts,
            "error": None,
        }
        if mfa.match_number:
            out["matchNumber"] = mfa.match_number
        return out

    def session_view(self, mfa: MfaSession) -> dict[str, Any]:
        return {
            **self.challenge_view(mfa),
            "eventType": mfa.event_type,
            "templateName": mfa.template_name,
            "locale": mfa.locale,
            "destination": mask(mfa.channel, mfa.destination),
            "deliveryStatus": mfa.delivery_status,
            "terminationReason": mfa.termination_reason,
            "remainingAttempts": max(0, mfa.max_attempts - mfa.verification_attempts),
            "maxSends": mfa.max_sends,
            "accountId": mfa.account_id,
            "decisionId": mfa.decision_id,
            "createdAt": _iso(mfa.created_at),
            "updatedAt": _iso(mfa.updated_at),
            "verifiedAt": _iso(mfa.verified_at) if mfa.verified_at else None,
            "sandbox": mfa.sandbox,
            "linkOpens": mfa.link_opens,
        }

    def timeline(self, session: Session, client_id: str, session_id: str) -> list[dict[str, Any]]:
        mfa = self.load(session, client_id, session_id)
        unlisted = mfa.link_opens - LISTED_LINK_OPENS
        listed_opens = LISTED_LINK_OPENS if unlisted > 0 else None
        rows = session.scalars(
            select(MfaEvent).where(MfaEvent.session_id == session_id).order_by(MfaEvent.id)
        ).all()
        out: list[dict[str, Any]] = []
        for e in rows:
            at, data = _iso(e.created_at), e.data
            # A row may stand for two entries: a creation with its first send queued, a send with the
            # status it moved the session to (stored as one, to write a row less per challenge and send).
            kind, inner = _FOLDED.get(e.type, (None, None))
            if inner is not None and isinstance(data, dict) and inner in data:
                data = dict(data)
                follow = data.pop(inner)
                out.append({"type": e.type, "at": at, "source": e.source, "data": data})
                out.append({"type": kind, "at": at, "source": e.source, "data": follow})
            else:
                out.append({"type": e.type, "at": at, "source": e.source, "data": data})
            if e.type == "LINK_OPENED" and listed_opens is not None:
                listed_opens -= 1
                if listed_opens == 0:  # after the last open listed: how many more there were
                    out.append(
                        {"type": LINK_OPENS_UNLISTED, "at": at, "source": "link", "data": {"count": unlisted}}
                    )
        return out

    # -- state changes -------------------------------------------------------------------------------

    def _open_or_raise(self, session: Session, mfa: MfaSession, now: datetime) -> None:
        if is_terminal(mfa.status):
            raise SessionClosed(mfa.status, mfa.termination_reason)
        if now >= mfa.expires_at:
            # Raising rolls this transaction back; the sweeper records the expiry within a second.
            raise SessionClosed(Status.TERMINATED.value, TerminationReason.EXPIRED.value)

    def verify_code(self, session: Session, client_id: str, session_id: str, code: str) -> dict[str, Any]:
        """An OTP verify. The session is read with Core statements into a transient object (never added to
        the ORM session) and what the verify changed is written back at once, in one UPDATE (`_write_back`):
        the row is locked for the transaction (the write lock on SQLite, FOR UPDATE on PostgreSQL), so a
        second verify of the same session, later in the same transaction or in another, reads it as this
        one left it."""
        now = self.clock.now()
        conn = _connection_after_flush(session)
        mfa = self._load_locked(conn, client_id, session_id)
        if mfa.type != "OTP":
            raise WrongMethod("this session is verified through its link, not a code")
        if is_terminal(mfa.status):
            raise SessionClosed(mfa.status, mfa.termination_reason)
        if now >= mfa.expires_at:
            self._terminate(session, mfa, TerminationReason.EXPIRED, now, "api")
            _write_back(session, conn, mfa)
            return {"status": mfa.status, "terminationReason": mfa.termination_reason}
        subjects = self._subjects(mfa)
        if not mfa.sandbox:
            self._check_throttle(session, mfa.client_id, subjects, now)
        # Count the attempt before checking the code, so no answer escapes the budget.
        mfa.verification_attempts += 1
        presented = mfa_secrets.normalise_code(code)
        matched = False
        for secret_hash, key_id, expires_at in _LIVE_CODES.rows(conn, {"b_session_id": mfa.id}):
            # Check every candidate (no early exit) so timing does not tell which code matched.
            ok = self.keyring.matches(mfa_secrets.CODE_PURPOSE, presented, secret_hash, key_id)
            matched = matched or (ok and expires_at > now)
        self._event(
            session, mfa, "VERIFY_ATTEMPT", "api", {"attempt": mfa.verification_attempts, "ok": matched}
        )
        if matched:
            self._verify(session, mfa, now, "api")
            result: dict[str, Any] = {"status": Status.VERIFIED.value}
        else:
            result = self._failed_attempt(session, mfa, subjects, now, "api")
        _write_back(session, conn, mfa)
        return result

    def _load_locked(self, conn: Any, client_id: str, session_id: str) -> MfaSession:
        """The session as a transient object, its row locked where the database locks rows (see
        `verify_code`); SessionNotFound when the client has no such session."""
        rows = _SESSION_ROW.rows(conn, {"b_id": session_id, "b_client_id": client_id})
        if not rows:
            raise SessionNotFound(session_id)
        return _transient_session(dict(zip(_SESSION_COLUMN_NAMES, rows[0], strict=True)))

    def _failed_attempt(
        self, session: Session, mfa: MfaSession, subjects: list[tuple[str, str]], now: datetime, source: str
    ) -> dict[str, Any]:
        if not mfa.sandbox:
            self._record_failure(session, mfa.client_id, subjects, now)
        remaining = mfa.max_attempts - mfa.verification_attempts
        if remaining <= 0:
            self._terminate(session, mfa, TerminationReason.MAX_ATTEMPTS, now, source)
            return {"status": mfa.status, "terminationReason": mfa.termination_reason, "remainingAttempts": 0}
        self._move(session, mfa, Status.VERIFICATION_ATTEMPT_FAILED, now, source)
        return {"status": mfa.status, "remainingAttempts": remaining}

    def _verify(self, session: Session, mfa: MfaSession, now: datetime, source: str) -> None:
        # The atomic consume: only one concurrent answer can move an open session to VERIFIED.
        # (A Core statement on the transaction's connection; the columns it wrote are set on the object as
        # the row now has them. A session the ORM holds (a link confirm) has its other changes flushed at
        # commit; a verify's transient one is written back by `verify_code`.)
        conn = session.connection()
        if _CONSUME.executemany(conn, [{"b_id": mfa.id, "b_now": now}]) != 1:
            [(status, reason)] = _STATUS_NOW.rows(conn, {"b_id": mfa.id})
            raise SessionClosed(status, reason)
        old = mfa.status
        set_committed_value(mfa, "status", Status.VERIFIED.value)
        set_committed_value(mfa, "verified_at", now)
        set_committed_value(mfa, "updated_at", now)
        self._event(session, mfa, "STATUS_CHANGED", source, {"from": old, "to": Status.VERIFIED.value})
        self._notify(session, mfa, old, Status.VERIFIED, now)
        if not mfa.sandbox:
            self._clear_failures(session, mfa.client_id, self._subjects(mfa), now)
        if mfa.account_id and mfa.device_session_id:
            self._trust_device(session, mfa, now)

    def _trust_device(self, session: Session, mfa: MfaSession, now: datetime) -> None:
        """The device becomes trusted for the account (not a banned one), written when the transaction
        commits (`db.defer_upsert`), as a decision marks a device seen."""
        assert mfa.account_id is not None and mfa.device_session_id is not None
        trust = _DEVICE_TRUST.rows(
            session.connection(),
            {
                "b_client_id": mfa.client_id,
                "b_account_id": mfa.account_id,
                "b_device_session_id": mfa.device_session_id,
            },
        )
        if trust and trust[0][0] == "BANNED":
            return
        defer_upsert(
            session,
            _DEVICES,
            {
                "client_id": mfa.client_id,
                "account_id": mfa.account_id,
                "device_session_id": mfa.device_session_id,
                "seen": True,
                "trust_state": "TRUSTED",
                "first_seen_at": now,
                "last_seen_at": now,
            },
            ("client_id", "account_id", "device_session_id"),
            ("seen", "trust_state", "last_seen_at"),
        )
        self._event(session, mfa, "DEVICE_TRUSTED", "system", {})

    def resend(self, session: Session, client_id: str, session_id: str) -> dict[str, Any]:
        now = self.clock.now()
        mfa = self.load(session, client_id, session_id, lock=True)
        self._open_or_raise(session, mfa, now)
        if mfa.send_attempts >= mfa.max_sends:
            raise SendLimitReached(mfa.max_sends)
        if not mfa.sandbox:
            # The account's counter too: a message to a locked account could never verify.
            self._check_throttle(session, mfa.client_id, self._subjects(mfa), now)
            if not self._send_allowed(mfa.channel, mfa.destination, mfa.destination_hash):
                raise SendRateLimited(60)
        self._event(session, mfa, "RESEND_REQUESTED", "api", {})
        self._queue_send(session, mfa, now)
        mfa.updated_at = now
        return self.session_view(mfa)

    def cancel(self, session: Session, client_id: str, session_id: str) -> dict[str, Any]:
        now = self.clock.now()
        mfa = self.load(session, client_id, session_id, lock=True)
        if is_terminal(mfa.status):
            raise SessionClosed(mfa.status, mfa.termination_reason)
        self._terminate(session, mfa, TerminationReason.CANCELLED, now, "api")
        return self.session_view(mfa)

    # -- hosted link ---------------------------------------------------------------------------------

    def find_by_token(self, session: Session, token: str, lock: bool = False) -> MfaSession | None:
        """The open session a live link token belongs to, or None (unknown, expired or used alike)."""
        if not token or len(token) > 128:
            return None
        now = self.clock.now()
        secret = session.scalars(
            select(MfaSecret).where(
                MfaSecret.secret_hash.in_(self.keyring.all_hashes(mfa_secrets.LINK_PURPOSE, token)),
                MfaSecret.kind == "LINK",
            )
        ).first()
        if secret is None or not secret.active or secret.expires_at <= now:
            return None
        if not self.keyring.matches(mfa_secrets.LINK_PURPOSE, token, secret.secret_hash, secret.key_id):
            return None
        stmt = select(MfaSession).where(MfaSession.id == secret.session_id)
        if lock:
            stmt = stmt.with_for_update()
        mfa = session.scalars(stmt).first()
        if mfa is None or is_terminal(mfa.status) or mfa.expires_at <= now:
            return None
        # The last three links stay valid; an older one is as dead as an unknown one.
        recent = session.scalars(
            select(MfaSecret.id)
            .where(MfaSecret.session_id == mfa.id, MfaSecret.active.is_(True))
            .order_by(MfaSecret.activated_at.desc())
            .limit(VALID_CODES)
        ).all()
        return mfa if secret.id in recent else None

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
        sent = session.scalar(
            select(Message.sent_at)
            .where(Message.session_id == mfa.id, Message.sent_at.is_not(None))
            .order_by(Message.sent_at.desc())
            .limit(1)
        )
        fast = sent is not None and (now - sent).total_seconds() < PREFETCH_WINDOW_SECONDS
        prefetch = method == "HEAD" or not browser_like or fast
        # Anyone holding the link can open it any number of times: past the first few, opens are counted
        # on the session instead of each writing a timeline row.
        [(opens,)] = _LINK_OPENED.rows(session.connection(), {"b_id": mfa.id})
        if opens <= LISTED_LINK_OPENS:
            self._event(
                session,
                mfa,
                "LINK_OPENED",
                "link",
                {"method": method, "userAgent": user_agent[:300], "ip": ip, "prefetch": prefetch},
            )
        return prefetch

    def confirm_link(self, session: Session, mfa: MfaSession, chosen_number: str | None) -> dict[str, Any]:
        now = self.clock.now()
        self._open_or_raise(session, mfa, now)
        mfa.verification_attempts += 1
        if mfa.bind_to_device and not mfa_secrets.same_number(chosen_number, mfa.match_number):
            # A wrong pick ends the session, as "This wasn't me" does (authenticator apps do the same): the
            # person at the link is not the one at the screen. Were it one attempt of several, picking each
            # of the three numbers in turn would always verify.
            self._event(
                session,
                mfa,
                "VERIFY_ATTEMPT",
                "link",
                {"attempt": mfa.verification_attempts, "ok": False, "reason": NUMBER_MISMATCH},
            )
            if not mfa.sandbox:
                self._record_failure(session, mfa.client_id, self._subjects(mfa), now)
            self._terminate(session, mfa, TerminationReason.NOT_ME, now, "link")
            return {
                "status": mfa.status,
                "terminationReason": mfa.termination_reason,
                "reason": NUMBER_MISMATCH,
            }
        self._event(
            session, mfa, "VERIFY_ATTEMPT", "link", {"attempt": mfa.verification_attempts, "ok": True}
        )
        self._verify(session, mfa, now, "link")
        return {"status": Status.VERIFIED.value}

    def deny_link(self, session: Session, mfa: MfaSession) -> None:
        now = self.clock.now()
        self._open_or_raise(session, mfa, now)
        self._terminate(session, mfa, TerminationReason.NOT_ME, now, "link")

    # -- worker-side changes -------------------------------------------------------------------------

    def messages_sent(self, session: Session, sent: list[SentMessage], now: datetime) -> None:
        """The provider accepted these messages: each one's secret becomes valid (for its TTL from now), and
        its session is MESSAGE_SENT.

        Core statements, a few per round: the sessions read in one statement (locked on PostgreSQL, in id
        order, so a concurrent verify or cancel waits instead of being overwritten), the secrets that exist
        in another, and both written back at commit with one executemany each (`db.defer_update`), each
        session's only if its `sequence` is still the one read: a worker's record can be worked out on a
        read snapshot (SQLite), and a session that changed meanwhile makes it run again under the lock.
        The listeners get a transient session object holding the `LISTENER_COLUMNS` (the rest are not
        read)."""
        session_ids = sorted({m.session_id for m in sent if m.session_id})
        if not session_ids:
            return
        conn = session.connection()
        sessions = {
            row.id: _transient_session(dict(row._mapping))
            for row in conn.execute(_SENT_SESSIONS, {"ids": session_ids})
        }
        read_sequence = {mfa.id: mfa.sequence for mfa in sessions.values()}
        wanted = [m.secret_id for m in sent if m.secret_id and m.session_id in sessions]
        existing = {r[0] for r in conn.execute(_EXISTING_SECRETS, {"ids": wanted})} if wanted else set()
        secret_rows: list[dict[str, Any]] = []
        for m in sent:
            mfa = sessions.get(m.session_id or "")
            if mfa is None:
                continue
            if m.secret_id in existing:
                expires = now + timedelta(seconds=mfa.ttl_seconds)
                secret_rows.append({"b_id": m.secret_id, "b_now": now, "b_expires": expires})
                if not is_terminal(mfa.status) and expires > mfa.expires_at:
                    mfa.expires_at = expires
            mfa.delivery_status = DeliveryStatus.SENT.value
            mfa.updated_at = now
            data: dict[str, Any] = {"messageId": m.message_id, "provider": m.provider, "attempt": m.attempt}
            if mfa.status in (Status.UNKNOWN, Status.VERIFICATION_ATTEMPT_FAILED):
                # One timeline row for the send and the status it moves the session to (listed as two).
                data[_STATUS_CHANGED] = self._move(
                    session, mfa, Status.MESSAGE_SENT, now, "worker", event=False
                )
            self._event(session, mfa, "MESSAGE_SENT", "worker", data)
        # Written at commit (this may run on a read snapshot: see Dispatcher.run_once).
        if secret_rows:
            defer_update(session, _ACTIVATE_SECRET, secret_rows)
        defer_update(
            session,
            _SENT_SESSION_UPDATE,
            [
                {
                    "b_id": mfa.id,
                    "b_read_sequence": read_sequence[mfa.id],
                    "b_status": str(mfa.status),
                    "b_delivery": mfa.delivery_status,
                    "b_updated": mfa.updated_at,
                    "b_expires": mfa.expires_at,
                    "b_sequence": mfa.sequence,
                }
                for mfa in sessions.values()
            ],
        )

    def message_failed(
        self, session: Session, message: Message, authorization: bool, reason: str, now: datetime
    ) -> None:
        if message.session_id is None:
            return
        mfa = session.get(MfaSession, message.session_id)
        if mfa is None:
            return
        mfa.delivery_status = DeliveryStatus.UNDELIVERED
        self._event(
            session, mfa, "MESSAGE_FAILED", "worker", {"messageId": message.id, "reason": reason[:200]}
        )
        if not is_terminal(mfa.status):
            self._move(
                session, mfa, Status.FAILED_AUTHORIZATION if authorization else Status.INVALID, now, "worker"
            )

    def delivery_report(
        self, session: Session, message: Message, status: DeliveryStatus, source: str
    ) -> None:
        now = self.clock.now()
        message.delivery_status = status
        if message.session_id is None:
            return
        mfa = session.get(MfaSession, message.session_id)
        if mfa is None:
            return
        mfa.delivery_status = status
        mfa.updated_at = now
        self._event(
            session, mfa, "DELIVERY_REPORT", source, {"messageId": message.id, "deliveryStatus": status.value}
        )
        if status in (DeliveryStatus.UNDELIVERED, DeliveryStatus.BOUNCED) and not is_terminal(mfa.status):
            self._move(session, mfa, Status.INVALID, now, source)

    def message_skipped(self, session: Session, message_id: str, session_id: str | None) -> None:
        """A queued message whose session closed before it went out is not sent."""
        if session_id:
            mfa = session.get(MfaSession, session_id)
            if mfa is not None:
                self._event(
                    session,
                    mfa,
                    "MESSAGE_SKIPPED",
                    "worker",
                    {"messageId": message_id, "reason": f"session {mfa.status}"},
                )

    def any_expired(self, session: Session) -> bool:
        """Whether an open session has passed its expiry (a read: see Worker._sweep)."""
        return (
            session.execute(select(MfaSession.id).where(*_expired(self.clock.now())).limit(1)).first()
            is not None
        )

    def expire_due(self, session: Session, limit: int = 200) -> int:
        now = self.clock.now()
        due = session.scalars(
            select(MfaSession)
            .where(*_expired(now))
            .order_by(MfaSession.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for mfa in due:
            self._terminate(session, mfa, TerminationReason.EXPIRED, now, "sweeper")
        return len(due)

    # -- helpers -------------------------------------------------------------------------------------

    def _move(
        self, session: Session, mfa: MfaSession, new: Status, now: datetime, source: str, event: bool = True
    ) -> dict[str, Any]:
        old = mfa.status
        check_move(old, new)
        mfa.status = new.value
        mfa.updated_at = now
        change = {"from": old, "to": new.value}
        if event:  # else the caller stores it on a timeline row of its own (`_STATUS_CHANGED`)
            self._event(session, mfa, "STATUS_CHANGED", source, change)
        self._notify(session, mfa, old, new, now)
        return change

    def _terminate(
        self, session: Session, mfa: MfaSession, reason: TerminationReason, now: datetime, source: str
    ) -> None:
        mfa.termination_reason = reason.value
        self._move(session, mfa, Status.TERMINATED, now, source)

    def _notify(self, session: Session, mfa: MfaSession, old: str | None, new: str, now: datetime) -> None:
        mfa.sequence += 1
        for listener in self.listeners:
            listener(session, mfa, old, str(new), now)

    def _status_changed(
        self, session: Session, mfa: MfaSession, old: str | None, new: Status, now: datetime
    ) -> None:
        self._notify(session, mfa, old, new, now)

    def _event(self, session: Session, mfa: MfaSession, kind: str, source: str, data: dict[str, Any]) -> None:
        # Append-only and never read back in the same transaction: one multi-row insert at commit.
        defer_insert(
            session,
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
        """Clear a destination's consecutive failures, its wait and its lock (after 100 failures new
        challenges to it answer RATE_LIMITED) for one client. `destination` is normalised here as challenges
        normalise it, and looked up under every configured secret key, so counters kept before a key
        rotation are found too. The send limits (per destination and prefix) are windows that pass by
        themselves and are left alone."""
        check = normalise_destination(channel, destination)
        if not check.ok:
            raise InvalidDestination("emailAddress" if channel == "EMAIL" else "phoneNumber", check.reason)
        conn = session.connection()
        failures, locked, waiting = 0, False, None
        keys = []
        for subject in self.keyring.all_hashes("destination", check.value):
            key = {"b_client_id": client_id, "b_scope": "destination", "b_subject": subject}
            for row in _COUNTER_STATE.rows(conn, key):
                state = _CounterState(*row)
                failures = max(failures, state.failures)
                locked = locked or state.locked
                if state.next_allowed_at is not None and state.next_allowed_at > self.clock.now():
                    waiting = max(waiting or state.next_allowed_at, state.next_allowed_at)
                keys.append({**key, "b_now": self.clock.now()})
        if keys:
            _COUNTER_CLEAR.executemany(conn, keys)
        return UnlockResult(channel, mask(channel, check.value), failures, locked, waiting)

    def _subjects(self, mfa: MfaSession) -> list[tuple[str, str]]:
        subjects = [("destination", mfa.destination_hash)]
        if mfa.account_id:
            subjects.append(("account", self.keyring.keyed_hash("account", mfa.account_id)))
        return subjects

    def _counters(
        self, session: Session, client_id: str, subjects: list[tuple[str, str]]
    ) -> list[_CounterState]:
        """The failure counters of these subjects that exist."""
        conn = session.connection()
        out = []
        for scope, subject in subjects:
            rows = _COUNTER_STATE.rows(
                conn, {"b_client_id": client_id, "b_scope": scope, "b_subject": subject}
            )
            if rows:
                out.append(_CounterState(*rows[0]))
        return out

    def _check_throttle(
        self, session: Session, client_id: str, subjects: list[tuple[str, str]], now: datetime
    ) -> None:
        for c in self._counters(session, client_id, subjects):
            if c.locked:
                raise Throttled(MAX_WAIT_SECONDS, locked=True)
            if c.next_allowed_at is not None and c.next_allowed_at > now:
                raise Throttled(max(1, int((c.next_allowed_at - now).total_seconds()) + 1))

    def _record_failure(
        self, session: Session, client_id: str, subjects: list[tuple[str, str]], now: datetime
    ) -> None:
        conn = session.connection()
        for scope, subject in subjects:
            key = {"b_client_id": client_id, "b_scope": scope, "b_subject": subject}
            [(failures,)] = _FAILURE_HIT.rows(conn, {**key, "b_now": now})
            wait = throttle_wait(failures)
            if wait:
                _FAILURE_WAIT.executemany(conn, [{**key, "b_next": now + timedelta(seconds=wait)}])
            if failures >= LOCK_AFTER:
                _FAILURE_LOCK.executemany(conn, [key])

    def _clear_failures(
        self, session: Session, client_id: str, subjects: list[tuple[str, str]], now: datetime
    ) -> None:
        conn = session.connection()
        _COUNTER_CLEAR.executemany(
            conn,
            [
                {"b_client_id": client_id, "b_scope": scope, "b_subject": subject, "b_now": now}
                for scope, subject in subjects
            ],
        )


def _connection_after_flush(session: Session) -> Any:
    """The transaction's connection, for Core statements that must see (or must not be overwritten by)
    ORM changes made earlier in the transaction and not yet flushed."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection()


def _write_back(session: Session, conn: Any, mfa: MfaSession) -> None:
    """What a verify changes on a transient session (see `verify_code`), written to its row. A copy of the
    session the ORM loaded earlier in the transaction is expired, so that it is read again, as now written,
    before anything uses or changes it."""
    tracked = session.identity_map.get(session.identity_key(MfaSession, (mfa.id,)))
    if tracked is not None:
        session.expire(tracked)
    _WRITE_BACK.executemany(
        conn,
        [
            {
                "b_id": mfa.id,
                "b_status": mfa.status,
                "b_reason": mfa.termination_reason,
                "b_attempts": mfa.verification_attempts,
                "b_updated": mfa.updated_at,
                "b_verified": mfa.verified_at,
                "b_sequence": mfa.sequence,
            }
        ],
    )


def _expired(now: datetime) -> tuple[Any, Any]:
    """The sessions still open past their expiry (what the sweeper ends)."""
    return MfaSession.status.in_([s.value for s in OPEN]), MfaSession.expires_at <= now


def throttle_wait(failures: int) -> int:
    """Seconds to wait after `failures` consecutive failures: none up to 10, then 30 s doubling to 1 h."""
    if failures < THROTTLE_AFTER:
        return 0
    return int(min(MAX_WAIT_SECONDS, FIRST_WAIT_SECONDS * 2 ** (failures - THROTTLE_AFTER)))


def _error(
    code: str, mfa_type: str | None = None, channel: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": None,
        "type": mfa_type,
        "channel": channel,
        "status": None,
        "expiresAt": None,
        "sendAttempts": 0,
        "verificationAttempts": 0,
        "error": code,
    }
    if reason is not None:
        out["errorReason"] = reason
    return out


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
