"""Signals from the business: failed logins, outcomes of its own MFA, and trusted/banned devices."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import IntegrationAuth, RegistryDep
from passgate.api.errors import ApiProblem
from passgate.db import transaction
from passgate.policy.decisions import device_id
from passgate.policy.fields import dimension_keys
from passgate.policy.models import Device
from passgate.policy.queries import decision_of, device, devices_of, forget_device, set_device_trust
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
    friendlyName: StrictStr | None = Field(
        default=None, max_length=256, description="your name for the device, shown back as given"
    )


KOUNT_TRUST_EXAMPLE: dict[str, Any] = {
    "clientId": "cl_5d1e0b7a",
    "sessionId": "d121ea2210434ffc8a90daff9cc97e76",
    "userId": "meoyyd8za8jdmwfm",
    "trustState": "trusted",
    "friendlyName": "Jane's phone",
}


class KountTrustBody(BaseModel):
    """Kount 360's spelling of POST /trusted-device: `sessionId` is the deviceSessionId, `userId` the
    account id, and `clientId` must be the token's own client."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [KOUNT_TRUST_EXAMPLE]})

    clientId: StrictStr = Field(min_length=1, max_length=64, description="must be the token's client id")
    sessionId: StrictStr = Field(pattern=DSID, description="the device session id")
    userId: StrictStr = Field(min_length=1, max_length=256, description="the account id")
    trustState: StrictStr = Field(
        # Spelled out letter by letter so the schema's pattern means the same in every regex dialect.
        pattern=r"^([Tt][Rr][Uu][Ss][Tt][Ee][Dd]|[Bb][Aa][Nn][Nn][Ee][Dd])$",
        description="`trusted` or `banned`, in either case",
    )
    friendlyName: StrictStr | None = Field(
        default=None, max_length=256, description="your name for the device, shown back as given"
    )

    @field_validator("trustState")
    @classmethod
    def _state(cls, v: str) -> str:
        return v.upper()


KOUNT_RECORD_EXAMPLE: dict[str, Any] = {
    **KOUNT_TRUST_EXAMPLE,
    "deviceId": "7363b8ae6b2247b99f5d56fc81102254",
    "createdAt": "2026-12-07T09:00:00Z",
    "lastUpdated": "2026-12-07T09:05:00Z",
}
_RECORD: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": KOUNT_RECORD_EXAMPLE}}}
}
_RECORDS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": {"devices": [KOUNT_RECORD_EXAMPLE]}}}}
}

# A body with any of these is in Kount's spelling; one without, in Passgate's.
_KOUNT_KEYS = ("clientId", "sessionId", "userId")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _device_view(client_id: str, account_id: str, dsid: str, row: Device | None) -> dict[str, Any]:
    return {
        "accountId": account_id,
        "deviceSessionId": dsid,
        "trustState": row.trust_state if row else None,
        "seen": bool(row and row.seen),
        "firstSeenAt": _iso(row.first_seen_at) if row else None,
        "lastSeenAt": _iso(row.last_seen_at) if row else None,
        "friendlyName": row.friendly_name if row else None,
    }


def _kount_device_view(client_id: str, row: Device) -> dict[str, Any]:
    """A trust record as Kount 360 answers it (`trustState` spelled as Kount's requests spell it)."""
    return {
        "clientId": client_id,
        "sessionId": row.device_session_id,
        "userId": row.account_id,
        "trustState": row.trust_state.lower() if row.trust_state else None,
        "friendlyName": row.friendly_name,
        "deviceId": device_id(client_id, row.device_session_id),
        "createdAt": _iso(row.trust_created_at or row.first_seen_at),
        "lastUpdated": _iso(row.trust_updated_at or row.last_seen_at),
    }


def _same_client(auth_client_id: str, client_id: str) -> None:
    # A body or path may name a client; it must be the token's own, never another tenant's.
    if client_id != auth_client_id:
        raise ApiProblem(
            403,
            "Forbidden",
            "clientId is not the client this token was issued to",
            slug="forbidden",
            errors=[{"field": "clientId", "message": "must be the token's own client id"}],
        )


