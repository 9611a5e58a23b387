"""The outbox dispatcher: claim due messages, render, send, record every attempt, retry or give up loudly.

A round is look → claim → prepare → send → record. What depends on why a message is sent (the row its
owner joins to the claim, its secret, how it renders, what its owner does once it is sent, fails or is
skipped) is asked of the `DeliveryHooks` registered for the message's purpose (`register`); this module
knows no purpose, and imports nothing from `mfa`. Its statements live in `messaging.queries`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db import is_sqlite, transaction
from passgate.db.group_commit import Committer
from passgate.keyring import KeyRing
from passgate.messaging import recording
from passgate.messaging.bounces import BounceAddresses
from passgate.messaging.branding import from_header
from passgate.messaging.claiming import ClaimedRows, Claimer, Premade
from passgate.messaging.interfaces import (
    Claimed,
    DeliveryHooks,
    EmailSender,
    Sent,
    SmsSender,
)
from passgate.messaging.models import Message
from passgate.messaging.render_pool import SENDING, RenderPool, RenderTimeout
from passgate.messaging.senders.base import OutgoingEmail, OutgoingSms, SendError, TemporarySendError
from passgate.messaging.sources import TemplateSource
from passgate.messaging.states import DELIVERY_TRANSITIONS, RETRY_SCHEDULE, DeliveryStatus
from passgate.messaging.templates import TemplateRenderError
from passgate.observability import Metrics

__all__ = ["Claimed", "Dispatcher", "Sent"]

log = logging.getLogger("passgate.worker")
T = TypeVar("T")
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
# See `Dispatcher.round_spacing`: a long-running worker's rounds that were not full begin at most this often.
ROUND_SPACING = 0.05

# What a send comes back with (`Dispatcher._send_one`): the accepted send, or how to record its failure.
Outcome = Sent | Callable[[Session], None]


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        keyring: KeyRing,
        templates: TemplateSource,
        email_sender: EmailSender,
        sms_sender: SmsSender,
        public_url: str,
        mail_from: str,
        metrics: Metrics,
        worker_id: str,
        sandbox_sender: Any,
        retry_schedule: tuple[float, ...] = RETRY_SCHEDULE,
        lock_seconds: int = LOCK_SECONDS,
        committer: Committer | None = None,
        render_pool: RenderPool = SENDING,
        hooks: Iterable[DeliveryHooks] = (),
        bounces: BounceAddresses | None = None,
    ) -> None:
        # The envelope sender of each email: its bounce (VERP) address, or None for the From address.
        self.bounces = bounces
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
        # A round that took fewer messages than it could is followed by the next no sooner than this many
        # seconds after it began (0: at once). Each round costs a look ahead, a claim, a read of what
        # sending needs and a record, whatever its size; under a steady load, rounds run back to back take
        # a few messages each, and paid for per message that overhead was a fifth of a worker's CPU per
        # mail. Waiting lets the next round take what came meanwhile; a mail waits at most this long more.
        # The wait comes before the next claim: with `chain`, before this round's record, which goes with
        # that claim. Set by the long-running worker (`passgate.worker.Worker`); a one-off round never waits.
        self.round_spacing = 0.0
        self._sent_counters: dict[str, Any] = {}
        self.claims = Claimer(sessions, clock, keyring, templates, worker_id, lock_seconds)
        for hook in hooks:
            self.register(hook)

    def register(self, hook: DeliveryHooks) -> None:
        """Makes `hook` the owner of its purpose's messages (`Claimer.register`)."""
        self.claims.register(hook)

    def _hook(self, purpose: str) -> DeliveryHooks:
        return self.claims.hook(purpose)

    def delivery_report(
        self,
        session: Session,
        message: Message,
        status: DeliveryStatus,
        source: str,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """A provider's report (or a bounce) on a sent message: its delivery status, and its owner told.
        A duplicate or out-of-order report changes nothing (False)."""
        current = DeliveryStatus(message.delivery_status)
        if status == current or status not in DELIVERY_TRANSITIONS[current]:
            return False
        message.delivery_status = status
        self._hook(message.purpose).delivery_report(session, message, status, source, detail)
        return True

    def delivery_delayed(
        self, session: Session, message: Message, source: str, detail: Mapping[str, Any]
    ) -> None:
        """A remote server reports the message delayed (a soft bounce): its delivery status stays, its
        owner is told."""
        self._hook(message.purpose).delivery_delayed(session, message, source, detail)

    # -- claiming (one short transaction) --------------------------------------------------------------

    def claim(self, limit: int = 20, premade: Premade | None = None) -> list[Claimed]:
        with transaction(self.sessions) as session:
            rows = self._claim(session, limit, premade)
        return self.prepare(rows)

    def look_ahead(self, limit: int) -> Premade | None:
        return self.claims.look_ahead(limit)

    def _claim(self, session: Session, limit: int, premade: Premade | None = None) -> ClaimedRows:
        return self.claims.claim(session, limit, premade)

    def _claim_on_snapshot(self, session: Session, limit: int, premade: Premade | None = None) -> ClaimedRows:
        return self.claims.claim_on_snapshot(session, limit, premade)

    def prepare(self, rows: ClaimedRows) -> list[Claimed]:
        return self.claims.prepare(rows)

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
        began = time.monotonic()
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
            chained = chain and self._snapshots and self.keep_connections
            short = len(claimed) < limit
            if chained and short:
                await self._space_rounds(began)
            premade = None
            if chained:
                try:
                    premade = self.look_ahead(limit)
                except Exception:  # the record goes alone; the next round looks again
                    log.exception("looking ahead failed", extra={"workerId": self.worker_id})
            if premade is None:
                await self._db(record, writes_at_commit=True)
                if short and not chained:
                    await self._space_rounds(began)
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

    async def _space_rounds(self, began: float) -> None:
        """Waits until `round_spacing` seconds after the round began (see `round_spacing`)."""
        if self.round_spacing <= 0 or not self.keep_connections:
            return
        wait = began + self.round_spacing - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

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
        rendered, link, code = self._hook(c.purpose).render(c, self.public_url, self.host)
        if c.channel == "EMAIL":
            from_addr = from_header(c.brand, c.from_address, self.mail_from)
            email = OutgoingEmail(
                message_id=c.message_id,
                to=c.destination,
                from_addr=from_addr,
                subject=rendered.subject or "",
                text=rendered.text or "",
                html=rendered.html or "",
                client_id=c.client_id,
                link=link,
                code=code,
                envelope_from=self.bounces.for_message(c.message_id, from_addr) if self.bounces else None,
            )
            return email, link, code
        sms = OutgoingSms(
            message_id=c.message_id,
            to=c.destination,
            body=rendered.sms or "",
            client_id=c.client_id,
            link=link,
            code=code,
        )
        return sms, link, code

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
        sent = self._sent_counters.get(c.channel)
        if sent is None:  # the labelled child looked up once per channel (a lock and a validation each time)
            sent = self._sent_counters[c.channel] = self.metrics.messages.labels(c.channel, "sent")
        sent.inc()
        return Sent(c, provider, provider_id[:128], started)

    def _record_deferred(self, session: Session, *, c: Claimed) -> None:
        recording.record_deferred(session, c, self.clock.now())

    def _record_sent(self, session: Session, sent: list[Sent]) -> None:
        recording.record_sent(session, sent, self.clock.now(), self._hook)

    def _record_failure(
        self, session: Session, *, c: Claimed, provider: str, exc: SendError, started: datetime
    ) -> None:
        failure = recording.Failure(c, provider, exc, started)
        recording.record_failure(session, failure, self.clock.now(), self.retry_schedule, self._hook)
