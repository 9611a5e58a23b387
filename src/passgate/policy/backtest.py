"""The draft tested against recent traffic: the stored requests of a client's last decisions of an event
type evaluated again, against the draft and against the live version, through the simulation's own path
(`simulation.compiled_set`, `signals.build_facts`, `engine.evaluate`: what a live decision runs).

Both sets are evaluated now, on the same facts: signals that come from history (whether the device was
seen for the account, velocity counters, list entries) are read as they are today, not as they were when
the request came. A request whose device is "new" at the time was marked seen by its own decision, so
comparing the draft with the decision recorded then would count that change against the draft; comparing
it with the live version evaluated now counts only what the draft changes.

Nothing is written: the reads run in one session that is never committed (no decision, session, message,
webhook event, velocity count or device mark), and the run stops at its time budget.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from passgate.policy import queries, services
from passgate.policy.engine import CompiledSet, Outcome, evaluate
from passgate.policy.exceptions import NoActiveVersion
from passgate.policy.requests import AccountOpeningRequest, LoginRequest
from passgate.policy.signals import SignalSources, build_facts
from passgate.policy.simulation import DRAFT, LIVE, compiled_set

DEFAULT_COUNT = 200
MAX_COUNT = 1000
MAX_EXAMPLES = 20
TIME_BUDGET_SECONDS = 20.0


@dataclass(frozen=True)
class Example:
    """One request whose decision the draft changes."""

    decision_id: str
    inquiry_id: str
    created_at: datetime
    recorded: str  # the decision recorded when the request came
    live: str  # the live version's decision now
    draft: str  # the draft's decision now
    live_policies: tuple[str, ...]  # the policies that fire, live
    draft_policies: tuple[str, ...]  # and with the draft


@dataclass(frozen=True)
class Backtest:
    asked: int  # how many decisions were asked for
    found: int  # how many there were
    tested: int  # evaluated (found less skipped, less those past the time budget)
    skipped: int  # stored requests that are no valid request any more
    out_of_time: bool  # the time budget ran out before every decision was tested
    live_version: str | None
    changed: int
    transitions: list[tuple[str, str, int]]  # (live, draft, how many), most first
    examples: list[Example] = field(default_factory=list)
    seconds: float = 0.0


def _request_model(event_type: str) -> type[LoginRequest] | type[AccountOpeningRequest]:
    return LoginRequest if event_type == "LOGIN" else AccountOpeningRequest


def _outcome(
    session: Session,
    compiled: CompiledSet,
    client_id: str,
    event_type: str,
    body: dict[str, Any],
    sources: SignalSources,
    now: datetime,
) -> Outcome:
    facts = build_facts(session, client_id, event_type, body, compiled.signals, sources, now)
    return evaluate(compiled, facts)


def backtest(
    sessions: sessionmaker[Session],
    cache: services.CompiledSetCache,
    sources: SignalSources,
    client_id: str,
    event_type: str,
    count: int,
    now: datetime,
    *,
    budget: float = TIME_BUDGET_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> Backtest:
    """Evaluate the stored requests of the last `count` decisions (1 to MAX_COUNT) against the draft and
    the live version. Raises InvalidPolicySet for a draft that does not compile."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 1 and {MAX_COUNT}")
    started = monotonic()
    model = _request_model(event_type)
    transitions: Counter[tuple[str, str]] = Counter()
    examples: list[Example] = []
    tested = skipped = 0
    out_of_time = False
    with sessions() as session:
        draft = compiled_set(session, cache, client_id, event_type, DRAFT)
        try:
            live: CompiledSet | None = compiled_set(session, cache, client_id, event_type, LIVE)
        except NoActiveVersion:
            live = None
        rows = queries.recent_decisions(session, client_id, event_type, count)
        for row in rows:
            if monotonic() - started > budget:
                out_of_time = True
                break
            try:
                body = model.model_validate(row.request or {}).model_dump(mode="json", exclude_none=True)
            except ValidationError:
                skipped += 1
                continue
            new = _outcome(session, draft, client_id, event_type, body, sources, now)
            old = _outcome(session, live, client_id, event_type, body, sources, now) if live else None
            tested += 1
            before = old.decision if old is not None else row.decision
            if before == new.decision:
                continue
            transitions[(before, new.decision)] += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append(
                    Example(
                        decision_id=row.id,
                        inquiry_id=row.inquiry_id,
                        created_at=row.created_at,
                        recorded=row.decision,
                        live=before,
                        draft=new.decision,
                        live_policies=tuple(old.matched) if old is not None else (),
                        draft_policies=tuple(new.matched),
                    )
                )
        session.rollback()
    return Backtest(
        asked=count,
        found=len(rows),
        tested=tested,
        skipped=skipped,
        out_of_time=out_of_time,
        live_version=live.version_name if live is not None else None,
        changed=sum(transitions.values()),
        transitions=[(a, b, n) for (a, b), n in sorted(transitions.items(), key=lambda t: (-t[1], t[0]))],
        examples=examples,
        seconds=monotonic() - started,
    )
