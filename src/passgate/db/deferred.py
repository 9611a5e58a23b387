"""Write-behind rows: what a unit of work writes only when its transaction commits.

For append-only rows nothing in the transaction reads back (decisions, velocity events, a challenge's
timeline) one multi-row statement at commit costs far less than a statement per request, and a unit whose
writes all wait for the commit can be computed on a read snapshot and written later, in a short
transaction of its own (db.group_commit). A session's pending writes are one `DeferredWrites`, held in its
`info` under the class itself (`DeferredWrites.of(session)`); `make_sessionmaker` writes it before every
commit (`flush`) and forgets it on rollback (`discard`).

Invariants: nothing deferred is visible before the commit, to the unit itself included; the rows go in
foreign-key order whatever order units deferred them; a deferred update that matches fewer rows than it
was given (a row changed since it was read) fails the commit with StaleRows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from passgate.db.fastpath import CursorStatement, increment_statement, insert_statement, upsert_statement

UpsertKey = tuple[Any, tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # table, columns, keys, update


class StaleRows(Exception):
    """A deferred update matched fewer rows than it was given: a row it was computed from has changed
    since (see `DeferredWrites.update`). Raised at commit, which then rolls back."""


@dataclass
class DeferredWrites:
    """The rows a session writes at commit: inserts, upserts, increments and guarded updates."""

    inserts: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    upserts: dict[UpsertKey, list[dict[str, Any]]] = field(default_factory=dict)
    increments: dict[Any, dict[tuple[Any, ...], int]] = field(default_factory=dict)
    updates: dict[CursorStatement, list[dict[str, Any]]] = field(default_factory=dict)

    # -- where a session keeps them ---------------------------------------------------------------------

    @classmethod
    def of(cls, session: Session) -> DeferredWrites:
        """The session's pending writes (made on first use)."""
        writes: DeferredWrites | None = session.info.get(cls)
        if writes is None:
            writes = session.info[cls] = cls()
        return writes

    @classmethod
    def take(cls, session: Session) -> DeferredWrites | None:
        """The session's pending writes, which the session no longer holds."""
        writes: DeferredWrites | None = session.info.pop(cls, None)
        return writes

    @classmethod
    def discard(cls, session: Session, _transaction: Any = None) -> None:
        """Forget the session's pending writes (its transaction rolled back)."""
        session.info.pop(cls, None)

    # -- deferring ------------------------------------------------------------------------------------

    def insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert these rows at commit, together with the other rows of the same table."""
        self.inserts.setdefault(table, []).extend(rows)

    def increment(self, table: Any, keys: list[tuple[Any, ...]]) -> None:
        """Add one to the `count` column of the rows with these primary keys, at commit.

        Increments of one transaction are summed first, so a batch of decisions on the same keys costs one
        upsert per key, not one per decision."""
        counts = self.increments.setdefault(table, {})
        for key in keys:
            counts[key] = counts.get(key, 0) + 1

    def upsert(self, table: Any, row: dict[str, Any], keys: tuple[str, ...], update: tuple[str, ...]) -> None:
        """INSERT the row, or on a conflict on `keys` set the `update` columns to the row's values, at commit
        (in the order deferred: a later row for the same keys updates an earlier one)."""
        self.upserts.setdefault((table, tuple(sorted(row)), keys, update), []).append(row)

    def update(self, statement: CursorStatement, rows: list[dict[str, Any]]) -> None:
        """Run `statement`, an UPDATE whose WHERE matches exactly one row per parameter set, for each of
        `rows` at commit (after the inserts). If fewer rows match than were given, the commit raises
        StaleRows and nothing of the transaction is written.

        For a unit computed on a read snapshot and written later (`Committer.run_deferred`): its WHERE
        names what the unit read (a row's version, its status), so a row changed in between is not
        overwritten; the committer then runs the unit again the ordinary way, with the write lock held."""
        self.updates.setdefault(statement, []).extend(rows)

    # -- combining and writing ------------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self.inserts or self.upserts or self.increments or self.updates)

    def merge(self, other: DeferredWrites) -> None:
        """Add another unit's pending writes to these (its rows after ours, its increments summed)."""
        for table, rows in other.inserts.items():
            self.inserts.setdefault(table, []).extend(rows)
        for key, rows in other.upserts.items():
            self.upserts.setdefault(key, []).extend(rows)
        for statement, rows in other.updates.items():
            self.updates.setdefault(statement, []).extend(rows)
        for table, counts in other.increments.items():
            mine = self.increments.setdefault(table, {})
            for k, n in counts.items():
                mine[k] = mine.get(k, 0) + n

    def write(self, conn: Any) -> None:
        """Write everything on `conn` (a SQLAlchemy Connection in a transaction): inserts in foreign-key
        order, then upserts, increments and the guarded updates."""
        for table, rows in sorted(self.inserts.items(), key=lambda item: _dependency_rank(item[0])):
            if rows:
                insert_statement(table).executemany(conn, rows)
        for (table, columns, keys, update), rows in self.upserts.items():
            upsert_statement(table, columns, keys, update).executemany(conn, rows)
        for table, counts in self.increments.items():
            names = [c.name for c in table.primary_key.columns]
            rows = [dict(zip(names, key, strict=True), count=n) for key, n in sorted(counts.items())]
            increment_statement(table).executemany(conn, rows)
        for statement, rows in self.updates.items():
            matched = statement.executemany(conn, rows)
            if matched != len(rows):
                raise StaleRows(f"{len(rows) - matched} of {len(rows)} rows changed since they were read")


def flush(session: Session) -> None:
    """Write the session's pending writes (the sessionmaker's before_commit listener)."""
    writes = DeferredWrites.take(session)
    if not writes:
        return
    # ORM objects first: deferred rows may reference them (timeline events reference their session).
    if session.new or session.dirty or session.deleted:
        session.flush()
    writes.write(session.connection())


def merge_info(into: dict[Any, Any], info: dict[Any, Any]) -> None:
    """Add one session's `info` (its DeferredWrites and its flags, e.g. `work_queued`) to another's."""
    for key, value in info.items():
        if isinstance(value, DeferredWrites):
            target = into.get(key)
            if target is None:
                target = into[key] = DeferredWrites()
            target.merge(value)
        elif isinstance(value, bool):
            into[key] = into.get(key, False) or value
        else:
            into[key] = value


def _dependency_rank(table: Any) -> int:
    """A table's place in foreign-key order: deferred rows of a table go in after the rows they reference
    (a challenge's session before its secret, message and events), whatever order units deferred them."""
    rank = _RANKS.get(table)
    if rank is None:
        _RANKS.update({t: i for i, t in enumerate(table.metadata.sorted_tables)})
        rank = _RANKS.get(table, len(_RANKS))
    return rank


_RANKS: dict[Any, int] = {}
