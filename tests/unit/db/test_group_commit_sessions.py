"""Where a committer's batches get their Session: `HeldSession` (one Session on one connection, batch after
batch) judged by `SessionPerBatch` (a Session of its own per batch, the plain path).

The same generated mixes of units — decisions that read and defer their rows, ordinary writes, ORM objects
loaded, changed and added, units that fail, rows that break a key at commit, deferred units that write at
once — run through a committer with each, on fresh tables; every answer and every row written must be the
same. On SQLite through both committers, on PostgreSQL through the writer thread's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from passgate.db import make_engine, make_sessionmaker
from passgate.db.deferred import DeferredWrites
from passgate.db.group_commit import (
    BatchSessions,
    HeldSession,
    InlineCommitter,
    SessionPerBatch,
    ThreadCommitter,
)

_meta = MetaData()
_rows = Table(
    "gcs_rows",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("wave", Integer, nullable=False),
    Column("seen", Integer, nullable=False),
)
_counts = Table("gcs_counts", _meta, Column("k", String(20), primary_key=True), Column("count", Integer))
_seen = Table(
    "gcs_seen",
    _meta,
    Column("k", String(20), primary_key=True),
    Column("first", Integer, nullable=False),
    Column("last", Integer, nullable=False),
)


class _Base(DeclarativeBase):
    metadata = _meta


class _Item(_Base):
    __tablename__ = "gcs_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


TABLES = ("gcs_rows", "gcs_counts", "gcs_seen", "gcs_items")
KEYS = ("a", "b", "c")
ITEMS = 6  # items 0..5 exist from the start


@pytest.fixture
def make_sessions(database_url: str) -> Iterator[Callable[[], Any]]:
    engine = make_engine(database_url)
    _meta.drop_all(engine)

    def fresh() -> Any:
        _meta.drop_all(engine)
        _meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(_Item.__table__.insert(), [{"id": i, "value": 10 * i} for i in range(ITEMS)])
        return make_sessionmaker(engine)

    yield fresh
    _meta.drop_all(engine)
    engine.dispose()


# -- the units -------------------------------------------------------------------------------------------


def _deciding(uid: int, wave: int, key: str) -> Callable[[Session], Any]:
    """Like a decision: reads what earlier waves wrote, defers a row, an increment and an upsert."""

    def unit(session: Session) -> Any:
        seen = session.execute(text("SELECT count(*) FROM gcs_rows WHERE wave < :w"), {"w": wave}).scalar()
        writes = DeferredWrites.of(session)
        writes.insert(_rows, [{"id": uid, "wave": wave, "seen": seen}])
        writes.increment(_counts, [(key,)])
        writes.upsert(_seen, {"k": key, "first": uid, "last": uid}, ("k",), ("last",))
        session.info["work_queued"] = True
        return ("decided", uid, seen)

    return unit


def _clashing(uid: int, wave: int, taken: int) -> Callable[[Session], Any]:
    """Defers a row whose id an earlier wave already wrote: its batch fails at commit."""

    def unit(session: Session) -> Any:
        DeferredWrites.of(session).insert(_rows, [{"id": taken, "wave": wave, "seen": -1}])
        return ("clash", uid)

    return unit


def _failing(uid: int, wave: int) -> Callable[[Session], Any]:
    def unit(session: Session) -> Any:
        DeferredWrites.of(session).insert(_rows, [{"id": uid, "wave": wave, "seen": -2}])
        raise ValueError(f"unit {uid} fails")

    return unit


def _eager(uid: int, wave: int) -> Callable[[Session], Any]:
    """Writes at once (refused on a read snapshot: it goes the ordinary way)."""

    def unit(session: Session) -> Any:
        session.execute(_rows.insert().values(id=uid, wave=wave, seen=-3))
        return ("eager", uid)

    return unit


def _orm_read(item: int) -> Callable[[Session], Any]:
    """Loads an item (an object a previous batch loaded must not come back stale)."""

    def unit(session: Session) -> Any:
        found = session.get(_Item, item)
        return ("item", item, None if found is None else found.value)

    return unit


def _orm_change(item: int, by: int) -> Callable[[Session], Any]:
    def unit(session: Session) -> Any:
        found = session.get(_Item, item)
        if found is None:
            return ("missing", item)
        found.value += by
        return ("changed", item)

    return unit


def _orm_add(item: int) -> Callable[[Session], Any]:
    """Adds an item (an id that exists makes the batch fail at its flush)."""

    def unit(session: Session) -> Any:
        session.add(_Item(id=item, value=item))
        return ("added", item)

    return unit


def _core_bump(item: int) -> Callable[[Session], Any]:
    def unit(session: Session) -> Any:
        session.execute(text("UPDATE gcs_items SET value = value + 1 WHERE id = :i"), {"i": item})
        return ("bumped", item)

    return unit


def _waves(seed: int, waves: int = 12) -> list[list[tuple[str, Callable[[Session], Any]]]]:
    """Waves of units, each wave handed in at once; (how, unit) with how 'deferred' or 'run'.

    What a unit answers must not depend on how the writer thread happens to cut a wave into batches:
    a wave either changes the items or reads them, adds at most one, and decisions read earlier waves."""
    rnd = random.Random(seed)
    uid = 1000
    written: list[int] = []
    out = []
    for wave in range(waves):
        reading = rnd.random() < 0.4
        kinds = (
            ("decide", "fail", "read")
            if reading
            else ("decide", "clash", "fail", "eager", "change", "add", "bump")
        )
        weights = (50, 4, 10) if reading else (50, 3, 4, 3, 4, 3, 4)
        added = False
        units: list[tuple[str, Callable[[Session], Any]]] = []
        for _ in range(rnd.randint(1, 40)):
            uid += 1
            kind = rnd.choices(kinds, weights=weights)[0]
            if kind == "decide":
                units.append(("deferred", _deciding(uid, wave, rnd.choice(KEYS))))
                written.append(uid)
            elif kind == "clash" and len(written) > 40:
                units.append(("deferred", _clashing(uid, wave, rnd.choice(written[:-40]))))
            elif kind == "fail":
                units.append((rnd.choice(("deferred", "run")), _failing(uid, wave)))
            elif kind == "eager":
                units.append(("deferred", _eager(uid, wave)))
                written.append(uid)
            elif kind == "read":
                units.append((rnd.choice(("deferred", "run")), _orm_read(rnd.randrange(ITEMS + 3))))
            elif kind == "change":
                units.append(("run", _orm_change(rnd.randrange(ITEMS), rnd.randint(1, 5))))
            elif kind == "add" and not added:
                # a new id, or one added by an earlier wave (its batch fails at the flush)
                units.append(("run", _orm_add(ITEMS + rnd.randrange(3))))
                added = True
            elif kind == "bump":
                units.append(("run", _core_bump(rnd.randrange(ITEMS))))
        out.append(units)
    return out


def _outcome(result: Any) -> Any:
    if isinstance(result, BaseException):
        return ("error", type(result).__name__, str(result) if isinstance(result, ValueError) else "")
    return result


async def _run(committer: Any, waves: list[list[tuple[str, Callable[[Session], Any]]]]) -> list[Any]:
    committer.start()
    answers: list[Any] = []
    try:
        for units in waves:
            results = await asyncio.gather(
                *(
                    committer.run_deferred(unit) if how == "deferred" else committer.run(unit)
                    for how, unit in units
                ),
                return_exceptions=True,
            )
            answers.append([_outcome(r) for r in results])
    finally:
        committer.stop()
    return answers


def _contents(sessions: Any) -> dict[str, list[tuple[Any, ...]]]:
    with sessions() as session:
        return {t: sorted(tuple(r) for r in session.execute(text(f"SELECT * FROM {t}"))) for t in TABLES}


def _committer(kind: str, sessions: Any, batch_sessions: BatchSessions) -> Any:
    if kind == "inline":
        return InlineCommitter(sessions, max_batch=16, batch_sessions=batch_sessions)
    return ThreadCommitter(sessions, max_batch=16, batch_sessions=batch_sessions)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["inline", "thread"])
async def test_a_held_session_answers_and_writes_as_a_session_per_batch(
    make_sessions: Callable[[], Any], database_url: str, kind: str, seed: int
) -> None:
    if kind == "inline" and not database_url.startswith("sqlite"):
        pytest.skip("the inline committer is SQLite's")
    outcomes: dict[str, Any] = {}
    held: HeldSession | None = None
    for name in ("plain", "held"):
        sessions = make_sessions()
        batch_sessions = SessionPerBatch(sessions) if name == "plain" else HeldSession(sessions)
        committer = _committer(kind, sessions, batch_sessions)
        answers = await _run(committer, _waves(seed))
        outcomes[name] = (answers, _contents(sessions))
        if isinstance(batch_sessions, HeldSession):
            held = batch_sessions
    plain, fast = outcomes["plain"], outcomes["held"]
    assert fast[0] == plain[0]
    assert fast[1] == plain[1]
    # Something was decided, and something failed.
    flat = [a for wave in plain[0] for a in wave]
    assert any(isinstance(a, tuple) and a[0] == "decided" for a in flat)
    assert any(isinstance(a, tuple) and a[0] == "error" for a in flat)
    assert held is not None and held._connection is None  # given back when the committer stopped


@pytest.mark.parametrize("kind", ["inline", "thread"])
async def test_batches_that_go_well_share_one_connection(
    make_sessions: Callable[[], Any], database_url: str, kind: str
) -> None:
    if kind == "inline" and not database_url.startswith("sqlite"):
        pytest.skip("the inline committer is SQLite's")
    sessions = make_sessions()
    held = HeldSession(sessions)
    committer = _committer(kind, sessions, held)
    waves = [[("deferred", _deciding(100 * w + i, w, "a"))] * 1 for w in range(5) for i in range(3)]
    answers = await _run(committer, waves)
    assert [a for wave in answers for a in wave][-1] == ("decided", 402, 12)
    assert held.connections == 1
    assert committer.batches >= 5


async def test_a_held_connection_lost_is_replaced_and_the_unit_runs_again(
    make_sessions: Callable[[], Any], database_url: str
) -> None:
    """What the pool's ping does for a Session of its own: a batch whose held connection was lost (the
    server restarted, the link broke) runs on a new one, and its caller never sees the loss."""
    if database_url.startswith("sqlite"):
        pytest.skip("a SQLite connection is a file opened in this process: nothing to lose")
    sessions = make_sessions()
    held = HeldSession(sessions)
    committer = ThreadCommitter(sessions, batch_sessions=held)
    committer.start()
    killer = make_engine(database_url)
    try:
        assert await committer.run(_core_bump(1)) == ("bumped", 1)
        assert held._connection is not None
        pid = held._connection.connection.driver_connection.info.backend_pid
        with killer.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert await committer.run(_orm_read(1)) == ("item", 1, 11)
        assert await committer.run(_core_bump(1)) == ("bumped", 1)
    finally:
        committer.stop()
        killer.dispose()
    assert _contents(sessions)["gcs_items"][1] == (1, 12)
    assert held.connections == 2


def test_a_held_session_is_emptied_between_batches(make_sessions: Callable[[], Any]) -> None:
    sessions = make_sessions()
    held = HeldSession(sessions)
    with held() as session, session.begin():
        assert session.get(_Item, 2) is not None
        session.info["flag"] = True
    with held() as session:
        assert len(session.identity_map) == 0 and not session.info
        # A use inside a use gets a Session of its own.
        with held() as inner:
            assert inner is not session
    # An error in the block: the next use starts on a new connection.
    first = held._connection
    with pytest.raises(DBAPIError), held() as session, session.begin():
        session.execute(text("SELECT * FROM no_such_table"))
    assert held._connection is None
    with held() as session, session.begin():
        session.execute(text("SELECT 1"))
    assert held._connection is not None and held._connection is not first
    held.close()
