"""The MFA session's side of its messages: what the outbox dispatcher asks of the "challenge" purpose.

`ChallengeDelivery` implements `messaging.interfaces.DeliveryHooks`: it contributes the session's row to
the claim (one outer join, the columns a secret is made from), makes each message's code or link token
when a worker first claims it, and moves the session when its message is sent, fails, is skipped or is
reported on by the provider. The dispatcher never imports `mfa`; `bootstrap` registers this hook.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from passgate.contacts import is_sandbox_destination
from passgate.db.deferred import DeferredWrites
from passgate.ids import new_uuid
from passgate.keyring import KeyRing
from passgate.messaging.interfaces import Claimed, ClaimJoin, NewSecret, SentMessage
from passgate.messaging.models import Message
from passgate.messaging.senders.base import SendError
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import DeliveryStatus
from passgate.messaging.templates import PersonName, RenderContext, RenderedMessage
from passgate.messaging.templates.specialized import render_reusing
from passgate.mfa import queries
from passgate.mfa import secrets as mfa_secrets
from passgate.mfa.models import MfaSecret, MfaSession
from passgate.mfa.services import STATUS_CHANGED, MfaService
from passgate.mfa.states import Status, TerminationReason, is_terminal

PURPOSE = "challenge"
_sessions = cast(Table, MfaSession.__table__)
# What the claim reads of its sessions: whether they are still open, what a code or link token is made
# from, and what the message renders with (read with the round's messages, in the look ahead's read on
# SQLite, rather than in a read of its own after the claim).
_OWNER_COLUMNS = ("id", "status", "ttl_seconds", "type", "sandbox", "code_length", "render_context")
_PREFIX = "s_"
_CLAIM_SESSIONS = select(*(_sessions.c[name] for name in _OWNER_COLUMNS)).where(
    _sessions.c.id.in_(bindparam("ids", expanding=True))
)


# The joined session's columns of a claimed row, in `_OWNER_COLUMNS` order.
_owner_values = operator.attrgetter(*(f"{_PREFIX}{name}" for name in _OWNER_COLUMNS))


class SessionOfClaim(NamedTuple):
    """A claimed message's session, as the claim reads it (`_OWNER_COLUMNS`)."""

    id: str
    status: str
    ttl_seconds: int
    type: str
    sandbox: bool
    code_length: int
    render_context: Any


