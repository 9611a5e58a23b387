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

Units whose writes all wait for the commit (`run(fn, writes_at_commit=True)`: decisions, which only read
and `defer_insert` / `defer_increments` / `defer_upsert`) take SQLite's write lock for their writes only.
Their batch first runs on a read snapshot (`db.read_snapshot`: BEGIN DEFERRED, writes refused), then its
deferred rows are written in a transaction of their own. While another process holds the lock, the loop
keeps deciding: the batches that come meanwhile run on their snapshots too, and their rows join the ones
waiting, so one write transaction takes them all. A decision then holds the lock for its inserts and the
commit (a third of its database time) instead of for all of its work, and a `passgate worker` holding the
lock no longer stops the API from deciding. The reads of such a batch do not see the rows of batches whose
writes are still waiting, just as decisions in one batch never saw each other's deferred rows, and as
concurrent transactions on PostgreSQL do not. A unit that writes before its commit anyway (refused on the
snapshot), leaves ORM objects to flush, or fails, sends its whole batch back to run the ordinary way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from passgate.db import (
    WalCheckpointer,
    WriteLockBusy,
    begin_without_waiting,
    merge_deferred,
    read_snapshot,
    transaction,
)

T = TypeVar("T")
log = logging.getLogger("passgate.batching")
Outcome = tuple[Any, BaseException | None]
# Retries of an inline batch that found the write lock taken: the first after RETRY_FIRST_S, each next one
# twice as late up to RETRY_MAX_S; after LOCK_PATIENCE_S in all, one blocking try (SQLite's busy timeout).
RETRY_FIRST_S = 0.0002
RETRY_MAX_S = 0.002
LOCK_PATIENCE_S = 5.0


# Units computed on snapshots and waiting for the write lock, at most (more wait in the queue instead).
MAX_WAITING_UNITS = 512


class _Busy(Exception):
    """The batch did not start: the write lock is another process's."""


class _NotDeferred(Exception):
    """A unit marked writes_at_commit flushed ORM objects or wrote before its commit."""


class _Computed:
    """Units run on read snapshots whose deferred writes wait for the write lock, with their waiters."""

    def __init__(self) -> None:
        self.items: list[tuple[Callable[[Session], Any], asyncio.Future[Any], Any]] = []
        self.info: dict[str, Any] = {}


