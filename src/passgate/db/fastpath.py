"""The cursor fast path: Core statements compiled once per dialect and run on the DBAPI cursor.

For the few statements every decision or challenge runs, SQLAlchemy's per-execution work (cache key,
parameter processing, result wrapping) costs several times what the database does. `CursorStatement` keeps
what reaches the database and what comes back identical to `Connection.execute` of the same statement, and
raises what `Connection.execute` raises: a driver error goes through the connection's own DBAPI error
handling (`sqlalchemy.exc.DBAPIError.instance`, disconnect detection, `handle_error` events), so a caller
that retries on `sqlalchemy.exc.OperationalError` retries here too. tests/unit/db/test_fastpath.py holds
each kind of statement in use against `Connection.execute` on SQLite and PostgreSQL.

This is the only module that touches `driver_connection` for statements (db.sqlite uses it for BEGIN and
PRAGMAs).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple, NoReturn

from sqlalchemy import bindparam


class CursorStatement:
    """A Core statement compiled once per dialect and run on the DBAPI cursor of a session's connection.

    The SQL is SQLAlchemy's own compilation of the statement, values go through each column type's own
    bind processor and results through its result processor, so what reaches the database and what comes
    back are what `Connection.execute` would send and return (as plain tuples). It runs inside the
    session's transaction, on its connection (`conn` is a SQLAlchemy `Connection`, e.g.
    `session.connection()`).

    `statement` is a Core statement, or a function of the dialect's name giving one (an upsert is written
    differently on SQLite and PostgreSQL).
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Prepared] = {}

    def _prepare(self, dialect: Any) -> _Prepared:
        prepared = self._compiled.get(dialect.name)
        if prepared is None:
            statement = self.statement(dialect.name) if callable(self.statement) else self.statement
            compiled = statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
            spec = []
            for name in order:
                bind = compiled.binds[name]
                # A value bound in the statement itself (a literal) is its default; the caller gives the others.
                literal = not bind.required and bind.value is not None and not callable(bind.value)
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                spec.append((name, processor, literal, bind.value if literal else None))
            columns = getattr(statement, "selected_columns", None) or ()
            results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
            prepared = _Prepared(
                compiled.string,
                _binder(tuple(spec), positional=bool(compiled.positional)),
                tuple(results) if any(results) else None,
            )
            self._compiled[dialect.name] = prepared
        return prepared

    def rows(self, conn: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        sql, bind, results = self._prepare(conn.dialect)
        params = bind(values)
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        except conn.dialect.loaded_dbapi.Error as exc:
            _raise_as_core(conn, exc, sql, params, cursor)
        finally:
            cursor.close()
        if results is None:
            return list(fetched)
        return [tuple(v if p is None else p(v) for p, v in zip(results, row, strict=True)) for row in fetched]

    def executemany(self, conn: Any, rows: list[dict[str, Any]]) -> int:
        """Runs the statement once per row; returns the rows it changed in all (DBAPI rowcount)."""
        sql, bind, _ = self._prepare(conn.dialect)
        params = [bind(r) for r in rows]
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.executemany(sql, params)
            return int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as exc:
            _raise_as_core(conn, exc, sql, params, cursor)
        finally:
            cursor.close()


def _raise_as_core(conn: Any, exc: Exception, sql: str, params: Any, cursor: Any) -> NoReturn:
    """Raise what `Connection.execute` raises for this driver error: the connection's own handling wraps it
    (`DBAPIError.instance`: sqlite3/psycopg OperationalError → sqlalchemy.exc.OperationalError, and so
    on), runs `handle_error` listeners, and invalidates the connection if the error was a disconnect."""
    conn._handle_dbapi_exception(exc, sql, params, cursor, None)
    raise AssertionError("unreachable")  # pragma: no cover  (the call above always raises)


class _Prepared(NamedTuple):
    sql: str
    bind: Callable[[dict[str, Any]], Any]
    results: tuple[Any, ...] | None  # a result processor (or None) per selected column; None: none at all


def _binder(
    spec: tuple[tuple[str, Any, bool, Any], ...], positional: bool
) -> Callable[[dict[str, Any]], Any]:
    """Turns a row of values into the DBAPI's parameters: in bind order (qmark) or by name (pyformat),
    each through its type's processor, a literal's own value when the row does not give one.

    Without literals (every insert), the values are picked in one `itemgetter` call and only the columns
    that have a processor (dates, JSON, booleans) are looked at again: a challenge binds about 200 values,
    and a Python loop over all of them cost more than the database's own executemany."""
    names = tuple(name for name, *_ in spec)
    processed = tuple((i, processor) for i, (_, processor, _, _) in enumerate(spec) if processor is not None)

    if any(literal for _, _, literal, _ in spec):

        def values_of(row: dict[str, Any]) -> list[Any]:
            out = []
            for name, processor, literal, default in spec:
                value = row.get(name, default) if literal else row[name]
                out.append(value if processor is None else processor(value))
            return out

    else:
        pick: Callable[[dict[str, Any]], Any] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: tuple(row[n] for n in names))
        )

        def values_of(row: dict[str, Any]) -> list[Any]:
            out = list(pick(row))
            for i, processor in processed:
                out[i] = processor(out[i])
            return out

    if positional:
        return lambda row: tuple(values_of(row))
    return lambda row: dict(zip(names, values_of(row), strict=True))


