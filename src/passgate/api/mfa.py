"""MFA / verification sessions: read, verify a code, resend, cancel, timeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import IntegrationAuth, RegistryDep
from passgate.api.responses import CompactJSONResponse
from passgate.api.views import attempt_view, timeline_view
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.mfa.views import session_view

router = APIRouter(tags=["mfa sessions"])

SESSION_EXAMPLE = {
    "ID": "0b6f3c1e-2a4d-4e5f-8a9b-0c1d2e3f4a5b",
    "type": "OTP",
    "channel": "SMS",
    "status": "MESSAGE_SENT",
    "expiresAt": "2026-11-29T10:10:00Z",
    "sendAttempts": 1,
    "verificationAttempts": 0,
    "error": None,
    "eventType": "LOGIN",
    "templateName": "sms-code",
    "locale": "en",
    "destination": "+12•••••••23",
    "deliveryStatus": "SENT",
    "terminationReason": None,
    "remainingAttempts": 5,
    "maxSends": 3,
}


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "123456"}]})

    code: StrictStr = Field(min_length=1, max_length=32)


class ResendBody(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"sessionId": "0b6f3c1e-2a4d-4e5f-8a9b-0c1d2e3f4a5b"}]},
    )

    sessionId: StrictStr = Field(min_length=1, max_length=64, description="mfa.ID or verification.ID")


def _run(registry: Registry, fn: Any) -> Any:
    with transaction(registry.sessions) as session:
        return fn(session)


@router.get(
    "/mfa/v2/{session_id}",
    summary="Status, type, channel, masked destination, counters and timestamps",
    responses={200: {"content": {"application/json": {"example": SESSION_EXAMPLE}}}},
)
async def get_session(session_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    def fn(session: Any) -> dict[str, Any]:
        return session_view(registry.mfa.get(session, auth.client_id, session_id))

    return CompactJSONResponse(await run_in_threadpool(_run, registry, fn))


@router.post(
    "/mfa/v2/{session_id}/verify",
    summary="Check a one-time passcode (OTP sessions)",
    responses={
        200: {
            "content": {
                "application/json": {
                    "examples": {
                        "verified": {"value": {"status": "VERIFIED"}},
                        "wrong": {"value": {"status": "VERIFICATION_ATTEMPT_FAILED", "remainingAttempts": 4}},
                        "used up": {
                            "value": {
                                "status": "TERMINATED",
                                "terminationReason": "MAX_ATTEMPTS",
                                "remainingAttempts": 0,
                            }
                        },
                    }
                }
            }
        },
        409: {"description": "the session is already in a terminal status"},
        429: {"description": "too many consecutive failures for this person; see Retry-After"},
    },
)
async def verify(
    session_id: str, body: VerifyBody, registry: RegistryDep, auth: IntegrationAuth
) -> CompactJSONResponse:
    # In the group commit, like decisions: on SQLite a verify from a thread of its own would queue with
    # them on the write lock (and sleep in SQLite's busy handler); many verifies share one commit.
    result = await registry.committer.run(
        lambda s: registry.mfa.verify_code(s, auth.client_id, session_id, body.code)
    )
    registry.metrics.status_changes.labels(result.status).inc()
    return CompactJSONResponse(attempt_view(result))


async def _resend(registry: Registry, client_id: str, session_id: str) -> CompactJSONResponse:
    row = await run_in_threadpool(_run, registry, lambda s: registry.mfa.resend(s, client_id, session_id))
    return CompactJSONResponse(session_view(row))


@router.post(
    "/mfa/v2/{session_id}/resend",
    summary="Send a new code or link; the last three issued stay valid",
    responses={429: {"description": "all sends used, or too many messages to this destination"}},
)
async def resend(session_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    return await _resend(registry, auth.client_id, session_id)


@router.post("/resend", summary="Resend (the Kount form, with the session id in the body)")
async def resend_kount(body: ResendBody, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    return await _resend(registry, auth.client_id, body.sessionId)


@router.post("/mfa/v2/{session_id}/cancel", summary="Cancel: the session becomes TERMINATED")
async def cancel(session_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    row = await run_in_threadpool(
        _run, registry, lambda s: registry.mfa.cancel(s, auth.client_id, session_id)
    )
    return CompactJSONResponse(session_view(row))


@router.get("/mfa/v2/{session_id}/timeline", summary="Every send, delivery report, link open and attempt")
async def timeline(session_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    entries = await run_in_threadpool(
        _run, registry, lambda s: registry.mfa.timeline_entries(s, auth.client_id, session_id)
    )
    return CompactJSONResponse(timeline_view(session_id, entries))
