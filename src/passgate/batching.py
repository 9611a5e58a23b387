"""Group commit: units of work run many to a transaction, each in a SAVEPOINT of its own.

A decision is a few small reads and writes. Committing each in its own transaction spends most of the time
on commits and on threads taking turns at the GIL and at SQLite's write lock. Here every request still gets
its own unit of work — one failing unit rolls back alone — but the units that arrive together share a
transaction. The caller awaits the commit of its batch: nothing is acknowledged before it is durable.

On SQLite the batches run on the event loop itself ("inline"): SQLite calls take microseconds, and a
second thread would only trade the GIL back and forth with the loop (each hand-over can cost the 5 ms switch
interval). On PostgreSQL, whose calls wait on the network with the GIL released, one writer thread runs them.

An inline batch never waits for SQLite's write lock on the loop: when another process (`passgate worker`)
holds it, the BEGIN fails at once and the batch is tried again a fraction of a millisecond later, while the
loop goes on reading and parsing requests (which join the batch). Waiting in SQLite's busy handler instead
would stop the whole API process, and that handler sleeps 1, 2, 5, 10 ms... between looks, well past the
moment the lock is free. After `LOCK_PATIENCE_S` of such retries the batch waits the ordinary way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from passgate.db import WriteLockBusy, begin_without_waiting, transaction

T = TypeVar("T")
log = logging.getLogger("passgate.batching")
Outcome = tuple[Any, BaseException | None]
# Retries of an inline batch that found the write lock taken: the first after RETRY_FIRST_S, each next one
# twice as late up to RETRY_MAX_S; after LOCK_PATIENCE_S in all, one blocking try (SQLite's busy timeout).
RETRY_FIRST_S = 0.0002
RETRY_MAX_S = 0.002
LOCK_PATIENCE_S = 5.0


class _Busy(Exception):
    """The batch did not start: the write lock is another process's."""


class GroupCommitter:
    def __init__(self, sessions: sessionmaker[Session], inline: bool, max_batch: int = 64) -> None:
        self._sessions = sessions
        self._inline = inline
        self._max_batch = max_batch
        self._started = False
        # Thread mode
        self._items: deque[tuple[Callable[[Session], Any], Future[Any]]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Inline mode
        self._pending: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._retry_delay = 0.0
        self._busy_since: float | None = None
        self.batches = 0
        self.units = 0
        self.lock_retries = 0

    @property
    def running(self) -> bool:
        return self._started

    def serves_this_loop(self) -> bool:
        """Whether a coroutine on the current event loop may hand units to this committer (inline batches
        run on the loop that started the committer; the writer thread takes units from any loop)."""
        if not self._started:
            return False
        if not self._inline:
            return True
        try:
            return asyncio.get_running_loop() is self._event_loop
        except RuntimeError:
            return False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self._event_loop = asyncio.get_running_loop()
        except RuntimeError:
            self._event_loop = None
        if not self._inline:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="passgate-group-commit", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._started = False
        if self._thread is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join(timeout)
            self._thread = None

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in the next batch and return its result once that batch has committed."""
        if not self._started:
            # Not started (a script, or after shutdown): an ordinary transaction of its own.
            return await asyncio.to_thread(self._alone, fn)
        if self._inline:
            loop = asyncio.get_running_loop()
            if self._event_loop is None:
                self._event_loop = loop
            waiter: asyncio.Future[T] = loop.create_future()
            self._pending.append((fn, waiter))
            if not self._scheduled:
                self._scheduled = True
                # After the callbacks already ready: requests parsed in the same turn join this batch.
                loop.call_soon(self._flush_inline)
            return await waiter
        future: Future[T] = Future()
        with self._cv:
            self._items.append((fn, future))
            self._cv.notify()
        return await asyncio.wrap_future(future)

    def _alone(self, fn: Callable[[Session], T]) -> T:
        with transaction(self._sessions) as session:
            return fn(session)

    def _flush_inline(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            live = [(fn, w) for fn, w in batch if not w.cancelled()]
            loop = asyncio.get_running_loop()
            patient = self._busy_since is not None and loop.time() - self._busy_since > LOCK_PATIENCE_S
            try:
                outcomes = self._execute([fn for fn, _ in live], wait=patient)
            except _Busy:
                self._pending = live + self._pending
                self._retry_soon(loop)
                return
            self._busy_since = None
            self._retry_delay = 0.0
            for (_, waiter), (result, error) in zip(live, outcomes, strict=True):
                if waiter.cancelled():
                    continue
                if error is not None:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(result)

    def _retry_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lock_retries += 1
        if self._busy_since is None:
            self._busy_since = loop.time()
        self._retry_delay = min(RETRY_MAX_S, max(RETRY_FIRST_S, self._retry_delay * 2))
        self._scheduled = True
        loop.call_later(self._retry_delay, self._flush_inline)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._stopping:
                    self._cv.wait()
                if not self._items:
                    return
                batch = [self._items.popleft() for _ in range(min(len(self._items), self._max_batch))]
            live = [(fn, f) for fn, f in batch if f.set_running_or_notify_cancel()]
            try:
                outcomes = self._execute([fn for fn, _ in live])
            except BaseException as exc:  # never let the writer thread die with callers waiting
                log.exception("group commit failed")
                outcomes = [(None, exc)] * len(live)
            for (_, future), (result, error) in zip(live, outcomes, strict=True):
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

    def _execute(self, units: list[Callable[[Session], Any]], wait: bool = True) -> list[Outcome]:
        # Optimistic: the whole batch in one transaction, no savepoints (SQLAlchemy's nested transactions
        # cost more than the unit of work itself). If any unit fails, the batch is rolled back and each
        # unit runs again in a transaction of its own, so one bad unit never takes the others down.
        # wait=False: raise _Busy, having run nothing, when SQLite's write lock is another process's.
        results: list[Any] = []
        try:
            with self._sessions() as session, session.begin():
                if not wait:
                    token = begin_without_waiting.set(True)
                    try:
                        session.connection()
                    except WriteLockBusy:
                        raise _Busy() from None
                    finally:
                        begin_without_waiting.reset(token)
                for fn in units:
                    results.append(fn(session))
        except _Busy:
            raise
        except Exception as exc:
            if len(units) == 1:
                return [(None, exc)]
            log.info(
                "a batch of %d units failed (%s); running them one by one", len(units), type(exc).__name__
            )
            return [self._one(fn) for fn in units]
        self.batches += 1
        self.units += len(units)
        return [(r, None) for r in results]

    def _one(self, fn: Callable[[Session], Any]) -> Outcome:
        try:
            return self._alone(fn), None
        except Exception as exc:
            return None, exc
