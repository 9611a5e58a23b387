"""The decision use case: evaluate the active set, store the decision, start a challenge if needed.

`DecisionService.decide` returns a `Decision`; the HTTP side turns it into Kount's answer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy.orm import Session

from passgate.db.deferred import DeferredWrites
from passgate.policy.engine import Outcome, evaluate
from passgate.policy.fields import dimension_keys
from passgate.policy.lists import ListCache
from passgate.policy.models import Decision as StoredDecision
from passgate.policy.models import Device
from passgate.policy.services import CompiledSetCache
from passgate.policy.signals import SignalSources, build_facts
from passgate.policy.velocity import DatabaseVelocityStore


@dataclass
class DecisionContext:
    decision_id: str
    client_id: str
    sandbox: bool
    event_type: str
    body: dict[str, Any]
    outcome: Outcome
    now: datetime


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, which measured about
# 3 us more per decision than this one (an ALLOW costs 40-70 us in all). Nothing assigns to it after
# `decide` built it.
@dataclass(slots=True)
class Decision:
    """A decision taken: what the API answers (in Kount's shape) and what listeners are told."""

    event_type: str  # LOGIN | NEW_ACCOUNT_OPENING
    decision: str  # ALLOW | CHALLENGE | BLOCK
    inquiry_id: str
    device_session_id: str
    device_id: str
    segment: str
    set_name: str
    version_name: str
    tags: list[str]
    tag_weights: list[dict[str, Any]]
    # The challenge the decision started or tried to (the MFA service's typed result, spelled for the wire
    # by api/views.py), and the request attributes it used; None and {} when there was none.
    challenge: StartedChallenge | None
    echoed: dict[str, Any]


class StartedChallenge(Protocol):
    """What a decision knows of its challenge (`mfa.results.ChallengeStarted` or `ChallengeRefused`): the
    policy layer reads it without importing mfa."""

    @property
    def session_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def echoed(self) -> dict[str, Any] | None: ...


class ChallengeStarter(Protocol):
    """Starts an MFA/verification session for a CHALLENGE; returns what happened (started or refused,
    with the attributes it used), or None when no challenge applies."""

    def __call__(self, session: Session, ctx: DecisionContext) -> StartedChallenge | None: ...


@lru_cache(maxsize=50_000)
def device_id(client_id: str, device_session_id: str) -> str:
    return hashlib.sha256(f"{client_id}\x00{device_session_id}".encode()).hexdigest()[:32]


def mark_device_seen(
    session: Session, client_id: str, account_id: str, device_session_id: str, now: datetime
) -> None:
    """The account has used this device: inserted, or its `last_seen_at` moved, when the transaction
    commits (a decision writes nothing before its commit; see db.group_commit)."""
    DeferredWrites.of(session).upsert(
        Device.__table__,
        {
            "client_id": client_id,
            "account_id": account_id,
            "device_session_id": device_session_id,
            "seen": True,
            "first_seen_at": now,
            "last_seen_at": now,
        },
        ("client_id", "account_id", "device_session_id"),
        ("seen", "last_seen_at"),
    )


class DecisionService:
    def __init__(
        self,
        cache: CompiledSetCache,
        start_challenge: ChallengeStarter | None = None,
        sources: SignalSources | None = None,
    ) -> None:
        self.cache = cache
        self.start_challenge = start_challenge
        self.sources = sources or SignalSources(DatabaseVelocityStore(), ListCache())
        # Called inside the decision's transaction with the context and the decision (webhooks).
        self.listeners: list[Callable[[Session, DecisionContext, Decision], None]] = []

    def decide(
        self,
        session: Session,
        client_id: str,
        sandbox: bool,
        event_type: str,
        body: dict[str, Any],
        decision_id: str,
        now: datetime,
        on_stored: Callable[[DecisionContext], None] | None = None,
    ) -> Decision:
        compiled = self.cache.active(session, client_id, event_type)
        facts = build_facts(session, client_id, event_type, body, compiled.signals, self.sources, now)
        account_id = (body.get("account") or {}).get("id")
        dsid = body["deviceSessionId"]
        device = facts.get("device")
        outcome = evaluate(compiled, facts)
        metrics = ["logins" if event_type == "LOGIN" else "accountOpenings"]
        if outcome.decision == "CHALLENGE":
            metrics.append("challenges")
        self.sources.velocity.record(session, client_id, metrics, dimension_keys(body), now)

        stored = dict(body)
        if isinstance(stored.get("account"), dict):
            stored["account"] = {k: v for k, v in stored["account"].items() if k != "userPassword"}
        # Written with the other decisions of this transaction in one insert at commit.
        DeferredWrites.of(session).insert(
            StoredDecision.__table__,
            [
                {
                    "id": decision_id,
                    "client_id": client_id,
                    "event_type": event_type,
                    "inquiry_id": body["inquiryId"],
                    "device_session_id": dsid,
                    "account_id": account_id,
                    "decision": outcome.decision,
                    "segment": outcome.segment,
                    "set_version": compiled.version_name,
                    "tags": outcome.tags,
                    "request": stored,
                    "created_at": now,
                }
            ],
        )
        if (
            outcome.decision == "ALLOW"
            and account_id is not None
            and not (device and device["seenForAccount"])
        ):
            mark_device_seen(session, client_id, account_id, dsid, now)

        ctx = DecisionContext(decision_id, client_id, sandbox, event_type, body, outcome, now)
        challenge: StartedChallenge | None = None
        echoed: dict[str, Any] = {}
        if outcome.decision == "CHALLENGE" and outcome.mfa_enabled and self.start_challenge is not None:
            challenge = self.start_challenge(session, ctx)
            if challenge is not None:
                echoed = challenge.echoed or {}
        decision = Decision(  # positional: keywords cost about a microsecond more on this path
            event_type,
            outcome.decision,
            body["inquiryId"],
            dsid,
            device_id(client_id, dsid),
            outcome.segment,
            compiled.name,
            compiled.version_name,
            outcome.tags,
            outcome.tag_weights,
            challenge,
            echoed,
        )
        if on_stored is not None:
            on_stored(ctx)
        for listener in self.listeners:
            listener(session, ctx, decision)
        return decision
