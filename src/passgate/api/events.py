"""Signals from the business: failed logins, outcomes of its own MFA, and trusted/banned devices."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import IntegrationAuth, RegistryDep
from passgate.api.errors import ApiProblem
from passgate.db import transaction
from passgate.policy.fields import dimension_keys
from passgate.policy.models import Device
from passgate.policy.queries import decision_of, device, forget_device, set_device_trust
from passgate.policy.requests import LoginRequest

router = APIRouter(tags=["events and devices"])
DSID = r"^[A-Za-z0-9_-]{1,32}$"


@router.post(
    "/events/failed-attempt",
    status_code=202,
    summary="A failed login (wrong password…): counts toward failedAttempts velocities",
)
async def failed_attempt(body: LoginRequest, registry: RegistryDep, auth: IntegrationAuth) -> JSONResponse:
    payload = body.model_dump(mode="json", exclude_none=True)

    def run() -> None:
        with transaction(registry.sessions) as session:
            registry.signals.velocity.record(
                session, auth.client_id, ["failedAttempts"], dimension_keys(payload), registry.clock.now()
            )

    await run_in_threadpool(run)
    return JSONResponse({"status": "RECORDED", "inquiryId": body.inquiryId}, status_code=202)


class ChallengeOutcome(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "inquiryId": "inq0001",
                    "deviceSessionId": "ds0001abc",
                    "decisionCorrelationId": "5f0c1e2a-2a4d-4e5f-8a9b-0c1d2e3f4a5b",
                    "challengeType": "OTP",
                    "challengeStatus": "Success",
                    "sentTimestamp": "2026-11-29T10:00:00Z",
                    "completedTimestamp": "2026-11-29T10:00:40Z",
                }
            ]
        },
    )

    inquiryId: StrictStr = Field(min_length=1, max_length=256, pattern=r"^[^-]+$")
    deviceSessionId: StrictStr = Field(pattern=DSID)
    decisionCorrelationId: StrictStr = Field(min_length=1, max_length=64)
    challengeType: StrictStr = Field(max_length=64)
    challengeStatus: Literal["Success", "Failed"]
    sentTimestamp: datetime | None = None
    completedTimestamp: datetime | None = None
    failureType: StrictStr | None = Field(default=None, max_length=64)


@router.post(
    "/events/challenge-outcome",
    status_code=202,
    summary="The outcome of a challenge you ran yourself: Success trusts the device",
)
async def challenge_outcome(
    body: ChallengeOutcome, registry: RegistryDep, auth: IntegrationAuth
) -> JSONResponse:
    def run() -> None:
        now = registry.clock.now()
        with transaction(registry.sessions) as session:
            decision = decision_of(session, auth.client_id, body.decisionCorrelationId)
            if decision is None:
                raise ApiProblem(
                    404,
                    "Not found",
                    "no decision with that correlation id",
                    slug="not-found",
                    errors=[{"field": "decisionCorrelationId", "message": "unknown decision"}],
                )
            if body.challengeStatus == "Success":
                if decision.account_id:
                    set_device_trust(
                        session, auth.client_id, decision.account_id, body.deviceSessionId, "TRUSTED", now
                    )
            else:
                registry.signals.velocity.record(
                    session, auth.client_id, ["failedAttempts"], dimension_keys(decision.request), now
                )

    await run_in_threadpool(run)
    return JSONResponse({"status": "RECORDED"}, status_code=202)


class TrustBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"accountId": "acct-1001", "deviceSessionId": "ds0001abc", "trustState": "BANNED"}]
        },
    )

    accountId: StrictStr = Field(min_length=1, max_length=256)
    deviceSessionId: StrictStr = Field(pattern=DSID)
    trustState: Literal["TRUSTED", "BANNED"]


def _device_view(client_id: str, account_id: str, dsid: str, row: Device | None) -> dict[str, Any]:
    return {
        "accountId": account_id,
        "deviceSessionId": dsid,
        "trustState": row.trust_state if row else None,
        "seen": bool(row and row.seen),
        "firstSeenAt": row.first_seen_at.isoformat().replace("+00:00", "Z") if row else None,
        "lastSeenAt": row.last_seen_at.isoformat().replace("+00:00", "Z") if row else None,
    }


@router.post("/trusted-device", summary="Mark a device TRUSTED or BANNED for an account")
async def set_trust(body: TrustBody, registry: RegistryDep, auth: IntegrationAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            set_device_trust(
                session,
                auth.client_id,
                body.accountId,
                body.deviceSessionId,
                body.trustState,
                registry.clock.now(),
            )
            row = device(session, auth.client_id, body.accountId, body.deviceSessionId)
            return _device_view(auth.client_id, body.accountId, body.deviceSessionId, row)

    return JSONResponse(await run_in_threadpool(run))


@router.get("/trusted-device", summary="A device's trust state for an account")
async def get_trust(
    registry: RegistryDep,
    auth: IntegrationAuth,
    accountId: str = Query(min_length=1, max_length=256),
    deviceSessionId: str = Query(pattern=DSID),
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            row = device(session, auth.client_id, accountId, deviceSessionId)
            return _device_view(auth.client_id, accountId, deviceSessionId, row)

    return JSONResponse(await run_in_threadpool(run))


async def _forget(registry: Any, client_id: str, account_id: str, dsid: str) -> Response:
    def run() -> bool:
        with transaction(registry.sessions) as session:
            return forget_device(session, client_id, account_id, dsid)

    if not await run_in_threadpool(run):
        raise ApiProblem(404, "Not found", "this device is not known for this account", slug="not-found")
    return Response(status_code=204)


@router.delete(
    "/trusted-device/{accountId}/{deviceSessionId}",
    status_code=204,
    summary="Forget a device: it is new again for the account",
)
async def forget_path(
    accountId: str, deviceSessionId: str, registry: RegistryDep, auth: IntegrationAuth
) -> Response:
    return await _forget(registry, auth.client_id, accountId, deviceSessionId)


@router.delete("/trusted-device", status_code=204, summary="Forget a device (query form)")
async def forget_query(
    registry: RegistryDep,
    auth: IntegrationAuth,
    accountId: str = Query(min_length=1, max_length=256),
    deviceSessionId: str = Query(pattern=DSID),
) -> Response:
    return await _forget(registry, auth.client_id, accountId, deviceSessionId)
