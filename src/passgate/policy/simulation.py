"""A simulated decision: a request evaluated against the draft or a published version, explained, and
nothing stored. The management API and the console both simulate through `simulate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from passgate.policy import services
from passgate.policy.engine import CompiledSet, explain, not_evaluated
from passgate.policy.signals import SignalSources, build_facts

DRAFT = "draft"
LIVE = "live"  # the active version, whatever its name
# The facts' signal groups a simulation shows (what the policies could read of the request's context).
SIGNAL_GROUPS = ("device", "email", "phone", "ip", "velocity")


@dataclass(frozen=True)
class Simulation:
    version: str | None  # the version name; None for the draft
    set_name: str
    explanation: dict[str, Any]  # `engine.explain`: the decision, segments and policies with their reasons
    signals: dict[str, Any]  # the groups of SIGNAL_GROUPS the facts hold
    # `engine.not_evaluated`: the segments after the chosen one and the policies it does not list.
    skipped: dict[str, Any] = field(default_factory=dict)


def compiled_set(
    session: Session, cache: services.CompiledSetCache, client_id: str, event_type: str, version: str
) -> CompiledSet:
    """The set a simulation runs: the draft (checked as a save checks it: a draft stored by an older
    release may not compile), `live` for the active version, or a version by name."""
    if version == DRAFT:
        return services.validate_document(services.draft_document(session, client_id, event_type))
    if version == LIVE:
        return cache.active(session, client_id, event_type)
    found = services.get_version(session, client_id, event_type, version)
    return cache.get(session, found.id)


def simulate(
    sessions: sessionmaker[Session],
    cache: services.CompiledSetCache,
    sources: SignalSources,
    client_id: str,
    event_type: str,
    request_body: dict[str, Any],
    version: str,
    now: datetime,
) -> Simulation:
    """Evaluate `request_body` (already validated as the event type's request) against `version`
    (`draft` or a version name; raises VersionNotFound, or InvalidPolicySet for a draft that does not
    compile)."""
    # A session that is never committed: simulation reads devices, lists and counters, and writes nothing.
    with sessions() as session:
        compiled = compiled_set(session, cache, client_id, event_type, version)
        facts = build_facts(session, client_id, event_type, request_body, compiled.signals, sources, now)
        explanation = explain(compiled, facts)
        skipped = not_evaluated(compiled, explanation["userSegment"])
        session.rollback()
    signals = {k: facts[k] for k in SIGNAL_GROUPS if k in facts}
    return Simulation(compiled.version_name, compiled.name, explanation, signals, skipped)
