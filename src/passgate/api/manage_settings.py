"""/manage/v1/settings: per-client MFA settings (TTLs, lengths, attempts, sends, SMS countries) and
retention periods (`retention`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.auth.settings import settings_view, update_settings
from passgate.bootstrap import Registry
from passgate.db import Session, transaction
from passgate.retention.services import (
    SettingsWithRetention,
    configured_defaults,
    retention_view,
    update_retention,
)

router = APIRouter(prefix="/manage/v1/settings", tags=["settings"])


def _view(session: Session, registry: Registry, client_id: str) -> dict[str, Any]:
    retention = retention_view(session, client_id, configured_defaults(registry.settings))
    return settings_view(session, client_id) | {"retention": retention}


@router.get("", summary="Effective MFA settings (defaults filled in)")
async def get_settings(registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return _view(session, registry, auth.client_id)

    return JSONResponse(await run_in_threadpool(run))


@router.put("", summary="Change MFA settings; omitted or null fields return to the defaults")
async def put_settings(body: SettingsWithRetention, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            now = registry.clock.now()
            update_settings(session, auth.client_id, body, now)
            update_retention(session, auth.client_id, body.retention, now)
            return _view(session, registry, auth.client_id)

    view = await run_in_threadpool(run)
    registry.mfa.forget_config(auth.client_id)  # after the commit: a challenge in between read the old
    return JSONResponse(view)
