"""The one place that turns settings into concrete collaborators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.services import KeyStatusCache
from passgate.auth.tokens import TokenService
from passgate.clock import Clock, SystemClock
from passgate.config import Settings
from passgate.db import make_engine, make_sessionmaker
from passgate.observability import Metrics
from passgate.policy.decisions import DecisionService
from passgate.policy.services import CompiledSetCache


@dataclass
class Registry:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    tokens: TokenService
    key_status: KeyStatusCache
    policy_cache: CompiledSetCache
    decisions: DecisionService
    metrics: Metrics
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.engine.dispose()


def build_registry(settings: Settings, clock: Clock | None = None, engine: Engine | None = None) -> Registry:
    engine = engine or make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    policy_cache = CompiledSetCache()
    return Registry(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock or SystemClock(),
        tokens=TokenService(settings.secret_key_list, settings.token_ttl_seconds),
        key_status=KeyStatusCache(sessions, settings.key_cache_seconds),
        policy_cache=policy_cache,
        decisions=DecisionService(policy_cache),
        metrics=Metrics(),
    )
