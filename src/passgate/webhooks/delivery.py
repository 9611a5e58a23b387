"""The webhook worker: claim due deliveries, sign each try afresh, post, record the outcome, retry or give up.

It runs as one of the registry's worker jobs, inside `passgate serve` or `passgate worker`. A job must not
hold up the worker loop (the message dispatcher shares it), so `run_once` only claims rows and starts one
task per delivery; the tasks send and record on their own. Concurrency is bounded twice: per endpoint,
counted from the database's SENDING rows so the limit holds across worker processes (one slow receiver
then ties up only its own slots), and per process (`max_in_flight`).

Outcomes of tries that finish together are written in one transaction (a group commit), which also claims
the next deliveries for the slots those tries free. That keeps SQLite, where every writer waits for the one
before, from becoming the bottleneck, and sends a session's next event as soon as the one before it is
delivered, without waiting for the worker loop's next look.

A worker killed mid-try leaves its rows SENDING; once their lock expires any worker takes them back and
tries again, so nothing is lost (a receiver may see the event twice, and dedupes on its id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session, sessionmaker

from passgate import leases
from passgate.caching import TtlCache
from passgate.clock import Clock
from passgate.db import read_only, transaction
from passgate.db.group_commit import Coalescer
from passgate.webhooks import queries, signing
from passgate.webhooks.events import SignatureScheme
from passgate.webhooks.exceptions import DeliveryError
from passgate.webhooks.models import WebhookSigningKey
from passgate.webhooks.services import (
    WebhookMetrics,
    WebhookService,
    endpoints_changed,
    give_up_waiting,
    key_context,
    secret_context,
)
from passgate.webhooks.states import (
    RETRY_SCHEDULE,
    DisabledReason,
    is_success,
    parse_retry_after,
    retry_delay,
)
from passgate.webhooks.transport import WebhookTransport

log = logging.getLogger("passgate.webhooks")

# Finished deliveries older than the retention are forgotten once per this many seconds in the cluster.
PURGE_SECONDS = 300
PURGE_JOB = "webhook-purge"
T = TypeVar("T")

PENDING = queries.PENDING
SENDING = queries.SENDING
DELIVERED = queries.DELIVERED
FAILED = queries.FAILED


KEY_CACHE_SECONDS = 5.0


@dataclass
class _EndpointState:
    """An endpoint's failure bookkeeping while a batch of outcomes is applied."""

    id: str
    enabled: bool
    failing_since: datetime | None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    disabled: DisabledReason | None = None
    touched: bool = False


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    lock_seconds: int = 60
    endpoint_concurrency: int = 8
    max_in_flight: int = 64
    disable_after: timedelta = timedelta(days=5)
    retention: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    token: str
    endpoint_id: str
    client_id: str
    event_id: str
    url: str
    scheme: str
    body: bytes
    attempt: int  # every try ever made, this one included
    secrets: tuple[str, ...] = field(repr=False, default=())
    key_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    started_at: datetime
    latency_ms: float
    status_code: int | None
    retry_after: str | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and is_success(self.status_code)


