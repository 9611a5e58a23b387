"""The application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from passgate import __version__
from passgate.api import (
    auth,
    decisions,
    dev,
    errors,
    events,
    links,
    manage_accounts,
    manage_audit,
    manage_branding,
    manage_destinations,
    manage_keys,
    manage_lists,
    manage_policy,
    manage_sessions,
    manage_settings,
    manage_templates,
    manage_webhooks,
    mfa,
    ops,
    providers,
    verify,
)
from passgate.api import bounces as bounce_reports
from passgate.api import docs as api_reference
from passgate.api import idempotency as api_idempotency
from passgate.api import openapi as api_document
from passgate.api.middleware import RequestContextMiddleware
from passgate.bootstrap import Registry, build_registry
from passgate.config import Settings
from passgate.worker import Worker, WorkerThread

DESCRIPTION = """
Passgate decides whether a login or a new account opening is **allowed**, **challenged** or
**blocked**, and on a challenge proves that the person controls the email address or phone number given.

The API follows the Kount 360 Account Protection APIs: get a token at `POST /oauth2/token` with your
client id and API key (HTTP Basic), then call `POST /login/v2` or `POST /newaccountopening/v2` with
`Authorization: Bearer …`.
Errors are RFC 9457 problem documents whose `errors[].field` names each bad field.
"""


def create_app_in_worker_process() -> FastAPI:
    """The app of one API process of `passgate serve --workers N` (uvicorn calls it in each process it
    starts): the settings from the environment the parent checked, its logging and garbage-collector
    settings, the migrations already applied by the parent."""
    from passgate.config import load_settings
    from passgate.observability import configure_logging
    from passgate.runtime import tune_gc

    settings = load_settings()
    configure_logging(settings.log_level)
    tune_gc()
    return create_app(settings)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    settings = settings or (registry.settings if registry else Settings())
    owned = registry is None
    reg = registry or build_registry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_task = None
        reg.committer.start()
        # "process": `passgate serve` runs them in a child process (passgate.supervisor), not here.
        if reg.settings.workers_in_process == "thread":
            worker = Worker(reg)
            reg.notifier.callbacks.append(worker.wake)
            worker_task = WorkerThread(worker)
            worker_task.start()
            app.state.worker = worker
        for hook in reg.startup:
            await hook(app)
        try:
            yield
        finally:
            if worker_task is not None:
                await asyncio.to_thread(worker_task.stop)
            reg.committer.stop()
            for hook in reversed(reg.shutdown):
                await hook(app)
            if owned:
                reg.close()

    app = FastAPI(
        title="Passgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs is Passgate's own page with Swagger UI's files served from here (passgate.api.docs).
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = reg
    errors.install(app)
    # Routes are matched in order: the decision endpoints, the busiest by far, come first.
    decisions.install(app)
    for module in (
        auth,
        mfa,
        verify,
        links,
        providers,
        bounce_reports,
        dev,
        manage_policy,
        manage_keys,
        manage_settings,
        manage_branding,
        manage_templates,
        manage_lists,
        manage_audit,
        manage_webhooks,
        manage_destinations,
        manage_sessions,
        manage_accounts,
        events,
        ops,
    ):
        app.include_router(module.router)
    verify.install(app)
    # The web console (pages under /console, its static files): docs/console.md.
    from passgate.console.routes import install as install_console

    install_console(app)
    api_document.install(app)
    api_reference.install(app)
    # Inside the request context (correlation id, checked body): Idempotency-Key on management POSTs.
    api_idempotency.install(app)
    app.add_middleware(RequestContextMiddleware, metrics=reg.metrics)
    return app
