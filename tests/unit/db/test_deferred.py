"""db.deferred: a session's DeferredWrites are written at commit in foreign-key order, forgotten on
rollback, merged across units, and a guarded update that finds a row changed fails the commit."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Engine, ForeignKey, Integer, MetaData, String, Table, bindparam, select, update

from passgate.db import make_sessionmaker
from passgate.db.deferred import DeferredWrites, StaleRows, merge_info
from passgate.db.fastpath import CursorStatement


@pytest.fixture
def tables(engine: Engine) -> Iterator[tuple[Table, Table, Table]]:
    suffix = secrets.token_hex(4)
    meta = MetaData()
    parent = Table(
        f"dw_parent_{suffix}",
        meta,
        Column("id", String(20), primary_key=True),
        Column("version", Integer, nullable=False, default=0),
    )
    child = Table(
        f"dw_child_{suffix}",
        meta,
        Column("id", String(20), primary_key=True),
        Column("parent_id", String(20), ForeignKey(parent.c.id), nullable=False),
    )
    counts = Table(
        f"dw_counts_{suffix}",
        meta,
        Column("k", String(20), primary_key=True),
        Column("count", Integer, nullable=False),
    )
    meta.create_all(engine)
    yield parent, child, counts
    meta.drop_all(engine)


def _rows(engine: Engine, table: Table) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def test_writes_wait_for_the_commit_and_go_in_foreign_key_order(engine: Engine, tables) -> None:
    parent, child, counts = tables
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        writes = DeferredWrites.of(session)
        assert DeferredWrites.of(session) is writes  # one per session
        writes.insert(child, [{"id": "c1", "parent_id": "p1"}])  # deferred before its parent
        writes.insert(parent, [{"id": "p1"}])  # the Python-side default (version 0) applies
        writes.increment(counts, [("a",), ("a",), ("b",)])
        writes.upsert(counts, {"k": "c", "count": 1}, ("k",), ("count",))
        writes.upsert(counts, {"k": "c", "count": 5}, ("k",), ("count",))  # a later row updates an earlier
        assert writes
        assert session.execute(select(parent)).all() == []  # nothing before the commit
    assert _rows(engine, parent) == [("p1", 0)]
    assert _rows(engine, child) == [("c1", "p1")]
    assert _rows(engine, counts) == [("a", 2), ("b", 1), ("c", 5)]
    with sessions() as session, session.begin():
        DeferredWrites.of(session).increment(counts, [("a",)])
    assert _rows(engine, counts)[0] == ("a", 3)


def test_a_rollback_forgets_them(engine: Engine, tables) -> None:
    parent, _, _ = tables
    sessions = make_sessionmaker(engine)
    with pytest.raises(RuntimeError), sessions() as session, session.begin():
        DeferredWrites.of(session).insert(parent, [{"id": "gone"}])
        raise RuntimeError("the unit fails")
    with sessions() as session, session.begin():
        assert DeferredWrites.take(session) is None
    assert _rows(engine, parent) == []


def test_a_guarded_update_that_finds_a_row_changed_fails_the_commit(engine: Engine, tables) -> None:
    parent, child, _ = tables
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        DeferredWrites.of(session).insert(parent, [{"id": "p1"}, {"id": "p2"}])
    bump = CursorStatement(
        update(parent)
        .where(parent.c.id == bindparam("b_id"), parent.c.version == bindparam("b_read"))
        .values(version=bindparam("b_version"))
    )
    with pytest.raises(StaleRows), sessions() as session, session.begin():
        writes = DeferredWrites.of(session)
        writes.insert(child, [{"id": "c9", "parent_id": "p1"}])
        writes.update(
            bump, [{"b_id": "p1", "b_read": 0, "b_version": 1}, {"b_id": "p2", "b_read": 7, "b_version": 8}]
        )
    assert _rows(engine, parent) == [("p1", 0), ("p2", 0)]  # nothing of that transaction was written
    assert _rows(engine, child) == []
    with sessions() as session, session.begin():
        DeferredWrites.of(session).update(bump, [{"b_id": "p2", "b_read": 0, "b_version": 1}])
    assert _rows(engine, parent) == [("p1", 0), ("p2", 1)]


def test_units_merge_rows_after_rows_and_increments_summed() -> None:
    """What the group committer does with the units it computed on a read snapshot."""
    table, other = object(), object()
    one, two = DeferredWrites(), DeferredWrites()
    one.insert(table, [{"id": 1}])
    one.increment(other, [("k",)])
    two.insert(table, [{"id": 2}])
    two.increment(other, [("k",), ("j",)])
    into: dict[object, object] = {}
    merge_info(into, {DeferredWrites: one, "work_queued": False, "note": "a"})
    merge_info(into, {DeferredWrites: two, "work_queued": True, "note": "b"})
    merged = into[DeferredWrites]
    assert isinstance(merged, DeferredWrites) and merged is not one
    assert merged.inserts == {table: [{"id": 1}, {"id": 2}]}
    assert merged.increments == {other: {("k",): 2, ("j",): 1}}
    assert into["work_queued"] is True and into["note"] == "b"  # flags or-ed, other values the last
    assert one.inserts == {table: [{"id": 1}]}  # the units' own are left as they were
    assert not DeferredWrites()


def test_writes_of_every_kind_are_held_until_the_commit(engine: Engine, tables) -> None:
    parent, child, counts = tables
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        DeferredWrites.of(session).insert(parent, [{"id": "p1"}])
        DeferredWrites.of(session).upsert(counts, {"k": "u", "count": 1}, ("k",), ("count",))
        DeferredWrites.of(session).increment(counts, [("i",)])
        writes = DeferredWrites.of(session)
        assert (
            list(writes.inserts) == [parent]
            and len(writes.upserts) == 1
            and list(writes.increments) == [counts]
        )
    assert _rows(engine, parent) == [("p1", 0)]
