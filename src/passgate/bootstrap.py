"""The one place that turns settings into concrete collaborators."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from passgate.auth.services import ClientCache, KeyStatusCache
from passgate.auth.tokens import TokenService
from passgate.clock import Clock, SystemClock
from passgate.config import Settings
from passgate.console.services import ConsoleAuth
from passgate.db import make_engine, make_sessionmaker
from passgate.db.group_commit import Committer, make_committer
from passgate.db.sqlite import WalCheckpointer
from passgate.keyring import KeyRing
from passgate.messaging.bounce_intake import BounceIntake
from passgate.messaging.bounces import BounceAddresses
from passgate.messaging.dispatcher import Dispatcher
from passgate.messaging.interfaces import EmailSender, SmsSender
from passgate.messaging.samples import SampleDelivery
from passgate.messaging.senders.dev import DevInboxSender
from passgate.messaging.sources import DatabaseTemplateSource, TemplateSource
from passgate.mfa.breaker import BreakerStore
from passgate.mfa.breaker_redis import make_breaker_store
from passgate.mfa.breaker_services import SmsBreakerService
from passgate.mfa.delivery import ChallengeDelivery
from passgate.mfa.services import MfaService
from passgate.observability import Metrics
from passgate.policy.decisions import DecisionService
from passgate.policy.lists import ListCache
from passgate.policy.services import CompiledSetCache
from passgate.policy.signals import SignalSources
from passgate.policy.velocity import DatabaseVelocityStore, RedisVelocityStore, VelocityStore
from passgate.ratelimit import RateLimiter
from passgate.ratelimit.factory import make_rate_limiter
from passgate.webhooks.claims import DeliveryPolicy
from passgate.webhooks.delivery import WebhookDeliverer
from passgate.webhooks.metrics import WebhookMetrics
from passgate.webhooks.services import WebhookService
from passgate.webhooks.ssrf import check_url
from passgate.webhooks.states import parse_schedule
from passgate.webhooks.transport import HttpxWebhookTransport

log = logging.getLogger("passgate")
# Run by the app's lifespan, given the app: startup hooks in order, shutdown hooks in reverse.
LifespanHook = Callable[[Any], Awaitable[None]]


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
    signals: SignalSources
    committer: Committer
    clients: ClientCache
    webhooks: WebhookService
    webhook_deliverer: WebhookDeliverer
    console_auth: ConsoleAuth
    # Extra periodic jobs every worker runs (e.g. webhook deliveries): async callables returning how
    # many items they handled, so the loop knows whether to look again at once.
    worker_jobs: list[Callable[[], Awaitable[int]]] = field(default_factory=list)
    startup: list[LifespanHook] = field(default_factory=list)
    shutdown: list[LifespanHook] = field(default_factory=list)

    def close(self) -> None:
        self.committer.stop()
        self.engine.dispose()


def bounce_addresses(settings: Settings, keyring: KeyRing) -> BounceAddresses:
    """The bounce (VERP) addresses: made when PASSGATE_BOUNCE_DOMAIN is set, read whatever it is (mail sent
    before it was unset still bounces)."""
    return BounceAddresses(keyring, settings.bounce_domain or "", settings.bounce_local_part)


def build_bounce_intake(registry: Registry) -> BounceIntake:
    """What the bounce listener and POST /providers/bounces hand each bounce to."""
    return BounceIntake(
        sessions=registry.sessions,
        dispatcher=registry.dispatcher,
        addresses=bounce_addresses(registry.settings, registry.keyring),
        metrics=registry.metrics,
        clock=registry.clock,
    )


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

    senders: list[SmsSender] = []
    for name in settings.sms_providers:
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
            senders.append(
                HttpGatewaySmsSender(settings.sms_http_url, settings.sms_from, gateway_secret(settings))
            )
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


def gateway_secret(settings: Settings) -> str | None:
    """The HTTP SMS gateway's signing secret (its form, and its presence in production, are checked with
    the settings); in development its absence is allowed (delivery reports are then taken unsigned) and
    said at start."""
    if not settings.sms_http_secret:
        log.warning(
            "PASSGATE_SMS_HTTP_SECRET is not set: requests to the SMS gateway go unsigned and its delivery "
            "reports on /providers/http/status are taken without a signature (development only)"
        )
    return settings.sms_http_secret


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
    policy_cache = CompiledSetCache(clock=clock)
    velocity: VelocityStore = (
        RedisVelocityStore(settings.redis_url) if settings.redis_url else DatabaseVelocityStore()
    )
    signals = SignalSources(velocity=velocity, lists=ListCache(clock=clock))
    keyring = KeyRing(settings.secret_key_list)
    metrics = Metrics()
    limiter = make_rate_limiter(settings.redis_url, clock, on_outage=metrics.rate_limit_outage)
    # The client's own templates and branding, falling back to the built-ins and the client's name.
    templates: TemplateSource = DatabaseTemplateSource(clock=clock)
    mfa = MfaService(
        keyring=keyring, clock=clock, limiter=limiter, templates=templates, public_url=settings.public_url
    )
    install_sms_breaker(mfa, make_breaker_store(settings.redis_url), metrics)
    dev = DevInboxSender(sessions, clock)
    email = email_sender or build_email_sender(settings, dev)
    sms = sms_sender or build_sms_sender(settings, dev)
    sqlite = engine.dialect.name == "sqlite"
    committer = make_committer(
        sessions, inline=sqlite, checkpointer=WalCheckpointer(engine) if sqlite else None
    )
    metrics.watch_group_commit(committer)
    dispatcher = Dispatcher(
        sessions=sessions,
        clock=clock,
        keyring=keyring,
        templates=templates,
        email_sender=email,
        sms_sender=sms,
        public_url=settings.public_url,
        mail_from=settings.mail_from,
        metrics=metrics,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        sandbox_sender=dev,
        retry_schedule=settings.retry_schedule,
        lock_seconds=settings.message_lock_seconds,
        committer=committer,
        bounces=bounce_addresses(settings, keyring) if settings.bounce_domain else None,
    )
    # The owners of the outbox's messages, by purpose: challenges (MFA sessions) and sample sends.
    dispatcher.register(ChallengeDelivery(mfa=mfa, keyring=keyring))
    dispatcher.register(SampleDelivery())
    webhooks, deliverer = build_webhooks(settings, sessions, keyring, clock, metrics)
    registry = Registry(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock,
        tokens=TokenService(settings.secret_key_list, settings.token_ttl_seconds),
        key_status=KeyStatusCache(sessions, settings.key_cache_seconds, clock),
        policy_cache=policy_cache,
        decisions=DecisionService(
            policy_cache,
            start_challenge=mfa.start_challenge,
            sources=signals,
        ),
        metrics=metrics,
        keyring=keyring,
        limiter=limiter,
        templates=templates,
        mfa=mfa,
        dispatcher=dispatcher,
        email_sender=email,
        sms_sender=sms,
        notifier=notifier,
        signals=signals,
        committer=committer,
        clients=ClientCache(),
        webhooks=webhooks,
        webhook_deliverer=deliverer,
        console_auth=ConsoleAuth(
            keyring=keyring,
            clock=clock,
            limiter=limiter,
            mfa=mfa,
            public_url=settings.public_url,
            email_rates=settings.console_sign_in_rates_email,
            ip_rates=settings.console_sign_in_rates_ip,
        ),
    )
    install_webhooks(registry)
    return registry


def build_webhooks(
    settings: Settings, sessions: sessionmaker[Session], keyring: KeyRing, clock: Clock, metrics: Metrics
) -> tuple[WebhookService, WebhookDeliverer]:
    """The webhook service (endpoints, events) and the deliverer every worker runs."""
    # Plain http goes with private targets: its only realistic use is inside the operator's network.
    allow = settings.webhook_allow_private
    webhook_metrics = WebhookMetrics(metrics)
    service = WebhookService(
        keyring=keyring,
        clock=clock,
        check_url=lambda url: check_url(url, allow_private=allow, allow_http=allow),
        metrics=webhook_metrics,
        key_overlap=timedelta(seconds=settings.webhook_key_overlap_seconds),
        secret_overlap=timedelta(seconds=settings.webhook_secret_overlap_seconds),
    )
    deliverer = WebhookDeliverer(
        sessions=sessions,
        clock=clock,
        service=service,
        transport=HttpxWebhookTransport(
            allow_private=allow,
            allow_http=allow,
            timeout=settings.webhook_timeout_seconds,
            max_connections=settings.webhook_max_in_flight,
        ),
        metrics=webhook_metrics,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        policy=DeliveryPolicy(
            retry_schedule=parse_schedule(settings.webhook_retry_seconds),
            lock_seconds=settings.webhook_lock_seconds,
            endpoint_concurrency=settings.webhook_endpoint_concurrency,
            max_in_flight=settings.webhook_max_in_flight,
            disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
            retention=timedelta(days=settings.webhook_retention_days),
        ),
    )
    return service, deliverer


def install_sms_breaker(mfa: MfaService, store: BreakerStore, metrics: Metrics) -> SmsBreakerService:
    """The SMS pumping breaker: asked by every SMS challenge, told of every SMS verification; reads the
    client's settings through the challenge path's cache."""
    breaker = SmsBreakerService(
        store=store,
        metrics=metrics,
        config_of=lambda session, client_id: mfa._client_config(session, client_id)[1].sms_breaker,
    )
    mfa.breaker = breaker
    mfa.listeners.append(breaker.on_mfa_status)
    return breaker


def install_webhooks(registry: Registry) -> None:
    """Webhooks: the outbox listeners on status changes and decisions, and the delivery job every worker
    runs (`passgate serve` and `passgate worker` alike)."""
    service, deliverer = registry.webhooks, registry.webhook_deliverer
    registry.mfa.listeners.append(service.on_mfa_status)
    registry.decisions.listeners.append(service.on_decision)
    if registry.mfa.breaker is not None:
        registry.mfa.breaker.listeners.append(service.on_breaker_transition)
    registry.worker_jobs.append(deliverer.run_once)
    registry.notifier.callbacks.append(deliverer.wake)  # new events are claimed as soon as they commit

    async def _stop_deliveries(_app: Any) -> None:
        await deliverer.aclose()

    registry.shutdown.append(_stop_deliveries)
