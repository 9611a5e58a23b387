"""The one place that turns settings into concrete collaborators."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.services import KeyStatusCache
from passgate.auth.tokens import TokenService
from passgate.clock import Clock, SystemClock
from passgate.config import Settings
from passgate.db import make_engine, make_sessionmaker
from passgate.keyring import KeyRing
from passgate.messaging.senders.base import EmailSender, SmsSender
from passgate.messaging.senders.dev import DevInboxSender
from passgate.messaging.services import Dispatcher
from passgate.messaging.sources import BuiltinTemplateSource, TemplateSource
from passgate.mfa.services import MfaService
from passgate.observability import Metrics
from passgate.policy.decisions import DecisionService
from passgate.policy.services import CompiledSetCache
from passgate.ratelimit import RateLimiter

log = logging.getLogger("passgate")


class WorkNotifier:
    """Wakes in-process workers once a transaction that queued work has committed."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def after_commit(self, session: Session) -> None:
        if session.info.pop("work_queued", False):
            for cb in self.callbacks:
                cb()

    def after_rollback(self, session: Session) -> None:
        session.info.pop("work_queued", None)


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
    keyring: KeyRing
    limiter: RateLimiter
    templates: TemplateSource
    mfa: MfaService
    dispatcher: Dispatcher
    email_sender: EmailSender
    sms_sender: SmsSender
    notifier: WorkNotifier
    # Extra periodic jobs every worker runs (e.g. webhook deliveries): async callables returning how
    # many items they handled, so the loop knows whether to look again at once.
    worker_jobs: list[Callable[[], Awaitable[int]]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.engine.dispose()


def build_email_sender(settings: Settings, dev: DevInboxSender) -> EmailSender:
    if settings.smtp_url:
        from passgate.messaging.senders.smtp import SmtpEmailSender

        return SmtpEmailSender(settings.smtp_url)
    if settings.environment == "production":
        from passgate.messaging.senders.unconfigured import UnconfiguredSender

        log.warning("no PASSGATE_SMTP_URL in production: email challenges will fail")
        return UnconfiguredSender("EMAIL")
    return dev


def build_sms_sender(settings: Settings, dev: DevInboxSender) -> SmsSender:
    from passgate.messaging.senders.http import FailoverSmsSender, HttpGatewaySmsSender, TwilioSmsSender

    names = [n.strip() for n in (settings.sms_provider or "").split(",") if n.strip()]
    senders: list[SmsSender] = []
    for name in names:
        if name == "twilio":
            if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from):
                raise ValueError(
                    "PASSGATE_SMS_PROVIDER=twilio needs PASSGATE_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and _FROM"
                )
            senders.append(
                TwilioSmsSender(
                    settings.twilio_account_sid,
                    settings.twilio_auth_token,
                    settings.twilio_from,
                    settings.twilio_base_url,
                    f"{settings.public_url}/providers/twilio/status",
                )
            )
        elif name == "http":
            if not settings.sms_http_url:
                raise ValueError("PASSGATE_SMS_PROVIDER=http needs PASSGATE_SMS_HTTP_URL")
            senders.append(HttpGatewaySmsSender(settings.sms_http_url, settings.sms_from))
        elif name == "dev":
            senders.append(dev)
        else:
            raise ValueError(f"unknown SMS provider {name!r}; use dev, twilio or http")
    if not senders:
        if settings.environment == "production":
            from passgate.messaging.senders.unconfigured import UnconfiguredSender

            log.warning("no PASSGATE_SMS_PROVIDER in production: SMS challenges will fail")
            return UnconfiguredSender("SMS")
        return dev
    return senders[0] if len(senders) == 1 else FailoverSmsSender(senders)


def build_registry(
    settings: Settings,
    clock: Clock | None = None,
    engine: Engine | None = None,
    email_sender: EmailSender | None = None,
    sms_sender: SmsSender | None = None,
) -> Registry:
    engine = engine or make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    notifier = WorkNotifier()
    event.listen(sessions, "after_commit", notifier.after_commit)
    event.listen(sessions, "after_soft_rollback", lambda s, _t: notifier.after_rollback(s))
    clock = clock or SystemClock()
    policy_cache = CompiledSetCache()
    keyring = KeyRing(settings.secret_key_list)
    limiter = RateLimiter(settings.redis_url)
    templates = BuiltinTemplateSource()
    metrics = Metrics()
    mfa = MfaService(
        keyring=keyring, clock=clock, limiter=limiter, templates=templates, public_url=settings.public_url
    )
    dev = DevInboxSender(sessions, clock)
    email = email_sender or build_email_sender(settings, dev)
    sms = sms_sender or build_sms_sender(settings, dev)
    dispatcher = Dispatcher(
        sessions=sessions,
        clock=clock,
        keyring=keyring,
        templates=templates,
        mfa=mfa,
        email_sender=email,
        sms_sender=sms,
        public_url=settings.public_url,
        mail_from=settings.mail_from,
        metrics=metrics,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        sandbox_sender=dev,
        retry_schedule=settings.retry_schedule,
        lock_seconds=settings.message_lock_seconds,
    )
    return Registry(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock,
        tokens=TokenService(settings.secret_key_list, settings.token_ttl_seconds),
        key_status=KeyStatusCache(sessions, settings.key_cache_seconds),
        policy_cache=policy_cache,
        decisions=DecisionService(policy_cache, start_challenge=mfa.start_challenge),
        metrics=metrics,
        keyring=keyring,
        limiter=limiter,
        templates=templates,
        mfa=mfa,
        dispatcher=dispatcher,
        email_sender=email,
        sms_sender=sms,
        notifier=notifier,
    )