@dataclass
class ChallengeDelivery:
    """The "challenge" purpose's hooks (`messaging.interfaces.DeliveryHooks`)."""

    mfa: MfaService
    keyring: KeyRing
    purpose: str = PURPOSE

    def __post_init__(self) -> None:
        self.join: ClaimJoin | None = ClaimJoin(_sessions, _OWNER_COLUMNS, _PREFIX)

    # -- the claim -------------------------------------------------------------------------------------

    def owner_of(self, row: Any) -> SessionOfClaim | None:
        values = _owner_values(row)
        return SessionOfClaim(*values) if values[0] is not None else None

    def load_owners(self, session: Session, owner_ids: Sequence[str]) -> Mapping[str, SessionOfClaim]:
        if not owner_ids:
            return {}
        rows = session.connection().execute(_CLAIM_SESSIONS, {"ids": list(owner_ids)})
        return {r.id: SessionOfClaim(*r) for r in rows}

    def closed(self, owner: Any | None) -> str | None:
        return f"session {owner.status}" if owner is not None and is_terminal(owner.status) else None

    def needs_secret(self, owner: Any | None) -> bool:
        return owner is not None

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
        now = self.mfa.clock.now()
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
            DeferredWrites.of(session).insert(MfaSecret.__table__, rows)

    # -- what sending needs ----------------------------------------------------------------------------

    def render_contexts(self, session: Session, owners: Sequence[Any]) -> Mapping[str, Any]:
        return {owner.id: owner.render_context for owner in owners}  # read with the claim

    def prepare(
        self,
        session: Session,
        templates: TemplateSource,
        message: Any,
        owner: Any | None,
        secret: str | None,
        contexts: Mapping[str, Any],
    ) -> Claimed:
        m = message
        return Claimed(
            message_id=m.id,
            client_id=m.client_id,
            channel=m.channel,
            destination=m.destination,
            attempt=m.attempts,
            secret=secret,
            template=templates.get(session, m.client_id, m.template_name),
            brand=templates.brand(session, m.client_id),
            locale=m.locale,
            context=dict(contexts.get(owner.id) or {}) if owner is not None else {},
            ttl_minutes=max(1, (owner.ttl_seconds if owner else 600) // 60),
            mfa_type=owner.type if owner else None,
            sandbox=bool(owner and owner.sandbox),
            from_address=templates.from_address(session, m.client_id),
        )

    def render(
        self, claimed: Claimed, public_url: str, host: str
    ) -> tuple[RenderedMessage, str | None, str | None]:
        c = claimed
        if c.template is None:
            raise SendError("the message's template no longer exists")
        if c.secret is None:
            raise SendError("the message's secret cannot be read (secret keys rotated away?)")
        link = f"{public_url}/v/{c.secret}" if c.mfa_type == "NONCE_OTH" else None
        code = c.secret if c.mfa_type == "OTP" else None
        person = c.context.get("person") or {}
        context = RenderContext(
            brand=c.brand,
            host=host,
            expires_in_minutes=c.ttl_minutes,
            link=link,
            code=code,
            person=PersonName(**{k: person.get(k) for k in ("first", "last", "preferred")}),
            values=c.context.get("values") or {},
        )
        # The parts that repeat from one message to the next are kept and reused (`render_reusing`).
        return render_reusing(c.template, c.locale, context), link, code

    # -- worker-side changes ---------------------------------------------------------------------------

    def messages_sent(self, session: Session, sent: list[SentMessage], now: datetime) -> None:
        """The provider accepted these messages: each one's secret becomes valid (for its TTL from now), and
        its session is MESSAGE_SENT.

        Core statements, a few per round: the sessions read in one statement (locked on PostgreSQL, in id
        order, so a concurrent verify or cancel waits instead of being overwritten), the secrets that exist
        in another, and both written back at commit with one executemany each (`db.defer_update`), each
        session's only if its `sequence` is still the one read: a worker's record can be worked out on a
        read snapshot (SQLite), and a session that changed meanwhile makes it run again under the lock.
        The listeners get a plain object (`queries.PlainSession`) holding the `LISTENER_COLUMNS` (the
        rest are not read)."""
        session_ids = sorted({m.session_id for m in sent if m.session_id})
        if not session_ids:
            return
        conn = session.connection()
        sessions = {
            row.id: queries.PlainSession(dict(row._mapping))
            for row in conn.execute(queries.SENT_SESSIONS, {"ids": session_ids})
        }
        read_sequence = {mfa.id: mfa.sequence for mfa in sessions.values()}
        wanted = [m.secret_id for m in sent if m.secret_id and m.session_id in sessions]
        existing = (
            {r[0] for r in conn.execute(queries.EXISTING_SECRETS, {"ids": wanted})} if wanted else set()
        )
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
                data[STATUS_CHANGED] = self.mfa._move(
                    session, mfa, Status.MESSAGE_SENT, now, "worker", event=False
                )
            self.mfa._event(session, mfa, "MESSAGE_SENT", "worker", data)
        # Written at commit (this may run on a read snapshot: see Dispatcher.run_once).
        if secret_rows:
            DeferredWrites.of(session).update(queries.ACTIVATE_SECRET, secret_rows)
        DeferredWrites.of(session).update(
            queries.SENT_SESSION_UPDATE,
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
        self.mfa._event(
            session, mfa, "MESSAGE_FAILED", "worker", {"messageId": message.id, "reason": reason[:200]}
        )
        if not is_terminal(mfa.status):
            self.mfa._move(
                session, mfa, Status.FAILED_AUTHORIZATION if authorization else Status.INVALID, now, "worker"
            )

    def delivery_report(
        self,
        session: Session,
        message: Message,
        status: DeliveryStatus,
        source: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """A provider's report on a message, or a hard bounce (the message's own delivery status is the
        dispatcher's to set). A bounce ends an open session INVALID with `terminationReason` BOUNCED."""
        now = self.mfa.clock.now()
        if message.session_id is None:
            return
        mfa = session.get(MfaSession, message.session_id)
        if mfa is None:
            return
        mfa.delivery_status = status
        mfa.updated_at = now
        data = {**(detail or {}), "messageId": message.id, "deliveryStatus": status.value}
        self.mfa._event(session, mfa, "DELIVERY_REPORT", source, data)
        if status in (DeliveryStatus.UNDELIVERED, DeliveryStatus.BOUNCED) and not is_terminal(mfa.status):
            if status == DeliveryStatus.BOUNCED:
                mfa.termination_reason = TerminationReason.BOUNCED.value
            self.mfa._move(session, mfa, Status.INVALID, now, source)

    def delivery_delayed(
        self, session: Session, message: Message, source: str, detail: Mapping[str, Any]
    ) -> None:
        """A soft bounce: on the timeline (`DELIVERY_DELAYED`); the session and its delivery status stay."""
        if message.session_id is None:
            return
        mfa = session.get(MfaSession, message.session_id)
        if mfa is not None:
            self.mfa._event(session, mfa, "DELIVERY_DELAYED", source, {**detail, "messageId": message.id})

    def message_skipped(self, session: Session, message_id: str, owner_id: str | None) -> None:
        """A queued message whose session closed before it went out is not sent."""
        if owner_id:
            mfa = session.get(MfaSession, owner_id)
            if mfa is not None:
                self.mfa._event(
                    session,
                    mfa,
                    "MESSAGE_SKIPPED",
                    "worker",
                    {"messageId": message_id, "reason": f"session {mfa.status}"},
                )
