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

`WebhookDeliverer` runs the loop and makes each try; it hands claiming to `claims.Claimer`, the signing
material to `credentials.DeliveryCredentials` and recording outcomes (and disabling endpoints that keep
failing) to `outcomes.OutcomeRecorder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db.group_commit import Coalescer
from passgate.webhooks import signing
from passgate.webhooks.claims import Claimed, Claimer, DeliveryPolicy
from passgate.webhooks.credentials import DeliveryCredentials
from passgate.webhooks.events import SignatureScheme
from passgate.webhooks.exceptions import DeliveryError
from passgate.webhooks.metrics import WebhookMetrics
from passgate.webhooks.outcomes import Outcome, OutcomeRecorder
from passgate.webhooks.services import WebhookService
from passgate.webhooks.states import is_success
from passgate.webhooks.transport import WebhookTransport

log = logging.getLogger("passgate.webhooks")

T = TypeVar("T")


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
        self.credentials = DeliveryCredentials(service.keys, clock)
        self.claimer = Claimer(
            sessions=sessions,
            clock=clock,
            credentials=self.credentials,
            policy=self.policy,
            worker_id=worker_id,
            rng=self.rng,
        )
        self.recorder = OutcomeRecorder(
            sessions=sessions,
            clock=clock,
            claimer=self.claimer,
            metrics=metrics,
            policy=self.policy,
            worker_id=worker_id,
            rng=self.rng,
        )
        self._tasks: set[asyncio.Task[None]] = set()  # one per try in flight
        self._kicker: asyncio.Task[None] | None = None
        self._kick_again = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claim_lock: asyncio.Lock | None = None
        # Outcomes that finish while a record is being written join the next one (a group commit).
        self._outcomes: Coalescer[Outcome, None] = Coalescer(self._record_batch)

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

    # -- claiming (claims.Claimer) ----------------------------------------------------------------------

    def claim(self, limit: int) -> list[Claimed]:
        """Mark up to `limit` due deliveries SENDING (within each endpoint's free slots) and return what is
        needed to send them."""
        return self.claimer.claim(limit)

    def release(self, c: Claimed) -> None:
        """Put a claimed delivery back (PENDING, due now) if this claim still holds it."""
        self.claimer.release(c)

    # -- one try ---------------------------------------------------------------------------------------

    def _sign(self, c: Claimed, now: datetime) -> dict[str, str]:
        if c.scheme == SignatureScheme.STANDARD:
            if not c.secrets:
                raise DeliveryError("the endpoint's secret cannot be read (secret keys rotated away?)")
            return signing.standard_headers(list(c.secrets), c.event_id, now, c.body)
        key = self.credentials.private_key(c.key_id)
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
        transaction (outcomes.OutcomeRecorder)."""
        return self.recorder.record(outcomes, claim_limit)
