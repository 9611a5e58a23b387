"""/manage/v1/policy-sets/{eventType}: the draft, publish, and the active version."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.db import transaction
from passgate.policy import services
from passgate.policy.models import PolicySetVersion
from passgate.policy.schemas import PolicySetDocument, default_document

router = APIRouter(prefix="/manage/v1/policy-sets", tags=["policy sets"])


class EventTypeParam(StrEnum):
    LOGIN = "LOGIN"
    NEW_ACCOUNT_OPENING = "NEW_ACCOUNT_OPENING"


def _version_out(v: PolicySetVersion) -> dict[str, Any]:
    return {
        "eventType": v.event_type,
        "versionName": v.version_name,
        "createdAt": v.created_at.isoformat(),
        "createdBy": v.created_by,
        "document": v.document,
    }


_DRAFT_EXAMPLE = default_document("LOGIN")
_DRAFT_EXAMPLE["policies"].append(
    {
        "name": "block-risky-tier",
        "conditions": [{"field": "customFields.riskTier", "operator": "equals", "value": "red"}],
        "outcome": "BLOCK",
        "tags": [{"name": "RISK_TIER_RED", "weight": 50}],
    }
)
_DRAFT_EXAMPLE["segments"][0]["policies"].append("block-risky-tier")


@router.get("/{eventType}", summary="The active (published) version")
async def get_active(eventType: EventTypeParam, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return _version_out(services.get_active_version(session, auth.client_id, eventType.value))

    return JSONResponse(await run_in_threadpool(run))


@router.get("/{eventType}/draft", summary="The editable draft")
async def get_draft(eventType: EventTypeParam, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            ps = services.get_draft(session, auth.client_id, eventType.value)
            return {
                "eventType": ps.event_type,
                "updatedAt": ps.draft_updated_at.isoformat(),
                "document": ps.draft,
            }

    return JSONResponse(await run_in_threadpool(run))


@router.put(
    "/{eventType}/draft",
    summary="Replace the draft (validated and compiled, not yet live)",
    responses={422: {"description": "the set does not compile; `errors[].field` names the part"}},
)
async def put_draft(
    eventType: EventTypeParam,
    registry: RegistryDep,
    auth: AdminAuth,
    document: PolicySetDocument = Body(openapi_examples={"default-plus-block": {"value": _DRAFT_EXAMPLE}}),
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            ps = services.put_draft(session, auth.client_id, eventType.value, document, registry.clock.now())
            return {
                "eventType": ps.event_type,
                "updatedAt": ps.draft_updated_at.isoformat(),
                "document": ps.draft,
            }

    return JSONResponse(await run_in_threadpool(run))


@router.post("/{eventType}/publish", summary="Publish the draft as a new immutable version", status_code=201)
async def publish(eventType: EventTypeParam, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            v = services.publish(
                session, auth.client_id, eventType.value, f"apikey:{auth.key_id}", registry.clock.now()
            )
            return _version_out(v)

    return JSONResponse(await run_in_threadpool(run), status_code=201)
