"""The claim side of a dispatcher round: look ahead, claim, prepare (see `messaging.dispatcher`).

What depends on a message's purpose is asked of the `DeliveryHooks` registered for it (`register`); each
hook's outer join and columns are composed into the claim statement once, at registration, so that a round
reads its messages and their owners' rows in one statement (`queries.RoundStatements`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db import read_only
from passgate.db.deferred import DeferredWrites
from passgate.keyring import KeyRing
from passgate.messaging import queries
from passgate.messaging.interfaces import Claimed, DeliveryHooks, NewSecret
from passgate.messaging.sources import TemplateSource
from passgate.messaging.templates import Brand, MessageTemplate


class Premade(dict[str, tuple[NewSecret, dict[str, Any]]]):
    """Codes and link tokens made before a claim (`Claimer.look_ahead`), by message id, each with its row;
    and `rows`, the due rows the look ahead read, which a claim worked out on a read snapshot starts from
    instead of reading them again (once: if that claim runs again, it reads)."""

    rows: Sequence[Any] | None = None


# A claimed round: each message's row, its owner's row (None for a test send) and the secret made for it.
ClaimedRows = list[tuple[Any, Any, str | None]]
# Messages of a purpose no hook is registered for are handled as challenges (as before purposes had hooks).
DEFAULT_PURPOSE = "challenge"


class Claimer:
    """Takes rounds of due messages for a worker; only the statements that must hold the write lock run
    in the claim's transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        keyring: KeyRing,
        templates: TemplateSource,
        worker_id: str,
        lock_seconds: int,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.keyring = keyring
        self.templates = templates
        self.worker_id = worker_id
        self.lock_seconds = lock_seconds
        self.hooks: dict[str, DeliveryHooks] = {}
        self._round = queries.RoundStatements.compose(())

    def register(self, hook: DeliveryHooks) -> None:
        """Makes `hook` the owner of its purpose's messages; its join joins the claim statement."""
        self.hooks[hook.purpose] = hook
        self._round = queries.RoundStatements.compose([h.join for h in self.hooks.values() if h.join])

    def hook(self, purpose: str) -> DeliveryHooks:
        return self.hooks.get(purpose) or self.hooks[DEFAULT_PURPOSE]

    def look_ahead(self, limit: int) -> Premade | None:
        """Before a claim, with a read (no write lock on SQLite): None when nothing is due (the claim is
        skipped), else the codes and link tokens of the due messages that need one, made now
        (`DeliveryHooks.make_secret`), by message id. The claim stores those of the messages it takes, so
        the hashing and sealing happen outside its transaction, which the API's decisions wait for."""
        with read_only(self.sessions) as session:
            params = {"now": self.clock.now(), "limit": limit}
            due = session.connection().execute(self._round.due_round, params).all()
        if not due:
            return None
        premade = Premade()
        premade.rows = due
        for r in due:
            hook = self.hook(r.purpose)
            owner = hook.owner_of(r)
            if r.secret_id is None and hook.needs_secret(owner):
                premade[r.id] = hook.make_secret(r.id, owner, r.channel, r.destination)
        return premade

    def _secret_for(
        self, m: Any, hook: DeliveryHooks, owner: Any | None, premade: Premade | None
    ) -> tuple[NewSecret, dict[str, Any]] | None:
        """The code or link token a claimed message goes out with, if it needs one now (a challenge's
        message that has none yet): the one made before the claim, else one made here."""
        if m.secret_id is not None or not hook.needs_secret(owner):
            return None
        pre = premade.get(m.id) if premade else None
        return pre if pre is not None else hook.make_secret(m.id, owner, m.channel, m.destination)

    def _owners(self, session: Session, due: list[Any]) -> dict[str, dict[str, Any]]:
        """The owners of claimed messages by purpose and owner id, one read per purpose that has any."""
        out: dict[str, dict[str, Any]] = {}
        for purpose in {m.purpose for m in due if m.session_id}:
            ids = sorted({m.session_id for m in due if m.session_id and m.purpose == purpose})
            out[purpose] = dict(self.hook(purpose).load_owners(session, ids))
        return out

    def claim(self, session: Session, limit: int, premade: Premade | None = None) -> ClaimedRows:
        """Take a round: the claimed messages' rows, each with its owner's row (None for a test send) and
        the code or link token made for it now (None when it had one, or needs none): a challenge
        message gets its secret when a worker first claims it (`DeliveryHooks.make_secret`).
        Only the statements that must hold the write lock run here; what sending needs is worked out
        after the commit (`prepare`): on SQLite the API waits for this lock, so every microsecond spent
        holding it is one the API may spend idle."""
        now = self.clock.now()
        conn = session.connection()
        # One statement takes the round: the due rows (FOR UPDATE SKIP LOCKED on PostgreSQL, so workers
        # never wait on each other's rows; SQLite's write lock serialises them) move to SENDING, attempt
        # counted and claim stamped, and come back. An ORM load, attribute sets and a flush of the same
        # rows cost the worker more than sending them.
        until = now + timedelta(seconds=self.lock_seconds)
        params = {"now": now, "limit": limit, "until": until, "by": self.worker_id}
        due = sorted(conn.execute(queries.CLAIM, params).all(), key=lambda m: (m.next_attempt_at, m.id))
        if not due:
            return []
        owners = self._owners(session, due)
        rows: ClaimedRows = []
        skipped: list[tuple[Any, str]] = []
        made: list[dict[str, Any]] = []
        stored: dict[str, list[dict[str, Any]]] = {}
        for m in due:
            hook = self.hook(m.purpose)
            owner = owners.get(m.purpose, {}).get(m.session_id) if m.session_id else None
            reason = hook.closed(owner)
            if reason is not None:
                skipped.append((m, reason))
                continue
            fresh = None
            pre = self._secret_for(m, hook, owner, premade)
            if pre is not None:
                secret, row = pre
                stored.setdefault(m.purpose, []).append(row)
                made.append({"mid": m.id, "secret_id": secret.secret_id, "sealed": secret.sealed})
                fresh = secret.value
            rows.append((m, owner, fresh))
        if made:
            for purpose, secrets in stored.items():
                self.hook(purpose).store_secrets(session, secrets)
            queries.SET_SECRET.executemany(conn, made)
        if skipped:
            # Closed before it went out: not sent, and not counted as an attempt.
            conn.execute(
                queries.SKIP, [{"mid": m.id, "error": f"not sent: {reason}"} for m, reason in skipped]
            )
            for m, _ in skipped:
                self.hook(m.purpose).message_skipped(session, m.id, m.session_id)
        return rows

    def claim_on_snapshot(self, session: Session, limit: int, premade: Premade | None = None) -> ClaimedRows:
        """`_claim` for a unit worked out on a read snapshot (SQLite, `writes_at_commit`): the due messages
        are read, and each one's claim (with the code or link token made for it) is written at commit
        only if it is still due then (`db.defer_update`): if another worker took one meanwhile, nothing
        is written and the unit runs again with the write lock held. A round with a message whose owner
        closed goes the ordinary way at once (`_claim`: its skip writes are refused on a snapshot).

        The rows the look ahead read (`premade.rows`) are the round, the first time: the claim of each
        checks at the write that it is still due, as for rows read here."""
        now = self.clock.now()
        due = premade.rows if premade is not None else None
        if premade is not None and due is not None:
            premade.rows = None  # a unit that runs again reads what is due then
        else:
            due = session.connection().execute(self._round.due_round, {"now": now, "limit": limit}).all()
        if not due:
            return []
        owned = [(r, self.hook(r.purpose)) for r in due]
        owners = [hook.owner_of(r) for r, hook in owned]
        if any(hook.closed(owner) is not None for (_, hook), owner in zip(owned, owners, strict=True)):
            return self.claim(session, limit, premade)
        until = now + timedelta(seconds=self.lock_seconds)
        rows: ClaimedRows = []
        claims = []
        stored: dict[str, list[dict[str, Any]]] = {}
        for (r, hook), owner in zip(owned, owners, strict=True):
            secret_id, sealed, fresh = r.secret_id, r.sealed_secret, None
            pre = self._secret_for(r, hook, owner, premade)
            if pre is not None:
                secret, row = pre
                stored.setdefault(r.purpose, []).append(row)
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
            m = queries.ClaimedRow(*r[: len(queries.CLAIMED_COLUMNS)])._replace(
                sealed_secret=sealed, secret_id=secret_id, attempts=r.attempts + 1
            )
            rows.append((m, owner, fresh))
        for purpose, secrets in stored.items():
            self.hook(purpose).store_secrets(session, secrets)
        DeferredWrites.of(session).update(queries.CLAIM_ONE, claims)
        return rows

    def prepare(self, rows: ClaimedRows) -> list[Claimed]:
        """What sending the claimed rows needs (the secret unsealed, template, brand, sender), read outside
        the claim's transaction: templates and brands come from their caches, and the rare miss reads in
        a transaction of its own that takes no write lock (`db.read_only`)."""
        if not rows:
            return []
        with read_only(self.sessions) as session:
            contexts: dict[str, Any] = {}
            for purpose in {m.purpose for m, owner, _ in rows if owner is not None}:
                owners = [owner for m, owner, _ in rows if owner is not None and m.purpose == purpose]
                contexts[purpose] = self.hook(purpose).render_contexts(session, owners)
            templates = RoundTemplates(self.templates)
            return [
                self._prepare(session, templates, m, owner, fresh, contexts.get(m.purpose, {}))
                for m, owner, fresh in rows
            ]

    def _prepare(
        self,
        session: Session,
        templates: TemplateSource,
        m: Any,
        owner: Any | None,
        fresh: str | None,
        contexts: Any,
    ) -> Claimed:
        """What sending needs, from the claimed message's row and its owner's, the secret made at this
        claim (`fresh`), if one was, and the owners' render contexts."""
        secret = fresh
        if secret is None and m.sealed_secret:
            try:
                secret = self.keyring.unseal(m.sealed_secret, m.id)
            except ValueError:
                secret = None  # the key is gone: the send fails permanently below
        return self.hook(m.purpose).prepare(session, templates, m, owner, secret, contexts)


class RoundTemplates:
    """A `TemplateSource` for one round's `prepare`: each client's template, brand and sender asked of
    the source once per round rather than once per message (the source's cache answers the same within
    a round; asking it costs a lookup, a clock read and a lock per call)."""

    def __init__(self, source: TemplateSource) -> None:
        self.source = source
        self._templates: dict[tuple[str, str], MessageTemplate | None] = {}
        self._brands: dict[str, Brand] = {}
        self._senders: dict[str, str | None] = {}

    def get(self, session: Session, client_id: str, name: str) -> MessageTemplate | None:
        key = (client_id, name)
        if key not in self._templates:
            self._templates[key] = self.source.get(session, client_id, name)
        return self._templates[key]

    def brand(self, session: Session, client_id: str) -> Brand:
        if client_id not in self._brands:
            self._brands[client_id] = self.source.brand(session, client_id)
        return self._brands[client_id]

    def from_address(self, session: Session, client_id: str) -> str | None:
        if client_id not in self._senders:
            self._senders[client_id] = self.source.from_address(session, client_id)
        return self._senders[client_id]