async def _trust_body(request: Request) -> TrustBody | KountTrustBody:
    """The body in whichever spelling it comes: Kount's when it has clientId, sessionId or userId."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "the body must be a JSON object"}]
        ) from None
    model: type[TrustBody] | type[KountTrustBody] = TrustBody
    if isinstance(data, dict) and any(k in data for k in _KOUNT_KEYS):
        model = KountTrustBody
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from None


_TRUST_BODY_SPEC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        TrustBody.model_json_schema(ref_template="#/components/schemas/{model}"),
                        KountTrustBody.model_json_schema(ref_template="#/components/schemas/{model}"),
                    ]
                },
                "examples": {
                    "passgate": {
                        "summary": "Passgate's spelling",
                        "value": {
                            "accountId": "acct-1001",
                            "deviceSessionId": "ds0001abc",
                            "trustState": "TRUSTED",
                        },
                    },
                    "kount": {"summary": "Kount 360's spelling", "value": KOUNT_TRUST_EXAMPLE},
                },
            }
        },
    }
}


@router.post(
    "/trusted-device",
    summary="Mark a device TRUSTED or BANNED for an account (Passgate's or Kount 360's body)",
    description=(
        "Passgate's body `{accountId, deviceSessionId, trustState: TRUSTED|BANNED}` answers the device view; "
        "Kount 360's body `{clientId, sessionId, userId, trustState: trusted|banned, friendlyName}` answers "
        "Kount's trust record `{clientId, sessionId, userId, trustState, friendlyName, deviceId, createdAt, "
        "lastUpdated}`. A `clientId` other than the token's own client is refused with 403."
    ),
    openapi_extra=_TRUST_BODY_SPEC,
    responses={
        200: {
            "content": {
                "application/json": {
                    "examples": {
                        "kount": {"summary": "to Kount 360's body", "value": KOUNT_RECORD_EXAMPLE},
                        "passgate": {
                            "summary": "to Passgate's body",
                            "value": {
                                "accountId": "acct-1001",
                                "deviceSessionId": "ds0001abc",
                                "trustState": "TRUSTED",
                                "seen": True,
                                "firstSeenAt": "2026-12-07T09:00:00Z",
                                "lastSeenAt": "2026-12-07T09:00:00Z",
                                "friendlyName": None,
                            },
                        },
                    }
                }
            }
        },
        403: {"description": "`clientId` is not the token's client (`errors[].field` is `clientId`)"},
    },
)
async def set_trust(request: Request, registry: RegistryDep, auth: IntegrationAuth) -> JSONResponse:
    body = await _trust_body(request)
    if isinstance(body, KountTrustBody):
        _same_client(auth.client_id, body.clientId)
        account_id, dsid = body.userId, body.sessionId
    else:
        account_id, dsid = body.accountId, body.deviceSessionId

    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            set_device_trust(
                session,
                auth.client_id,
                account_id,
                dsid,
                body.trustState,
                registry.clock.now(),
                body.friendlyName,
            )
            row = device(session, auth.client_id, account_id, dsid)
            if isinstance(body, KountTrustBody) and row is not None:
                return _kount_device_view(auth.client_id, row)
            return _device_view(auth.client_id, account_id, dsid, row)

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


_KOUNT_PATH = "/trusted-device/sessions/{sessionId}/users/{userId}/clients/{clientId}"
_NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {"description": "`clientId` is not the token's client (`errors[].field` is `clientId`)"}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no trust record for this device and user"}
}
SessionIdPath = Annotated[str, Path(pattern=DSID, description="the device session id")]
UserIdPath = Annotated[str, Path(min_length=1, max_length=256, description="the account id")]
ClientIdPath = Annotated[str, Path(min_length=1, max_length=64, description="the token's own client id")]


@router.get(
    _KOUNT_PATH,
    summary="Kount 360's form: the trust record of a device for a user",
    responses={**_RECORD, **_NOT_YOURS, **_NOT_FOUND},
)
async def kount_get_trust(
    sessionId: SessionIdPath,
    userId: UserIdPath,
    clientId: ClientIdPath,
    registry: RegistryDep,
    auth: IntegrationAuth,
) -> JSONResponse:
    _same_client(auth.client_id, clientId)

    def run() -> dict[str, Any] | None:
        with transaction(registry.sessions) as session:
            row = device(session, auth.client_id, userId, sessionId)
            return _kount_device_view(auth.client_id, row) if row is not None and row.trust_state else None

    out = await run_in_threadpool(run)
    if out is None:
        raise ApiProblem(404, "Not found", "no trust record for this device and user", slug="not-found")
    return JSONResponse(out)


@router.get(
    "/trusted-device/users/{userId}/clients/{clientId}",
    summary="Kount 360's form: every device with a trust record for a user",
    responses={**_RECORDS, **_NOT_YOURS},
)
async def kount_devices_of_user(
    userId: UserIdPath, clientId: ClientIdPath, registry: RegistryDep, auth: IntegrationAuth
) -> JSONResponse:
    _same_client(auth.client_id, clientId)
    return JSONResponse({"devices": await _kount_records(registry, auth.client_id, account_id=userId)})


@router.get(
    "/trusted-device/sessions/{sessionId}/clients/{clientId}",
    summary="Kount 360's form: every user with a trust record for a device",
    responses={**_RECORDS, **_NOT_YOURS},
)
async def kount_users_of_device(
    sessionId: SessionIdPath, clientId: ClientIdPath, registry: RegistryDep, auth: IntegrationAuth
) -> JSONResponse:
    _same_client(auth.client_id, clientId)
    return JSONResponse(
        {"devices": await _kount_records(registry, auth.client_id, device_session_id=sessionId)}
    )


async def _kount_records(registry: Any, client_id: str, **where: str) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        with transaction(registry.sessions) as session:
            rows = devices_of(session, client_id, **where)
            return [_kount_device_view(client_id, r) for r in rows if r.trust_state]

    return await run_in_threadpool(run)


@router.delete(
    _KOUNT_PATH,
    status_code=204,
    summary="Kount 360's form: delete the trust record of a device for a user",
    responses={**_NOT_YOURS, **_NOT_FOUND},
)
async def kount_forget(
    sessionId: SessionIdPath,
    userId: UserIdPath,
    clientId: ClientIdPath,
    registry: RegistryDep,
    auth: IntegrationAuth,
) -> Response:
    _same_client(auth.client_id, clientId)
    return await _forget(registry, auth.client_id, userId, sessionId)


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
