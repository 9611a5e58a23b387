"""The dispatcher knows messages, not purposes: it imports nothing from `mfa`, and a hook's outer join
becomes part of the one statement a round's claim (and its look ahead) reads with."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

import passgate.messaging
from passgate.messaging import queries
from passgate.messaging.dispatcher import Dispatcher
from passgate.messaging.interfaces import ClaimJoin
from passgate.mfa.models import MfaSession

PACKAGE = Path(passgate.messaging.__file__).parent
OUTBOX_MODULES = ["interfaces", "outbox", "queries", "claiming", "recording", "dispatcher", "samples"]


def imported(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", [m for m in OUTBOX_MODULES if m != "samples"])
def test_the_outbox_imports_nothing_from_mfa(module: str) -> None:
    assert not [name for name in imported(module) if name.startswith("passgate.mfa")]


def test_the_dispatcher_class_stays_small() -> None:
    assert len(inspect.getsource(Dispatcher).splitlines()) < 400


JOIN = ClaimJoin(MfaSession.__table__, ("id", "status", "ttl_seconds"), "s_")  # type: ignore[arg-type]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_a_hooks_join_is_part_of_the_one_claim_statement(dialect: object) -> None:
    statements = queries.RoundStatements.compose([JOIN])
    for statement in (statements.due_round,):
        sql = str(statement.compile(dialect=dialect))  # type: ignore[arg-type]
        assert sql.count("LEFT OUTER JOIN mfa_sessions ON mfa_sessions.id = messages.session_id") == 2
        assert {"s_id", "s_status", "s_ttl_seconds"} <= set(statement.selected_columns.keys())


def test_without_hooks_the_claim_reads_messages_alone() -> None:
    sql = str(queries.RoundStatements.compose(()).due_round.compile(dialect=sqlite.dialect()))
    assert "JOIN" not in sql
