"""/manage/v1/api-keys: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.auth import services
from passgate.auth.models import ApiKey
from passgate.db import transaction

router = APIRouter(prefix="/manage/v1/api-keys", tags=["api keys"])


class CreateKey(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "checkout", "scopes": []}]}
    )

    name: str | None = Field(default=None, max_length=200)
    scopes: list[Literal["admin"]] = Field(default_factory=list, max_length=1)


def key_out(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes.split(),
        "createdAt": k.created_at.isoformat(),
        "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None,
        "lastUsedAt": k.last_used_at.isoformat() if k.last_used_at else None,
        "active": k.revoked_at is None,
    }


@router.get("", summary="List API keys (never their secrets)")
async def list_keys(registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> list[dict[str, Any]]:
        with transaction(registry.sessions) as session:
            return [key_out(k) for k in services.list_api_keys(session, auth.client_id)]

    return JSONResponse({"items": await run_in_threadpool(run)})


@router.post(
    "",
    status_code=201,
    summary="Create an API key; the secret is in this answer only",
    responses={409: {"description": "two keys are already active"}},
)
async def create_key(body: CreateKey, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            created = services.create_api_key(
                session, auth.client_id, list(body.scopes), registry.clock.now(), name=body.name
            )
            return {**key_out(created.key), "apiKey": created.secret, "clientId": auth.client_id}

    return JSONResponse(await run_in_threadpool(run), status_code=201, headers={"Cache-Control": "no-store"})


@router.delete("/{key_id}", summary="Revoke a key; tokens issued with it stop working within seconds")
async def revoke_key(key_id: str, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return key_out(services.revoke_api_key(session, auth.client_id, key_id, registry.clock.now()))

    out = await run_in_threadpool(run)
    registry.key_status.forget(key_id)
    return JSONResponse(out)
