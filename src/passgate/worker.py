"""The worker loop: sends due messages and expires sessions on time. Runs alone (`passgate worker`) or inside
`passgate serve`. Any number may run: they claim rows with FOR UPDATE SKIP LOCKED on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from passgate import leases
from passgate.db import read_only, transaction
from passgate.idempotency import services as idempotency
from passgate.retention.services import PurgeReport, RetentionJob, configured_defaults
from passgate.runtime import run_event_loop

if TYPE_CHECKING:
    from passgate.messaging.dispatcher import Dispatcher

log = logging.getLogger("passgate.worker")

# The periodic jobs every worker looks after, each run by one process of the cluster per period (leases).
EXPIRE_JOB = "expire-sessions"
PURGE_JOB = "velocity-purge"
IDEMPOTENCY_PURGE_JOB = "idempotency-purge"


def holder_name() -> str:
    """Who holds a lease: this machine and process (shown in the job_leases table)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        registry: object,
        poll_interval: float = 0.25,
        sweep_interval: float = 1.0,
        round_spacing: float | None = None,
    ) -> None:
        from passgate.bootstrap import Registry
        from passgate.messaging.dispatcher import ROUND_SPACING

        assert isinstance(registry, Registry)
        self.registry = registry
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        # Rounds of sends that were not full begin at most this often (`Dispatcher.round_spacing`).
        self.round_spacing = ROUND_SPACING if round_spacing is None else round_spacing
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_purge: datetime | None = None
        self.holder = holder_name()
        # The loop of the process's group commit when the worker runs on a loop of its own (WorkerThread).
        self.home_loop: asyncio.AbstractEventLoop | None = None
        self.extra_jobs: list[Callable[[], Awaitable[int]]] = list(registry.worker_jobs)
        # The retention purge (passgate.retention): on a thread of its own, so that a long one delays
        # neither sends nor expiry; once per purge interval in the cluster.
        self.retention = RetentionJob(
            registry.sessions,
            registry.clock,
            self.holder,
            registry.settings.purge_interval_seconds,
            defaults=configured_defaults(registry.settings),
        )
        self._retention_task: asyncio.Future[PurgeReport | None] | None = None
        self._last_retention = 0.0

    def wake(self) -> None:
        """Thread-safe nudge after a request queued work, so it goes out without waiting for the poll."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:  # a nudge read on the worker's own loop (serve's child)
                self._wake.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Thread-safe: the worker may run on an event loop of its own, in another thread."""
        self.retention.stop.set()
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            try:
                if asyncio.get_running_loop() is loop:
                    self._stop.set()
                    self._wake.set()
                    return
            except RuntimeError:
                pass
            loop.call_soon_threadsafe(self._stop.set)
            loop.call_soon_threadsafe(self._wake.set)
            return
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        dispatcher = self.registry.dispatcher
        log.info("worker started", extra={"workerId": dispatcher.worker_id})
        dispatcher.keep_connections = True
        dispatcher.round_spacing = self.round_spacing
        dispatcher.home_loop = self.home_loop
        try:
            await self._loop_until_stopped(dispatcher)
            if dispatcher.has_claimed:
                await dispatcher.run_once(chain=False)  # what the last round claimed for the next one
        finally:
            self.retention.stop.set()
            if self._retention_task is not None:
                await asyncio.gather(self._retention_task, return_exceptions=True)
            await dispatcher.release()
        log.info("worker stopped")

    async def _loop_until_stopped(self, dispatcher: Dispatcher) -> None:
        assert self._loop is not None
        last_sweep = 0.0
        while not self._stop.is_set():
            busy = 0
            try:
                busy += await dispatcher.run_once()
                for job in self.extra_jobs:
                    busy += await job()
                now = self._loop.time()
                if now - last_sweep >= self.sweep_interval:
                    last_sweep = now
                    busy += await asyncio.to_thread(self._sweep)
                self._start_retention(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker iteration failed; continuing")
                await asyncio.sleep(1.0)
            if busy:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass

    def _start_retention(self, now: float) -> None:
        if self._retention_task is not None and not self._retention_task.done():
            return
        if self._last_retention and now - self._last_retention < self.retention.every:
            return
        self._last_retention = now
        task = asyncio.ensure_future(asyncio.to_thread(self.retention.run))
        task.add_done_callback(_log_failure)
        self._retention_task = task

    def _sweep(self) -> int:
        # Looked for without SQLite's write lock first: most seconds nothing expires, and the lock taken
        # for nothing is one the API's decisions wait for. Each job runs where its lease is taken, in the
        # lease's transaction: once per period in the whole cluster.
        registry = self.registry
        with read_only(registry.sessions) as session:
            due = registry.mfa.any_expired(session)
        expired = 0
        now = registry.clock.now()
        if due:
            period = timedelta(seconds=self.sweep_interval * 0.9)
            with transaction(registry.sessions) as session:
                if leases.take(session, EXPIRE_JOB, self.holder, period, now):
                    expired = registry.mfa.expire_due(session)
        every = registry.settings.purge_interval_seconds
        if self._last_purge is None or (now - self._last_purge).total_seconds() >= every:
            self._last_purge = now
            with transaction(registry.sessions) as session:
                if leases.take(session, PURGE_JOB, self.holder, timedelta(seconds=every * 0.9), now):
                    registry.signals.velocity.purge(session, now)
            # Stored answers of retried requests past their 24 hours (passgate.idempotency).
            with transaction(registry.sessions) as session:
                if leases.take(
                    session, IDEMPOTENCY_PURGE_JOB, self.holder, timedelta(seconds=every * 0.9), now
                ):
                    idempotency.purge(session, now)
        return expired


def _log_failure(task: asyncio.Future[PurgeReport | None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("retention purge failed; tried again next period", exc_info=task.exception())


class WorkerThread:
    """The workers of `passgate serve`, on a thread and event loop of their own.

    On the API's loop, a busy API starves them: every step of an SMTP conversation would wait behind the
    whole queue of requests, and mail would go out seconds late. On their own loop they are scheduled by
    the OS, and need little CPU.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._thread = threading.Thread(target=self._main, name="passgate-worker", daemon=True)

    def _main(self) -> None:
        try:
            run_event_loop(self.worker.run())
        except Exception:  # logged; the API keeps serving
            log.exception("worker thread stopped")

    def start(self) -> None:
        """Start the thread; called on the API's event loop, whose group commit then records the sends."""
        try:
            self.worker.home_loop = asyncio.get_running_loop()
        except RuntimeError:
            self.worker.home_loop = None
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.worker.stop()
        self._thread.join(timeout)
