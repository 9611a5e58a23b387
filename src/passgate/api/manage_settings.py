"""/manage/v1/settings: per-client MFA settings (TTLs, lengths, attempts, sends, SMS countries)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.auth.settings import SettingsBody, settings_view, update_settings
from passgate.db import transaction

router = APIRouter(prefix="/manage/v1/settings", tags=["settings"])


@router.get("", summary="Effective MFA settings (defaults filled in)")
async def get_settings(registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return settings_view(session, auth.client_id)

    return JSONResponse(await run_in_threadpool(run))


@router.put("", summary="Change MFA settings; omitted or null fields return to the defaults")
async def put_settings(body: SettingsBody, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            update_settings(session, auth.client_id, body, registry.clock.now())
            return settings_view(session, auth.client_id)

    view = await run_in_threadpool(run)
    registry.mfa.forget_config(auth.client_id)  # after the commit: a challenge in between read the old
    return JSONResponse(view)
