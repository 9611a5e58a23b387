"""/manage/v1/policy-sets/{eventType}: the draft, publish, and the active version."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, Principal, RegistryDep
from passgate.api.errors import ApiProblem
from passgate.db import transaction
from passgate.policy import services
from passgate.policy.models import PolicySet, PolicySetVersion
from passgate.policy.requests import AccountOpeningRequest, LoginRequest
from passgate.policy.schemas import PolicySetDocument, default_document
from passgate.policy.simulation import simulate as simulate_request
from passgate.problems import validation_errors

router = APIRouter(prefix="/manage/v1/policy-sets", tags=["policy sets"])


class EventTypeParam(StrEnum):
    LOGIN = "LOGIN"
    NEW_ACCOUNT_OPENING = "NEW_ACCOUNT_OPENING"


def _actor(auth: Principal) -> str:
    return f"apikey:{auth.key_id}"


def _version_out(v: PolicySetVersion, with_document: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "eventType": v.event_type,
        "versionName": v.version_name,
        "createdAt": v.created_at.isoformat().replace("+00:00", "Z"),
        "createdBy": v.created_by,
        "restoredFrom": v.restored_from,
    }
    if with_document:
        out["document"] = v.document
    return out


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


def _draft_out(ps: PolicySet) -> dict[str, Any]:
    return {
        "eventType": ps.event_type,
        "updatedAt": ps.draft_updated_at.isoformat(),
        "document": ps.draft,
        "warnings": services.unapplied_policies(ps.draft),
    }


def _published_out(p: services.Publication) -> JSONResponse:
    out = {**_version_out(p.version), "published": p.new}
    if not p.new:
        out["detail"] = f"identical to the live version {p.version.version_name}: no new version"
    return JSONResponse(out, status_code=201 if p.new else 200)


_PUBLISHED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "nothing published: the document is the live version's already (`published: false`)"
    },
    201: {"description": "a new version, now live (`published: true`)"},
}


@router.get("/{eventType}/draft", summary="The editable draft, with warnings (policies no segment applies)")
async def get_draft(eventType: EventTypeParam, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return _draft_out(services.get_draft(session, auth.client_id, eventType.value))

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
            ps = services.put_draft(
                session, auth.client_id, eventType.value, document, registry.clock.now(), author=_actor(auth)
            )
            return _draft_out(ps)

    return JSONResponse(await run_in_threadpool(run))


@router.post(
    "/{eventType}/publish",
    summary="Publish the draft as a new immutable version (none when it is the live version already)",
    status_code=201,
    responses={
        **_PUBLISHED,
        422: {"description": "the draft does not compile; `errors[].field` names the part"},
    },
)
async def publish(eventType: EventTypeParam, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> services.Publication:
        with transaction(registry.sessions) as session:
            return services.publish(
                session, auth.client_id, eventType.value, _actor(auth), registry.clock.now()
            )

    published = await run_in_threadpool(run)
    registry.policy_cache.forget_active(auth.client_id, eventType.value)
    return _published_out(published)


@router.get("/{eventType}/versions", summary="Every published version, newest first")
async def versions(eventType: EventTypeParam, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            ps, rows = services.list_versions(session, auth.client_id, eventType.value)
            return {
                "eventType": eventType.value,
                "activeVersion": next((v.version_name for v in rows if v.id == ps.active_version_id), None),
                "items": [_version_out(v, with_document=False) for v in rows],
            }

    return JSONResponse(await run_in_threadpool(run))


@router.get("/{eventType}/versions/{versionName}", summary="One published version (immutable)")
async def version(
    eventType: EventTypeParam, versionName: str, registry: RegistryDep, auth: AdminAuth
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return _version_out(services.get_version(session, auth.client_id, eventType.value, versionName))

    return JSONResponse(await run_in_threadpool(run))


@router.post(
    "/{eventType}/versions/{versionName}/restore",
    status_code=201,
    summary="Make an old version live again, as a new version; the draft is left as it was",
    responses=_PUBLISHED,
)
async def restore(
    eventType: EventTypeParam, versionName: str, registry: RegistryDep, auth: AdminAuth
) -> JSONResponse:
    def run() -> services.Publication:
        with transaction(registry.sessions) as session:
            return services.restore(
                session, auth.client_id, eventType.value, versionName, _actor(auth), registry.clock.now()
            )

    published = await run_in_threadpool(run)
    registry.policy_cache.forget_active(auth.client_id, eventType.value)
    return _published_out(published)


@router.get("/{eventType}/diff", summary="What changed between two versions (or a version and the draft)")
async def diff(
    eventType: EventTypeParam,
    registry: RegistryDep,
    auth: AdminAuth,
    from_: str = Query(alias="from", description="a version name such as v3, or `draft`", examples=["v1"]),
    to: str = Query(description="a version name or `draft`", examples=["draft"]),
) -> JSONResponse:
    def doc(session: Any, name: str) -> dict[str, Any]:
        if name == "draft":
            return dict(services.get_draft(session, auth.client_id, eventType.value).draft)
        return dict(services.get_version(session, auth.client_id, eventType.value, name).document)

    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return {
                "from": from_,
                "to": to,
                "changes": services.diff_documents(doc(session, from_), doc(session, to)),
            }

    return JSONResponse(await run_in_threadpool(run))


class SimulateBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "version": "draft",
                    "request": {
                        "inquiryId": "sim1",
                        "deviceSessionId": "dev1",
                        "userIp": "203.0.113.7",
                        "person": {"emailAddress": "jo@mailinator.com"},
                        "account": {"id": "acct-1", "username": "jo"},
                        "customFields": {"riskTier": "red"},
                    },
                }
            ]
        },
    )

    request: dict[str, Any] = Field(description="a /login/v2 or /newaccountopening/v2 body")
    version: str = Field(default="draft", max_length=32, description="`draft` or a version name such as v3")


@router.post(
    "/{eventType}/simulate",
    summary="Evaluate a request against the draft or a version and explain it; nothing is stored",
)
async def simulate(
    eventType: EventTypeParam, body: SimulateBody, registry: RegistryDep, auth: AdminAuth
) -> JSONResponse:
    model = LoginRequest if eventType.value == "LOGIN" else AccountOpeningRequest
    try:
        request_body = model.model_validate(body.request).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        errors = [
            {"field": f"request.{e['field']}" if e["field"] != "body" else "request", "message": e["message"]}
            for e in validation_errors([{**err, "loc": ("body", *err["loc"])} for err in exc.errors()])
        ]
        raise ApiProblem(
            400, "Invalid request", "the simulated request is not valid", errors=errors, slug="validation"
        ) from None

    def run() -> dict[str, Any]:
        found = simulate_request(
            registry.sessions,
            registry.policy_cache,
            registry.signals,
            auth.client_id,
            eventType.value,
            request_body,
            body.version,
            registry.clock.now(),
        )
        return {
            "version": found.version,
            "set": found.set_name,
            **found.explanation,
            "signals": found.signals,
        }

    return JSONResponse(await run_in_threadpool(run))