class WebhookDeliverer:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        service: WebhookService,
        transport: WebhookTransport,
        metrics: WebhookMetrics,
        worker_id: str,
        policy: DeliveryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.service = service
        self.transport = transport
        self.metrics = metrics
        self.worker_id = worker_id
        self.policy = policy or DeliveryPolicy()
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)
        self._tasks: set[asyncio.Task[None]] = set()  # one per try in flight
        self._kicker: asyncio.Task[None] | None = None
        self._kick_again = False
        self._keys: dict[str, rsa.RSAPrivateKey] = {}  # parsed once per process
        self._active: TtlCache[str, str] = TtlCache(KEY_CACHE_SECONDS, clock)  # client -> signing key id
        self._unsealed: dict[str, str] = {}  # sealed secret -> secret
        self._next_reclaim = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claim_lock: asyncio.Lock | None = None
        # Outcomes that finish while a record is being written join the next one (a group commit).
        self._outcomes: Coalescer[Outcome, None] = Coalescer(self._record_batch)
        self._last_purge = 0.0
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # -- the worker job --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due (within the concurrency limits) and start sending it; returns how many."""
        self._bind_loop()
        assert self._claim_lock is not None
        handled = 0
        # One claim at a time per process, so the room computed here is still true when the tasks start.
        async with self._claim_lock:
            room = self.policy.max_in_flight - len(self._tasks)
            if room > 0:
                handled = self._start(await self._db(self.claim, room))
        if time.monotonic() - self._last_purge >= PURGE_SECONDS:
            self._last_purge = time.monotonic()
            await asyncio.to_thread(self.purge)
        return handled

    def wake(self) -> None:
        """Thread-safe: a transaction that wrote events has committed. Claim them at once on the
        deliverer's loop, rather than after the worker loop's other jobs (the message dispatcher may be
        busy sending mail for a good many milliseconds)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        if self._kicker is not None and not self._kicker.done():
            self._kick_again = True  # the claim under way may have looked before that commit
            return

        async def claim_new() -> None:
            for _ in range(10):  # bounded: each round needs another commit to have asked for it
                self._kick_again = False
                await self.run_once()
                if not self._kick_again:
                    return

        self._kicker = asyncio.get_running_loop().create_task(claim_new(), name="webhook-wake")

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        # In a thread: outcomes that finish while it runs join the next group commit. (Inline on the
        # loop, as db.group_commit.InlineCommitter does for SQLite, measured worse here: every record became a batch
        # of one.)
        return await asyncio.to_thread(fn, *args)

    def _start(self, claimed: Sequence[Claimed]) -> int:
        for c in claimed:
            task = asyncio.create_task(self._deliver(c), name=f"webhook-{c.delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def drain(self, seconds: float = 10.0, max_rounds: int = 1000) -> int:
        """Deliver until nothing is due and nothing is in flight (tests and tools); bounded in rounds and
        time. Closes the HTTP client at the end, since its event loop may not outlive this call."""
        deadline = time.monotonic() + seconds
        total = 0
        try:
            for _ in range(max_rounds):
                n = await self.run_once()
                total += n
                busy = set(self._tasks)
                if busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    await asyncio.wait(busy, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                elif n == 0 or time.monotonic() >= deadline:
                    break
        finally:
            await self.aclose()
        return total

    async def aclose(self, grace: float = 5.0) -> None:
        """Let tries under way finish (up to `grace` seconds), then close the HTTP client."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            # The tries ran on another loop (the worker's thread in `passgate serve`); when that loop
            # ended, its tasks were cancelled and handed their rows back (see _deliver).
            return
        deadline = time.monotonic() + grace
        while (busy := set(self._tasks)) and time.monotonic() < deadline:
            await asyncio.wait(busy, timeout=max(0.0, deadline - time.monotonic()))
        await self.transport.aclose()

    def _bind_loop(self) -> None:
        # Loop-bound primitives are made per event loop (tests run several loops one after another).
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._claim_lock = asyncio.Lock()
            self._tasks = set()
            self._kicker = None

    # -- claiming -----------------------------------------------------------------------------------------

    def claim(self, limit: int) -> list[Claimed]:
        """Mark up to `limit` due deliveries SENDING (within each endpoint's free slots) and return what is
        needed to send them."""
        now = self.clock.now()
        if not self._anything_to_claim(now):
            return []
        with transaction(self.sessions) as session:
            return self._claim_in(session, limit, now)

    def _anything_to_claim(self, now: datetime) -> bool:
        """Whether a claim would find anything (a due delivery, or, when it is time to look, one whose
        worker died), read without SQLite's write lock: the worker asks on every round, and on SQLite a
        claim that finds nothing would still hold the lock the API's decisions wait for (on a thread of
        its own, for as long as that thread waits for the GIL)."""
        with read_only(self.sessions) as session:
            conn = session.connection()
            if queries.anything_due(conn, now):
                return True
            if time.monotonic() < self._next_reclaim:
                return False
            if queries.anything_stale(conn, now):
                return True
        self._next_reclaim = time.monotonic() + min(1.0, self.policy.lock_seconds / 4)
        return False

    def _claim_in(self, session: Session, limit: int, now: datetime) -> list[Claimed]:
        # Prepared Core statements (webhooks.queries), not the ORM: this runs for every few deliveries.
        conn = session.connection()
        if time.monotonic() >= self._next_reclaim:
            # Expired locks are rare (a worker died): look for them now and then, not on every claim.
            self._next_reclaim = time.monotonic() + min(1.0, self.policy.lock_seconds / 4)
            self._reclaim_expired(session, now)
        busy = queries.busy_counts(conn)
        endpoint_ids = queries.due_endpoints(conn, now)
        # Shuffled so that, when the process limit cuts a round short, no endpoint always goes last.
        self.rng.shuffle(endpoint_ids)
        ids: list[str] = []
        for endpoint_id in endpoint_ids:
            room = min(self.policy.endpoint_concurrency - busy.get(endpoint_id, 0), limit - len(ids))
            if room <= 0:
                if len(ids) >= limit:
                    break
                continue
            ids.extend(queries.pick(conn, endpoint_id, now, room))
        if not ids:
            return []
        token = secrets.token_hex(16)  # this claim's: only its holder may record the outcomes
        until = now + timedelta(seconds=self.policy.lock_seconds)
        queries.mark_sending(conn, ids, until, self.worker_id[:64], token)
        out = []
        for row in queries.load_claimed(conn, ids):
            key_id = None
            signing_secrets: tuple[str, ...] = ()
            if row.signature_scheme == SignatureScheme.KOUNT:
                key_id = self._active_key(session, row.client_id)
            else:
                signing_secrets = self._secrets(
                    row.endpoint_id,
                    row.sealed_secret,
                    row.sealed_previous_secret,
                    row.previous_secret_until,
                    now,
                )
            out.append(
                Claimed(
                    delivery_id=row.id,
                    token=token,
                    endpoint_id=row.endpoint_id,
                    client_id=row.client_id,
                    event_id=row.event_id,
                    url=row.url,
                    scheme=row.signature_scheme,
                    body=row.body.encode(),
                    attempt=row.attempts,
                    secrets=signing_secrets,
                    key_id=key_id,
                )
            )
        return out

    def _secrets(
        self,
        endpoint_id: str,
        sealed: str | None,
        previous: str | None,
        until: datetime | None,
        now: datetime,
    ) -> tuple[str, ...]:
        """The secrets that sign a try now (the previous one only during its overlap); unsealed once each."""
        out = []
        for value, live in ((sealed, True), (previous, until is not None and until > now)):
            if not value or not live:
                continue
            plain = self._unsealed.get(value)
            if plain is None:
                try:
                    plain = self.service.keyring.unseal(value, secret_context(endpoint_id))
                except ValueError:
                    continue  # the sealing key is gone: the try fails and says so
                if len(self._unsealed) > 10_000:
                    self._unsealed.clear()
                self._unsealed[value] = plain
            out.append(plain)
        return tuple(out)

    def _active_key(self, session: Session, client_id: str) -> str | None:
        """The id of the client's signing key, loaded and cached. Cached for a few seconds: right after a
        rotation the previous key (still valid for the overlap) may sign a few more tries."""
        cached = self._active.get(client_id)
        if cached is not None:
            return cached
        ring = self.service.ensure_signing_key(session, client_id)
        key_id = ring.active.id
        if key_id not in self._keys:
            row = session.get(WebhookSigningKey, key_id)
            if row is None:
                return None
            try:
                pem = self.service.keyring.unseal(row.sealed_private_pem, key_context(key_id))
                self._keys[key_id] = signing.load_private_key_pem(pem)
            except (ValueError, signing.InvalidSigningKeyError):
                log.error("a webhook signing key cannot be read", extra={"keyId": key_id})
                return None
        return self._active.put(client_id, key_id)

    def _reclaim_expired(self, session: Session, now: datetime) -> None:
        """Take back rows whose worker died mid-try (their lock expired) and log that try as lost."""
        count = queries.reclaim_expired(
            session, now, "the worker stopped mid-delivery", self.policy.lock_seconds
        )
        if count:
            log.warning("webhook deliveries taken back from a stopped worker", extra={"count": count})

    # -- one try ---------------------------------------------------------------------------------------

    def _sign(self, c: Claimed, now: datetime) -> dict[str, str]:
        if c.scheme == SignatureScheme.STANDARD:
            if not c.secrets:
                raise DeliveryError("the endpoint's secret cannot be read (secret keys rotated away?)")
            return signing.standard_headers(list(c.secrets), c.event_id, now, c.body)
        key = self._keys.get(c.key_id or "")
        if key is None:
            raise DeliveryError("the signing key cannot be read (secret keys rotated away?)")
        return signing.kount_headers(key, now, c.body)

    async def _deliver(self, c: Claimed) -> None:
        try:
            await self._try(c)
        except asyncio.CancelledError:
            # The worker is stopping mid-try: hand the row back now rather than leave it locked until the
            # lock expires. The receiver may have got it already; it dedupes on the event id.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.release, c)
            raise

    async def _try(self, c: Claimed) -> None:
        started = self.clock.now()
        t0 = time.perf_counter()
        status_code = None
        retry_after = None
        error = None
        try:
            # Signed now, for this try: every retry carries a fresh timestamp and signature.
            headers = self._sign(c, started)
            answer = await self.transport.post(c.url, headers, c.body)
            status_code = answer.status_code
            retry_after = answer.retry_after
            if not is_success(answer.status_code):
                error = f"HTTP {answer.status_code}" + (f": {answer.snippet}" if answer.snippet else "")
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # an adapter bug must not kill the worker; it counts as a failed try
            log.exception("webhook try raised unexpectedly", extra={"deliveryId": c.delivery_id})
            error = f"internal error ({type(exc).__name__})"
        latency = (time.perf_counter() - t0) * 1000
        outcome = Outcome(c, started, round(latency, 2), status_code, retry_after, error)
        try:
            await self._record(outcome)
        except Exception:
            # The row stays SENDING and is taken back when its lock expires: tried again, never lost.
            log.exception("recording a webhook outcome failed", extra={"deliveryId": c.delivery_id})
            return

    def release(self, c: Claimed) -> None:
        """Put a claimed delivery back (PENDING, due now) if this claim still holds it."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            queries.release(
                session,
                c.delivery_id,
                c.token,
                c.attempt,
                self.worker_id[:64],
                now,
                "the worker stopped mid-delivery",
            )

    # -- recording (group commit) ----------------------------------------------------------------------

    async def _record(self, outcome: Outcome) -> None:
        """Record this outcome with whatever else finished meanwhile, in one transaction that also claims
        the next deliveries for the slots those tries free: a session's next event, unblocked by the one
        just delivered, goes out at once, without waiting for the worker loop's next look."""
        await self._outcomes.submit(outcome)

    async def _record_batch(self, batch: list[Outcome]) -> None:
        assert self._claim_lock is not None
        async with self._claim_lock:
            # The batch's own tasks end right after this: their slots count as free.
            room = self.policy.max_in_flight - len(self._tasks) + len(batch)
            self._start(await self._db(self.record, batch, room))

    def record(self, outcomes: Sequence[Outcome], claim_limit: int = 0) -> list[Claimed]:
        """Write the outcomes of finished tries, then claim up to `claim_limit` due deliveries, in one
        transaction (Core statements: this is the hot path)."""
        now = self.clock.now()
        results: list[tuple[Outcome, str]] = []
        with transaction(self.sessions) as session:
            conn = session.connection()
            current = queries.current_states(conn, [o.claimed.delivery_id for o in outcomes])
            endpoints = {
                row.id: _EndpointState(row.id, row.enabled, row.failing_since)
                for row in queries.endpoint_rows(conn, list({o.claimed.endpoint_id for o in outcomes}))
            }
            attempts: list[dict[str, Any]] = []
            moves: list[queries.Move] = []
            for o in sorted(outcomes, key=lambda o: o.started_at):
                row = current.get(o.claimed.delivery_id)
                if row is None:
                    continue  # the endpoint was deleted meanwhile
                endpoint = endpoints.get(o.claimed.endpoint_id)
                # The endpoint first: a 410 or the 5-day rule disables it, and a disabled one is not retried.
                if endpoint is not None:
                    self._track(endpoint, o, now)
                next_at = None
                if o.delivered:
                    result = "delivered"
                else:
                    delay = None
                    if o.status_code != 410 and endpoint is not None and endpoint.enabled:
                        retry_after = parse_retry_after(o.retry_after, now)
                        delay = retry_delay(row.tries, self.policy.retry_schedule, retry_after, self.rng)
                    result = "failed" if delay is None else "retry"
                    if delay is not None:
                        next_at = now + timedelta(seconds=delay)
                attempts.append(
                    {
                        "delivery_id": row.id,
                        "attempt": o.claimed.attempt,
                        "result": result,
                        "status_code": o.status_code,
                        "latency_ms": o.latency_ms,
                        "error": o.error[:500] if o.error else None,
                        "worker": self.worker_id[:64],
                        "started_at": o.started_at,
                        "finished_at": now,
                        "next_attempt_at": next_at,
                    }
                )
                results.append((o, result))
                # Only the holder of the current claim moves the delivery on (a worker whose lock expired
                # while it was still trying just logs its try).
                if row.status == SENDING and row.lock_token == o.claimed.token:
                    moves.append(
                        queries.Move(
                            delivery_id=row.id,
                            status={"delivered": DELIVERED, "retry": PENDING}.get(result, FAILED),
                            next_attempt_at=next_at,
                            delivered_at=now if o.delivered else None,
                            status_code=o.status_code,
                            error=None if o.delivered else (o.error or "")[:500],
                        )
                    )
            if moves:
                queries.move(conn, moves)
            if attempts:
                queries.log_attempts(conn, attempts)
            for endpoint in endpoints.values():
                self._save_endpoint(session, endpoint, now)
            claimed = self._claim_in(session, claim_limit, now) if claim_limit > 0 else []
        for o, result in results:
            c = o.claimed
            self.metrics.deliveries.labels(c.client_id, c.endpoint_id, result).inc()
            self.metrics.global_deliveries.labels(result).inc()
            if o.status_code is not None:
                self.metrics.latency.labels(c.client_id, c.endpoint_id).observe(o.latency_ms / 1000)
        return claimed

    def _track(self, e: _EndpointState, o: Outcome, now: datetime) -> None:
        """Success resets the failure run; 410 disables at once, and so does a run of failures that has
        lasted `disable_after` (5 days)."""
        e.touched = True
        if o.delivered:
            e.last_success_at = now
            e.failing_since = None
            return
        e.last_failure_at = now
        if e.failing_since is None:
            e.failing_since = o.started_at
        if not e.enabled:
            return
        if o.status_code == 410:
            e.disabled = DisabledReason.GONE
        elif now - e.failing_since >= self.policy.disable_after:
            e.disabled = DisabledReason.FAILING
        if e.disabled is not None:
            e.enabled = False

    def _save_endpoint(self, session: Session, e: _EndpointState, now: datetime) -> None:
        if not e.touched:
            return
        values: dict[str, Any] = {"failing_since": e.failing_since}
        if e.last_success_at is not None:
            values["last_success_at"] = e.last_success_at
        if e.last_failure_at is not None:
            values["last_failure_at"] = e.last_failure_at
        if e.disabled is not None:
            values.update(enabled=False, disabled_reason=e.disabled.value, disabled_at=now, updated_at=now)
        queries.save_endpoint(session, e.id, values)
        if e.disabled is not None:
            endpoints_changed()
            given_up = give_up_waiting(session, e.id, e.disabled)
            self.metrics.disabled.labels(e.disabled.value).inc()
            log.warning(
                "webhook endpoint disabled",
                extra={"endpointId": e.id, "reason": e.disabled.value, "givenUp": given_up},
            )

    # -- housekeeping ----------------------------------------------------------------------------------

    def purge(self) -> int:
        """Forget finished deliveries (and events left without any) older than the retention period."""
        now = self.clock.now()
        cutoff = now - self.policy.retention
        with transaction(self.sessions) as session:
            # Once per period in the whole cluster, whatever the number of worker processes.
            if not leases.take(session, PURGE_JOB, self.holder, timedelta(seconds=PURGE_SECONDS * 0.9), now):
                return 0
            return queries.purge(session, cutoff)
