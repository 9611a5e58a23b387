"""Group commit: units of work run many to a transaction.

A decision is a few small reads and writes. Committing each in its own transaction spends most of the time
on commits and on threads taking turns at the GIL and at SQLite's write lock. Here every request still gets
its own unit of work — one failing unit rolls back alone — but the units that arrive together share a
transaction. The caller awaits the commit of its batch: nothing is acknowledged before it is durable.

One protocol, `Committer` (`run(unit)`, `run_deferred(unit)`), and two implementations, chosen by the
database because the cut that matters is where a batch runs, not what it runs:

- `InlineCommitter` (SQLite): the batches run on the event loop itself. SQLite calls take microseconds, and
  a second thread would only trade the GIL back and forth with the loop (each hand-over can cost the 5 ms
  switch interval). An inline batch never waits for SQLite's write lock on the loop: when another process
  (`passgate worker`) holds it, the BEGIN fails at once and the batch is tried again a fraction of a
  millisecond later, while the loop goes on reading and parsing requests (which join the batch). Waiting
  in SQLite's busy handler instead would stop the whole API process, and that handler sleeps 1, 2, 5,
  10 ms... between looks, well past the moment the lock is free. After `LOCK_PATIENCE_S` of such retries
  the batch waits the ordinary way.
- `ThreadCommitter` (PostgreSQL): calls wait on the network with the GIL released, so one writer thread
  runs the batches, taking units from any event loop.

Units whose writes all wait for the commit (`run_deferred(unit)`: decisions, which only read and defer
their rows to db.deferred.DeferredWrites) take SQLite's write lock for their writes only. Their batch first
runs on a read snapshot (`db.sqlite.read_snapshot`: BEGIN DEFERRED, writes refused), then the deferred rows
are written in a transaction of their own. While another process holds the lock, the loop keeps deciding:
the batches that come meanwhile run on their snapshots too, and their rows join the ones waiting, so one
write transaction takes them all. A decision then holds the lock for its inserts and the commit (a third of
its database time) instead of for all of its work, and a `passgate worker` holding the lock no longer stops
the API from deciding. The reads of such a batch do not see the rows of batches whose writes are still
waiting, just as decisions in one batch never saw each other's deferred rows, and as concurrent
transactions on PostgreSQL do not. A unit that writes before its commit anyway (refused on the snapshot:
a `sqlalchemy.exc.OperationalError`, from Core or the cursor fast path alike), leaves ORM objects to flush,
or fails on the database, sends its whole batch back to run the ordinary way. On PostgreSQL `run_deferred`
is `run`: there is no write lock to keep short.

`Coalescer` is the other half of group commit, for work that is not a Session unit: items that arrive
while a write is under way are handed to one call together (the webhook worker's delivery outcomes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from passgate.db import transaction
from passgate.db.deferred import merge_info
from passgate.db.sqlite import WalCheckpointer, WriteLockBusy, begin_without_waiting, read_snapshot

T = TypeVar("T")
Item = TypeVar("Item")
log = logging.getLogger("passgate.group_commit")
Outcome = tuple[Any, BaseException | None]
Unit = Callable[[Session], T]
# Retries of an inline batch that found the write lock taken: the first after RETRY_FIRST_S, each next one
# twice as late up to RETRY_MAX_S; after LOCK_PATIENCE_S in all, one blocking try (SQLite's busy timeout).
RETRY_FIRST_S = 0.0002
RETRY_MAX_S = 0.002
LOCK_PATIENCE_S = 5.0


# Units computed on snapshots and waiting for the write lock, at most (more wait in the queue instead).
MAX_WAITING_UNITS = 512


class Committer(Protocol):
    """Runs units of work (functions of a Session) many to a transaction; each caller gets its unit's
    result, or its error, once the batch has committed."""

    checkpointer: WalCheckpointer | None
    batches: int
    units: int
    lock_retries: int
    snapshot_batches: int

    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def serves_this_loop(self) -> bool:
        """Whether a coroutine on the current event loop may hand units to this committer."""
        ...

    def run(self, unit: Unit[T], writes_at_commit: bool = False) -> Coroutine[Any, Any, T]:
        """`unit(session)` in the next batch (`writes_at_commit=True` is `run_deferred`, for a caller that
        chooses per unit, as the message dispatcher does)."""
        ...

    def run_deferred(self, unit: Unit[T]) -> Awaitable[T]:
        """`unit(session)`, a unit that only reads and defers every write to its commit (awaited at once:
        on the event loop it may be queued when called)."""
        ...


class BatchSessions(Protocol):
    """Where a committer's batches get their Session, one batch at a time: `with batch_sessions() as
    session:` gives a Session with no transaction begun and no objects, which the batch begins and ends
    (commits or rolls back) inside the block. `close()` when the committer stops.

    `SessionPerBatch` is the plain path (a Session of its own per batch) and the judge of `HeldSession`
    (one Session on one connection, batch after batch): tests/unit/db/test_group_commit_sessions.py runs
    the same generated mixes of units through both and compares every answer and every row."""

    def __call__(self) -> AbstractContextManager[Session]: ...

    def close(self) -> None: ...


class SessionPerBatch:
    """A new Session from the sessionmaker for every batch: a connection checked out of the pool (pinged
    first on PostgreSQL) and returned, reset, at the end."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __call__(self) -> AbstractContextManager[Session]:
        return self._sessions()

    def close(self) -> None:
        pass


class HeldSession:
    """One Session, bound to one connection kept out of the pool, for batch after batch.

    A Session of its own per batch costs more than an empty transaction: the Session and its
    transaction object, the pool's checkout and check-in (with the reset's ROLLBACK, and on PostgreSQL a
    ping), their events. Here a batch only begins and ends a transaction on the held Session; after it the
    Session is emptied (objects expunged, `info` cleared), so the next batch finds it as a new one. Any
    error that leaves the block (a failed batch, the write lock taken) closes both — the connection goes
    back to the pool, which resets it — and the next batch takes a fresh connection, pinged as usual:
    nothing of a failed batch can reach the next. Used by one batch at a time (the event loop's, or the
    writer thread's); a nested use gets a Session of its own."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._session: Session | None = None
        self._connection: Connection | None = None
        self._in_use = False
        self.connections = 0  # connections taken from the pool (tests: one per run of good batches)

    def __call__(self) -> AbstractContextManager[Session]:
        if self._in_use:
            return self._sessions()
        return self

    def __enter__(self) -> Session:
        session = self._session
        if session is None:
            self._connection = self._sessions.kw["bind"].connect()
            session = self._session = self._sessions(bind=self._connection)
            self.connections += 1
        self._in_use = True
        return session

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._in_use = False
        session, connection = self._session, self._connection
        if (
            exc_type is not None
            or session is None
            or connection is None
            or session.in_transaction()
            or connection.in_transaction()
            or connection.invalidated
        ):
            self.close()
            return
        session.expunge_all()
        session.info.clear()

    def close(self) -> None:
        session, connection = self._session, self._connection
        self._session = self._connection = None
        try:
            if session is not None:
                session.close()
        finally:
            if connection is not None:
                connection.close()


class ReadAhead(Protocol):
    """A read that each unit of a batch would make on its own — a row by its key — made once for all
    the batch's units, at the start of its transaction.

    `read(session, keys)` gives, for every key asked, what the unit's own read would give there (None for
    no row). A unit handed in as `Ahead(unit, reader, key)` finds it with `read_ahead(reader, key)`;
    `found` is False when it runs outside a batch that read ahead (alone, or again after its batch
    failed), and the unit then reads on its own, which is the plain path and the judge.

    Only for rows that no unit of the batch writes before the commit (deferred writes, or none): a unit's
    own read would see the same snapshot (SQLite's snapshot, the write lock held) or a later moment of
    the same committed data (PostgreSQL's read committed), where a row stored meanwhile by another
    process still fails the commit on its key, as it does for a unit that read it missing itself."""

    def read(self, session: Session, keys: Sequence[Any]) -> Mapping[Any, Any]: ...


class Ahead(Generic[T]):
    """A unit of work with the key of its batch's read-ahead (see `ReadAhead`); called, it is the unit."""

    __slots__ = ("key", "reader", "unit")

    def __init__(self, unit: Unit[T], reader: ReadAhead, key: Hashable) -> None:
        self.unit = unit
        self.reader = reader
        self.key = key

    def __call__(self, session: Session) -> T:
        return self.unit(session)


# What the running batch read ahead, by reader (set around its units only).
_read_ahead: ContextVar[dict[ReadAhead, Mapping[Any, Any]] | None] = ContextVar("read_ahead", default=None)
_MISSING = object()


def read_ahead(reader: ReadAhead, key: Hashable) -> tuple[bool, Any]:
    """(True, what `reader` read for `key` in this batch), or (False, None): nothing read ahead for it."""
    batch = _read_ahead.get()
    if batch is None:
        return False, None
    found = batch.get(reader)
    value = _MISSING if found is None else found.get(key, _MISSING)
    if value is _MISSING:
        return False, None
    return True, value


def _read_ahead_for(
    session: Session, units: Sequence[Unit[Any]]
) -> dict[ReadAhead, Mapping[Any, Any]] | None:
    """One read per reader for the keys of the batch's `Ahead` units (None: no unit asked)."""
    wanted: dict[ReadAhead, list[Any]] = {}
    for fn in units:
        if type(fn) is Ahead:
            keys = wanted.get(fn.reader)
            if keys is None:
                keys = wanted[fn.reader] = []
            keys.append(fn.key)
    if not wanted:
        return None
    return {reader: reader.read(session, keys) for reader, keys in wanted.items()}


def _lost_connection(exc: BaseException) -> bool:
    """Whether a batch failed because its connection was lost (the database restarted, the link broke)."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class _Busy(Exception):
    """The batch did not start: the write lock is another process's."""


class _NotDeferred(Exception):
    """A unit run with run_deferred flushed ORM objects or wrote before its commit."""


class _Batches:
    """What both committers share: the counters, and running a batch in one transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        max_batch: int = 64,
        checkpointer: WalCheckpointer | None = None,
        batch_sessions: BatchSessions | None = None,
    ) -> None:
        self._sessions = sessions
        # Where each batch gets its Session: HeldSession unless told otherwise (SessionPerBatch: the plain path).
        self._batch_sessions: BatchSessions = batch_sessions or HeldSession(sessions)
        # SQLite: the WAL checkpointed by a thread of its own while this committer runs (db.sqlite).
        self.checkpointer = checkpointer
        self._max_batch = max_batch
        self._started = False
        self.batches = 0
        self.units = 0
        self.lock_retries = 0
        self.snapshot_batches = 0

    @property
    def running(self) -> bool:
        return self._started

    def _alone(self, fn: Unit[T]) -> T:
        with transaction(self._sessions) as session:
            return fn(session)

    def _execute(self, units: list[Unit[Any]], wait: bool = True) -> list[Outcome]:
        # Optimistic: the whole batch in one transaction, no savepoints (SQLAlchemy's nested transactions
        # cost more than the unit of work itself). If any unit fails, the batch is rolled back and each
        # unit runs again in a transaction of its own, so one bad unit never takes the others down.
        # wait=False: raise _Busy, having run nothing, when SQLite's write lock is another process's.
        results: list[Any] = []
        try:
            with self._batch_sessions() as session, session.begin():
                if not wait:
                    _begin_or_busy(session)
                token = _read_ahead.set(_read_ahead_for(session, units))
                try:
                    for fn in units:
                        results.append(fn(session))
                finally:
                    _read_ahead.reset(token)
        except _Busy:
            raise
        except Exception as exc:
            # One unit alone gets its error; but not for a connection lost before it could run (what the
            # pool's ping finds for a Session of its own): it runs again on a new one, as in a batch.
            if len(units) == 1 and not _lost_connection(exc):
                return [(None, exc)]
            log.info(
                "a batch of %d units failed (%s); running them one by one", len(units), type(exc).__name__
            )
            return [self._one(fn) for fn in units]
        self.batches += 1
        self.units += len(units)
        return [(r, None) for r in results]

    def _one(self, fn: Unit[Any]) -> Outcome:
        try:
            return self._alone(fn), None
        except Exception as exc:
            return None, exc


class _Computed:
    """Units run on read snapshots whose deferred writes wait for the write lock, with their waiters."""

    def __init__(self) -> None:
        self.items: list[tuple[Unit[Any], asyncio.Future[Any], Any]] = []
        self.info: dict[Any, Any] = {}


class InlineCommitter(_Batches):
    """SQLite: batches run on the event loop that started the committer (see the module docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        max_batch: int = 64,
        checkpointer: WalCheckpointer | None = None,
        batch_sessions: BatchSessions | None = None,
    ) -> None:
        super().__init__(sessions, max_batch, checkpointer, batch_sessions)
        self._pending: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        self._deferring: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        self._computed = _Computed()
        self._scheduled = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._retry_delay = 0.0
        self._busy_since: float | None = None

    def serves_this_loop(self) -> bool:
        if not self._started:
            return False
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

    def stop(self, timeout: float = 10.0) -> None:
        self._started = False
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self._batch_sessions.close()

    def run(self, unit: Unit[T], writes_at_commit: bool = False) -> Coroutine[Any, Any, T]:
        return self._submit(unit, deferred=writes_at_commit)

    def run_deferred(self, unit: Unit[T]) -> Awaitable[T]:
        if not self._started:
            return self._submit(unit, deferred=True)
        # The waiter itself, not a coroutine awaiting it: one frame less to resume per decision.
        return self._enqueue(unit, deferred=True)

    async def _submit(self, fn: Unit[T], deferred: bool) -> T:
        if not self._started:
            # Not started (a script, or after shutdown): an ordinary transaction of its own.
            return await asyncio.to_thread(self._alone, fn)
        return await self._enqueue(fn, deferred)

    def _enqueue(self, fn: Unit[T], deferred: bool) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        if self._event_loop is None:
            self._event_loop = loop
        waiter: asyncio.Future[T] = loop.create_future()
        (self._deferring if deferred else self._pending).append((fn, waiter))
        if not self._scheduled:
            self._scheduled = True
            # After the callbacks already ready: requests parsed in the same turn join this batch.
            loop.call_soon(self._flush_inline)
        return waiter

    def _flush_inline(self) -> None:
        try:
            self._flush()
        finally:
            if not self._started:  # units handed in before a stop: no connection kept after them
                self._batch_sessions.close()

    def _flush(self) -> None:
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

    def _compute(self, live: list[tuple[Unit[Any], asyncio.Future[Any]]]) -> None:
        """Run a batch of run_deferred units on a read snapshot, each with a `session.info` of its own;
        keep what the successful ones deferred, for the write. A unit that raises gets its error (it
        wrote nothing). A unit that needed the database to write, or left ORM objects to flush, goes to the
        ordinary queue with the units after it, where they run again from the start."""
        if not live:
            return
        done: list[tuple[Unit[Any], asyncio.Future[Any], Any, dict[Any, Any]]] = []
        redo = live
        try:
            with self._batch_sessions() as session:
                with session.begin():
                    with read_snapshot(session):
                        token = _read_ahead.set(_read_ahead_for(session, [fn for fn, _ in live]))
                        try:
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
                        finally:
                            _read_ahead.reset(token)
                    session.info.clear()  # nothing to flush, and nothing for after-commit listeners
        except Exception as exc:
            log.info("%d units go the ordinary way (%s)", len(redo), type(exc).__name__)
        if redo:
            self._pending = redo + self._pending
        if done:
            self.snapshot_batches += 1
        for fn, waiter, result, info in done:
            merge_info(self._computed.info, info)
            self._computed.items.append((fn, waiter, result))

    def _write_computed(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Write what the computed units deferred, in one transaction; False when the lock was taken (a
        retry is scheduled). If the write fails, the units run again the ordinary way."""
        computed = self._computed
        patient = self._patient(loop)
        try:
            with self._batch_sessions() as session, session.begin():
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


class ThreadCommitter(_Batches):
    """PostgreSQL: one writer thread runs the batches, for units from any event loop."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        max_batch: int = 64,
        checkpointer: WalCheckpointer | None = None,
        batch_sessions: BatchSessions | None = None,
    ) -> None:
        super().__init__(sessions, max_batch, checkpointer, batch_sessions)
        self._items: deque[tuple[Unit[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def serves_this_loop(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.checkpointer is not None:
            self.checkpointer.start()
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

    def run(self, unit: Unit[T], writes_at_commit: bool = False) -> Coroutine[Any, Any, T]:
        return self._submit(unit)

    def run_deferred(self, unit: Unit[T]) -> Coroutine[Any, Any, T]:
        return self._submit(unit)

    async def _submit(self, fn: Unit[T]) -> T:
        if not self._started:
            # Not started (a script, or after shutdown): an ordinary transaction of its own.
            return await asyncio.to_thread(self._alone, fn)
        # A future of the caller's own loop, resolved there with the rest of its batch (one hop per batch
        # and loop, `_resolve`), rather than a thread's future wrapped for the loop and resolved one by one.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        with self._cv:
            self._items.append((fn, waiter, loop))
            self._cv.notify()
        return await waiter

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._stopping:
                    self._cv.wait()
                if not self._items:
                    self._batch_sessions.close()  # its connection back to the pool, from its own thread
                    return
                batch = [self._items.popleft() for _ in range(min(len(self._items), self._max_batch))]
            # A caller that gave up before its unit was taken (its task cancelled) has it dropped; one that
            # gives up later finds its unit run, as before. (Reading a future's state from this thread is
            # a read of one field; only its loop changes it.)
            live = [(fn, w, loop) for fn, w, loop in batch if not w.cancelled()]
            try:
                outcomes = self._execute([fn for fn, _, _ in live])
            except BaseException as exc:  # never let the writer thread die with callers waiting
                log.exception("group commit failed")
                outcomes = [(None, exc)] * len(live)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
            for (_, waiter, loop), outcome in zip(live, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((waiter, outcome))
            for loop, resolved in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, resolved)
                except RuntimeError:  # that loop is closed: nobody is waiting there any more
                    pass


def _resolve(resolved: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    """On the callers' loop: each waiter gets its unit's result or error (unless it gave up)."""
    for waiter, (result, error) in resolved:
        if waiter.cancelled():
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)


def make_committer(
    sessions: sessionmaker[Session],
    inline: bool,
    max_batch: int = 64,
    checkpointer: WalCheckpointer | None = None,
    batch_sessions: BatchSessions | None = None,
) -> InlineCommitter | ThreadCommitter:
    """The committer for a database: inline on SQLite, a writer thread on PostgreSQL."""
    if inline:
        return InlineCommitter(sessions, max_batch, checkpointer, batch_sessions)
    return ThreadCommitter(sessions, max_batch, checkpointer, batch_sessions)


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


class Coalescer(Generic[Item, T]):
    """Items handed in while a write is under way are written together, by one call of `write(items)`.

    The group commit of work that is not a Session unit: the caller's `write` makes its own transaction
    (and may do more in it, such as claiming new work for the slots the items free). Each `submit` returns
    once the call that took its item has finished, with that call's result; a failing call fails every
    item it took. One call at a time per event loop; `write` may run the work in a thread (the webhook
    worker does: outcomes that finish meanwhile join the next call)."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[T]]) -> None:
        self._write = write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._pending: list[tuple[Item, asyncio.Future[T]]] = []

    def _bind_loop(self) -> asyncio.Lock:
        # Loop-bound primitives are made per event loop (tests run several loops one after another).
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._pending = []
        return self._lock

    async def submit(self, item: Item) -> T:
        lock = self._bind_loop()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        async with lock:
            if not future.done():
                batch, self._pending = self._pending, []
                try:
                    result = await self._write([i for i, _ in batch])
                except BaseException as exc:
                    for _, f in batch:
                        if f is not future and not f.done():  # this caller gets the raise itself
                            f.set_exception(exc)
                    raise
                for _, f in batch:
                    if not f.done():
                        f.set_result(result)
        return await future

    def waiting(self) -> Sequence[Item]:
        """The items not yet taken by a call (for tests and metrics)."""
        return [i for i, _ in self._pending]