class RowInserts:
    """Multi-row INSERTs into one table of the columns the rows carry, plus the Python-side defaults of
    the others (as SQLAlchemy's insert would apply them); one statement per set of keys."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._by_keys: dict[frozenset[str], tuple[CursorStatement, list[tuple[str, Any]]]] = {}

    def executemany(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        groups: dict[frozenset[str], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(frozenset(row), []).append(row)
        for keys, group in groups.items():
            entry = self._by_keys.get(keys)
            if entry is None:
                defaults = [
                    (c.name, c.default)
                    for c in self._table.columns
                    if c.name not in keys and c.default is not None and not c.default.is_sequence
                ]
                names = sorted(keys) + [name for name, _ in defaults]
                stmt = self._table.insert().values(
                    {n: bindparam(n, type_=self._table.c[n].type) for n in names}
                )
                entry = self._by_keys[keys] = (CursorStatement(stmt), defaults)
            statement, defaults = entry
            if defaults:
                group = [
                    {**row, **{n: d.arg(None) if d.is_callable else d.arg for n, d in defaults}}
                    for row in group
                ]
            statement.executemany(conn, group)


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """The dialect's own INSERT (the one with ON CONFLICT), for PostgreSQL or SQLite."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


_INSERTS: dict[Any, RowInserts] = {}
_INCREMENTS: dict[Any, CursorStatement] = {}
_UPSERTS: dict[tuple[Any, ...], CursorStatement] = {}


def insert_statement(table: Any) -> RowInserts:
    """The (cached) multi-row inserter of a table."""
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = RowInserts(table)
    return stmt


def increment_statement(table: Any) -> CursorStatement:
    """INSERT … ON CONFLICT (primary key) DO UPDATE SET count = count + excluded.count."""
    stmt = _INCREMENTS.get(table)
    if stmt is None:
        keys = [c.name for c in table.primary_key.columns]
        values = {c.name: bindparam(c.name, type_=c.type) for c in table.columns}

        def build(dialect_name: str) -> Any:
            upsert = dialect_insert(dialect_name, table).values(values)
            return upsert.on_conflict_do_update(
                index_elements=keys, set_={"count": table.c.count + upsert.excluded.count}
            )

        stmt = _INCREMENTS[table] = CursorStatement(build)
    return stmt


def upsert_statement(
    table: Any, columns: tuple[str, ...], keys: tuple[str, ...], update: tuple[str, ...]
) -> CursorStatement:
    """INSERT (these columns) … ON CONFLICT (keys) DO UPDATE SET each `update` column to the inserted
    row's value. A column left out gets its SQL default (NULL); one with a Python-side default may not be
    left out (nothing here would apply it)."""
    stmt = _UPSERTS.get((table, columns, keys, update))
    if stmt is None:
        missing = [c.name for c in table.columns if c.name not in columns and c.default is not None]
        if missing:
            raise ValueError(f"a deferred upsert into {table.name} must give {', '.join(missing)}")
        values = {name: bindparam(name, type_=table.c[name].type) for name in columns}

        def build(dialect_name: str) -> Any:
            upsert = dialect_insert(dialect_name, table).values(values)
            return upsert.on_conflict_do_update(
                index_elements=list(keys), set_={c: getattr(upsert.excluded, c) for c in update}
            )

        stmt = _UPSERTS[(table, columns, keys, update)] = CursorStatement(build)
    return stmt
