"""The stored answers of a group-commit batch read in one statement (`services.claiming`, a
`db.group_commit.ReadAhead`), judged by each decision's own look-up (the plain path).

The same generated waves of decision units — new inquiries, retries of decided ones, an inquiry reused
with another request, records past the retention taken over, duplicates in one batch, other clients and
endpoints, units that fail — run through the committer with and without the read-ahead, on fresh
records; every answer and every record written must be the same. On SQLite through both committers, on
PostgreSQL through the writer thread's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from passgate.auth.services import create_client
from passgate.db import make_sessionmaker, transaction
from passgate.db.group_commit import HeldSession, InlineCommitter, SessionPerBatch, ThreadCommitter
from passgate.idempotency import queries, services
from passgate.idempotency.services import RETENTION, claim_decision, claiming

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SCOPES = ("/login/v2", "/newaccountopening/v2")


@pytest.fixture
def clients(engine: Engine) -> Iterator[list[str]]:
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        ids = [create_client(session, f"Read-ahead {i}", "US", False, NOW).id for i in range(2)]
    yield ids
    with engine.begin() as conn:
        for cid in ids:
            conn.execute(text("DELETE FROM clients WHERE id = :c"), {"c": cid})


def _unit(client_id: str, scope: str, key: str, hashed: str, fail: bool) -> Callable[[Any], Any]:
    """A decision's unit as api.decisions runs it, with a made-up decision: the claim, then the answer
    remembered (or the stored one replayed)."""

    def unit(session: Any) -> Any:
        claim = claim_decision(session, client_id, scope, key, hashed, NOW)
        if claim.answer is not None:
            return ("replayed", claim.answer.status, claim.answer.body, claim.answer.correlation_id)
        if fail:
            raise ValueError(f"deciding {key} failed")
        body = f"{key}:{hashed[:8]}".encode()
        claim.remember(session, body, f"c-{key}", NOW)
        return ("decided", 200, body, f"c-{key}")

    return unit


Wave = list[tuple[tuple[str, str, str], Callable[[Any], Any]]]


def _waves(seed: int, clients: list[str], same_batch_duplicates: bool, waves: int = 10) -> list[Wave]:
    rnd = random.Random(seed)
    decided: list[tuple[str, str, str, str]] = []  # (client, scope, key, hash) of earlier waves
    out: list[Wave] = []
    n = 0
    for _ in range(waves):
        wave: Wave = []
        fresh: list[tuple[str, str, str, str]] = []
        for _ in range(rnd.randint(1, 30)):
            n += 1
            kind = rnd.choices(("new", "retry", "reused", "expired", "dup", "fail"), (50, 15, 5, 6, 6, 4))[0]
            if kind in ("retry", "reused") and decided:
                cid, scope, key, hashed = rnd.choice(decided)
                if kind == "reused":
                    hashed = f"{n:064x}"
            elif kind == "dup" and fresh and same_batch_duplicates:
                cid, scope, key, hashed = rnd.choice(fresh)
            elif kind == "expired":
                cid, scope, key, hashed = (
                    rnd.choice(clients),
                    SCOPES[0],
                    f"old{rnd.randrange(4)}",
                    f"{n:064x}",
                )
            else:
                cid, scope, key, hashed = rnd.choice(clients), rnd.choice(SCOPES), f"inq{n}", f"{n:064x}"
                fresh.append((cid, scope, key, hashed))
            wave.append(((cid, scope, key), _unit(cid, scope, key, hashed, kind == "fail")))
        decided.extend(fresh)
        out.append(wave)
    return out


def _reset(engine: Engine, clients: list[str]) -> None:
    """No records but four past the retention per client (taken over by a new request for their key)."""
    with engine.begin() as conn:
        for cid in clients:
            conn.execute(text("DELETE FROM idempotency_records WHERE client_id = :c"), {"c": cid})
            for i in range(4):
                conn.execute(
                    queries.TABLE.insert().values(
                        client_id=cid,
                        scope=SCOPES[0],
                        key=f"old{i}",
                        request_hash="0" * 64,
                        status=200,
                        headers=None,
                        body=b"stale",
                        correlation_id="old",
                        created_at=NOW - RETENTION - timedelta(minutes=i + 1),
                    )
                )


def _records(engine: Engine, clients: list[str]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT client_id, scope, key, request_hash, status, body, correlation_id, created_at "
                "FROM idempotency_records WHERE client_id IN (:a, :b)"
            ),
            {"a": clients[0], "b": clients[1]},
        )
        return sorted((*r[:5], bytes(r[5]), *r[6:]) for r in rows)


def _outcome(result: Any) -> Any:
    if isinstance(result, BaseException):
        return ("error", type(result).__name__, str(result) if isinstance(result, ValueError) else "")
    return result


async def _run(committer: Any, waves: list[Wave], ahead: bool) -> list[list[Any]]:
    committer.start()
    answers = []
    try:
        for wave in waves:
            results = await asyncio.gather(
                *(committer.run_deferred(claiming(u, *k) if ahead else u) for k, u in wave),
                return_exceptions=True,
            )
            answers.append([_outcome(r) for r in results])
    finally:
        committer.stop()
    return answers


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["inline", "thread"])
async def test_the_read_ahead_answers_and_writes_as_each_units_own_lookup(
    engine: Engine,
    clients: list[str],
    database_url: str,
    kind: str,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kind == "inline" and not database_url.startswith("sqlite"):
        pytest.skip("the inline committer is SQLite's")
    lookups = []
    plain_lookup = queries.lookup
    monkeypatch.setattr(queries, "lookup", lambda *a: lookups.append(a) or plain_lookup(*a))
    sessions = make_sessionmaker(engine)
    # Duplicates in one wave: on the writer thread, which of them decides depends on how it cuts the batches.
    waves = _waves(seed, clients, same_batch_duplicates=kind == "inline")
    outcomes = {}
    own_lookups = {}
    for ahead in (False, True):
        _reset(engine, clients)
        lookups.clear()
        if kind == "inline":
            committer: Any = InlineCommitter(sessions, max_batch=12, batch_sessions=SessionPerBatch(sessions))
        else:
            committer = ThreadCommitter(sessions, max_batch=12, batch_sessions=HeldSession(sessions))
        answers = await _run(committer, waves, ahead)
        outcomes[ahead] = (answers, _records(engine, clients))
        own_lookups[ahead] = len(lookups)
    assert outcomes[True][0] == outcomes[False][0]
    assert outcomes[True][1] == outcomes[False][1]
    flat = [a[0] for wave in outcomes[False][0] for a in wave]
    assert {"decided", "replayed", "error"} <= set(flat)
    # The read-ahead did the looking up: a unit reads on its own only when it runs again after its batch
    # failed (one by one, or the ordinary way after its snapshot's write failed).
    units = sum(len(w) for w in waves)
    assert own_lookups[False] >= units
    assert own_lookups[True] < own_lookups[False] - units / 2


def test_lookup_many_gives_what_lookup_gives(
    engine: Engine, clients: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "MAX_KEYS_PER_LOOKUP", 16)  # several statements for one (client, scope)
    _reset(engine, clients)
    keys = [
        (cid, scope, key) for cid in clients for scope in SCOPES for key in ("old0", "old3", "none", "old0")
    ]
    keys += [(clients[0], SCOPES[0], f"k{i}") for i in range(37)] + [(clients[0], SCOPES[0], "old1")]
    with transaction(make_sessionmaker(engine)) as session:
        conn = session.connection()
        many = services.queries.lookup_many(conn, keys)
        assert set(many) == set(keys)
        for key in keys:
            assert many[key] == queries.lookup(conn, *key)
        assert many[(clients[0], SCOPES[0], "old0")] is not None
        assert many[(clients[0], SCOPES[1], "old0")] is None
