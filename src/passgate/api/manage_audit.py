"""/manage/v1/audit-log: every change made to a client's configuration, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.api.inputs import INT32_MAX
from passgate.audit.services import entries
from passgate.db import transaction

router = APIRouter(prefix="/manage/v1/audit-log", tags=["audit log"])


@router.get("", summary="Audit log entries, newest first (page with `before`)")
async def audit_log(
    registry: RegistryDep,
    auth: AdminAuth,
    limit: int = Query(default=100, ge=1, le=500),
    before: int | None = Query(
        default=None, ge=1, le=INT32_MAX, description="the id of the oldest entry of the previous page"
    ),
) -> JSONResponse:
    def run() -> list[dict[str, Any]]:
        with transaction(registry.sessions) as session:
            return entries(session, auth.client_id, limit, before)

    return JSONResponse({"items": await run_in_threadpool(run)})