class GroupCommitter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        inline: bool,
        max_batch: int = 64,
        checkpointer: WalCheckpointer | None = None,
    ) -> None:
        self._sessions = sessions
        # SQLite: the WAL checkpointed by a thread of its own while this committer runs (db.WalCheckpointer).
        self.checkpointer = checkpointer
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
        self._deferring: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        self._computed = _Computed()
        self._scheduled = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._retry_delay = 0.0
        self._busy_since: float | None = None
        self.batches = 0
        self.units = 0
        self.lock_retries = 0
        self.snapshot_batches = 0

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
        if self.checkpointer is not None:
            self.checkpointer.start()
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
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self._thread is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join(timeout)
            self._thread = None

    async def run(self, fn: Callable[[Session], T], writes_at_commit: bool = False) -> T:
        """Run `fn(session)` in the next batch and return its result once that batch has committed.

        `writes_at_commit`: fn only reads, and defers every write to the commit (see the module
        docstring); on SQLite it then runs on a read snapshot and holds the write lock only to write."""
        if not self._started:
            # Not started (a script, or after shutdown): an ordinary transaction of its own.
            return await asyncio.to_thread(self._alone, fn)
        if self._inline:
            loop = asyncio.get_running_loop()
            if self._event_loop is None:
                self._event_loop = loop
            waiter: asyncio.Future[T] = loop.create_future()
            (self._deferring if writes_at_commit else self._pending).append((fn, waiter))
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
        loop = asyncio.get_running_loop()
        # Decisions first: on their snapshots, whatever the lock is doing.
        while self._deferring and len(self._computed.items) < MAX_WAITING_UNITS:
            batch, self._deferring = self._deferring[: self._max_batch], self._deferring[self._max_batch :]
            self._compute([(fn, w) for fn, w in batch if not w.cancelled()])
        if self._computed.items and not self._write_computed(loop):
            return
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            live = [(fn, w) for fn, w in batch if not w.cancelled()]
            patient = self._patient(loop)
            try:
                outcomes = self._execute([fn for fn, _ in live], wait=patient)
            except _Busy:
                self._pending = live + self._pending
                self._retry_soon(loop)
                return
            self._lock_taken()
            for (_, waiter), (result, error) in zip(live, outcomes, strict=True):
                if waiter.cancelled():
                    continue
                if error is not None:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(result)
        if self._deferring:
            self._scheduled = True
            loop.call_soon(self._flush_inline)

    def _compute(self, live: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]]) -> None:
        """Run a batch of writes_at_commit units on a read snapshot, each with a `session.info` of its
        own; keep what the successful ones deferred, for the write. A unit that raises gets its error (it
        wrote nothing). A unit that needed the database to write, or left ORM objects to flush, goes to the
        ordinary queue with the units after it, where they run again from the start."""
        if not live:
            return
        done: list[tuple[Callable[[Session], Any], asyncio.Future[Any], Any, dict[str, Any]]] = []
        redo = live
        try:
            with self._sessions() as session:
                with session.begin():
                    with read_snapshot(session):
                        for i, (fn, waiter) in enumerate(live):
                            redo = live[i:]
                            session.info.clear()
                            try:
                                result = fn(session)
                            except SQLAlchemyError:
                                raise
                            except Exception as exc:  # the unit's own answer (a problem for its caller)
                                if not waiter.cancelled():
                                    waiter.set_exception(exc)
                                continue
                            if session.new or session.dirty or session.deleted:
                                raise _NotDeferred()
                            done.append((fn, waiter, result, dict(session.info)))
                        redo = []
                    session.info.clear()  # nothing to flush, and nothing for after-commit listeners
        except Exception as exc:
            log.info("%d units go the ordinary way (%s)", len(redo), type(exc).__name__)
        if redo:
            self._pending = redo + self._pending
        if done:
            self.snapshot_batches += 1
        for fn, waiter, result, info in done:
            merge_deferred(self._computed.info, info)
            self._computed.items.append((fn, waiter, result))

    def _write_computed(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Write what the computed units deferred, in one transaction; False when the lock was taken (a
        retry is scheduled). If the write fails, the units run again the ordinary way."""
        computed = self._computed
        patient = self._patient(loop)
        try:
            with self._sessions() as session, session.begin():
                if not patient:
                    _begin_or_busy(session)
                session.info.update(computed.info)
        except _Busy:
            self._retry_soon(loop)
            return False
        except Exception as exc:
            log.info(
                "writing %d units failed (%s); running them again", len(computed.items), type(exc).__name__
            )
            self._computed = _Computed()
            self._pending = [(fn, w) for fn, w, _ in computed.items] + self._pending
            return True
        self._lock_taken()
        self._computed = _Computed()
        self.batches += 1
        self.units += len(computed.items)
        for _, waiter, result in computed.items:
            if not waiter.cancelled():
                waiter.set_result(result)
        return True

    def _patient(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the lock has been tried for longer than LOCK_PATIENCE_S: then wait for it the ordinary way."""
        return self._busy_since is not None and loop.time() - self._busy_since > LOCK_PATIENCE_S

    def _lock_taken(self) -> None:
        self._busy_since = None
        self._retry_delay = 0.0

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
                    _begin_or_busy(session)
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


def _begin_or_busy(session: Session) -> None:
    """BEGIN the session's transaction without waiting for SQLite's write lock: _Busy if another process
    holds it (nothing has run then)."""
    token = begin_without_waiting.set(True)
    try:
        session.connection()
    except WriteLockBusy:
        raise _Busy() from None
    finally:
        begin_without_waiting.reset(token)
