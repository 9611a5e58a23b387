"""The Verify API (`/verify/v1`): verification without a risk decision, for sign-up, email change and
password reset. Same tokens, sessions, templates, limits, timeline and webhooks as a decision's challenge
(docs/verify.md)."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import IntegrationAuth, RegistryDep
from passgate.api.idempotency import OneAtATime
from passgate.api.responses import CompactJSONResponse
from passgate.api.views import timeline_view, verification_view
from passgate.bootstrap import Registry
from passgate.db import transaction
from passgate.mfa.verify import Refused, Started, VerifyService, VerifyStart, start_key
from passgate.policy.requests import TemplateValues

router = APIRouter(tags=["verify"])


def install(app: FastAPI) -> None:
    """What the routes share in a process: the starts under way, which identical starts wait on."""
    app.state.verify_starts = OneAtATime()


VERIFICATION_EXAMPLE = {
    "id": "0b6f3c1e-2a4d-4e5f-8a9b-0c1d2e3f4a5b",
    "status": "MESSAGE_SENT",
    "valid": False,
    "to": "j•@example.com",
    "channel": "email-code",
    "purpose": "signup",
    "templateName": "email-code",
    "locale": "en",
    "expiresAt": "2026-11-29T10:10:00Z",
    "sendAttempts": 1,
    "verificationAttempts": 0,
    "remainingAttempts": 5,
    "maxSends": 3,
    "deliveryStatus": "SENT",
    "terminationReason": None,
    "redirectUrl": None,
    "sandbox": False,
    "createdAt": "2026-11-29T10:00:00Z",
    "updatedAt": "2026-11-29T10:00:01Z",
    "verifiedAt": None,
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no verification of this id for this client"}
}


class StartBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"to": "jo@example.com", "channel": "email-code", "purpose": "signup"},
                {
                    "to": "jo@example.com",
                    "channel": "email-link",
                    "purpose": "password_reset",
                    "redirectUrl": "https://shop.example/reset/new-password",
                },
                {"to": "+12015550123", "channel": "sms-code", "locale": "es"},
            ]
        },
    )

    to: StrictStr = Field(
        min_length=1, max_length=254, description="email address (email-*) or E.164 phone number (sms-*)"
    )
    channel: Literal["email-link", "email-code", "sms-link", "sms-code"] = Field(
        description="how the person proves it: a link to confirm, or a code to type into your form"
    )
    templateName: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="messaging template; default: the built-in template named like the channel",
    )
    locale: StrictStr | None = Field(
        default=None,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description="message locale, among the template's; else the phone number's country's, else the "
        "template's default",
    )
    purpose: Literal["signup", "email_change", "password_reset", "other"] = Field(
        default="other",
        description="why; password_reset: 15-minute life, and a start never tells whether a message goes out",
    )
    redirectUrl: StrictStr | None = Field(
        default=None,
        max_length=2048,
        description="link channels: where the confirm page sends the person after",
    )
    customValues: TemplateValues = Field(
        default_factory=dict, max_length=20, description="values for the template (`{{ values.<name> }}`)"
    )

    @field_validator("redirectUrl")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
            raise ValueError("must be an absolute http(s) URL")
        return v


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "123456"}]})

    code: StrictStr = Field(min_length=1, max_length=32, description="the code the person typed")


class CheckByDestinationBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"to": "+12015550123", "code": "123456"}]}
    )

    to: StrictStr = Field(min_length=1, max_length=254, description="the address or number the code went to")
    code: StrictStr = Field(min_length=1, max_length=32, description="the code the person typed")


def _service(registry: Registry) -> VerifyService:
    return VerifyService(registry.mfa)


def _run(registry: Registry, fn: Any) -> Any:
    with transaction(registry.sessions) as session:
        return fn(session)


_CHECK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the verification after the check: `status` VERIFIED (`valid`: true), "
        "VERIFICATION_ATTEMPT_FAILED with `remainingAttempts`, or TERMINATED (MAX_ATTEMPTS)",
        "content": {
            "application/json": {"example": {**VERIFICATION_EXAMPLE, "status": "VERIFIED", "valid": True}}
        },
    },
    409: {"description": "the verification is already closed, or is verified through its link"},
    429: {"description": "too many consecutive failures for this person; see Retry-After"},
}


@router.post(
    "/verify/v1/verifications",
    summary="Start a verification (or get the pending one for this destination and purpose)",
    status_code=201,
    responses={
        201: {
            "description": "a new verification; its message is queued",
            "content": {"application/json": {"example": VERIFICATION_EXAMPLE}},
        },
        200: {
            "description": "a verification of this destination, purpose and template was pending: "
            "that one, and nothing sent"
        },
        400: {"description": "invalid body; `errors[].field` names each bad field"},
        429: {"description": "too many messages to this destination (never for purpose password_reset)"},
    },
)
async def start(
    body: StartBody, registry: RegistryDep, auth: IntegrationAuth, http: Request
) -> CompactJSONResponse:
    request = VerifyStart(
        to=body.to,
        channel=body.channel,
        purpose=body.purpose,
        template_name=body.templateName,
        locale=body.locale,
        redirect_url=body.redirectUrl,
        custom_values=dict(body.customValues),
    )
    service = _service(registry)
    # In the group commit, as a decision's CHALLENGE: the unit only reads, and its session, message,
    # timeline and webhook rows are written with the batch's (db.group_commit). Identical starts in this
    # process run one after another until one has left a session pending (api.idempotency.OneAtATime).
    starts: OneAtATime = http.app.state.verify_starts
    answer = await starts.run(
        start_key(auth.client_id, request),
        lambda: registry.committer.run_deferred(lambda s: service.start(s, auth.client_id, request)),
        lambda answer: isinstance(answer, Started) and answer.exists,
    )
    if isinstance(answer, Refused):
        raise answer.error
    return CompactJSONResponse(verification_view(answer.row), status_code=201 if answer.created else 200)


@router.post(
    "/verify/v1/verifications/{verification_id}/check",
    summary="Check the code the person typed (code channels)",
    responses={**_CHECK_RESPONSES, **_NOT_FOUND},
)
async def check(
    verification_id: str, body: CheckBody, registry: RegistryDep, auth: IntegrationAuth
) -> CompactJSONResponse:
    result, row = await registry.committer.run(
        lambda s: _service(registry).check(s, auth.client_id, verification_id, body.code)
    )
    registry.metrics.status_changes.labels(result.status).inc()
    return CompactJSONResponse(verification_view(row, result))


@router.post(
    "/verify/v1/verification-checks",
    summary="Check a code by destination: the newest pending verification of that address or number",
    responses={**_CHECK_RESPONSES, 404: {"description": "no pending verification for this destination"}},
)
async def check_by_destination(
    body: CheckByDestinationBody, registry: RegistryDep, auth: IntegrationAuth
) -> CompactJSONResponse:
    result, row = await registry.committer.run(
        lambda s: _service(registry).check_destination(s, auth.client_id, body.to, body.code)
    )
    registry.metrics.status_changes.labels(result.status).inc()
    return CompactJSONResponse(verification_view(row, result))


@router.get(
    "/verify/v1/verifications/{verification_id}",
    summary="A verification: status, channel, masked destination, counters and timestamps",
    responses={200: {"content": {"application/json": {"example": VERIFICATION_EXAMPLE}}}, **_NOT_FOUND},
)
async def get_verification(
    verification_id: str, registry: RegistryDep, auth: IntegrationAuth
) -> CompactJSONResponse:
    row = await run_in_threadpool(
        _run, registry, lambda s: _service(registry).get(s, auth.client_id, verification_id)
    )
    return CompactJSONResponse(verification_view(row))


@router.post(
    "/verify/v1/verifications/{verification_id}/resend",
    summary="Send a new code or link; the last three issued stay valid",
    responses={
        429: {"description": "all sends used, or too many messages to this destination"},
        **_NOT_FOUND,
    },
)
async def resend(verification_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    row = await run_in_threadpool(
        _run, registry, lambda s: _service(registry).resend(s, auth.client_id, verification_id)
    )
    return CompactJSONResponse(verification_view(row))


@router.post(
    "/verify/v1/verifications/{verification_id}/cancel",
    summary="Cancel: the verification becomes TERMINATED (CANCELLED)",
    responses={409: {"description": "the verification is already closed"}, **_NOT_FOUND},
)
async def cancel(verification_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    row = await run_in_threadpool(
        _run, registry, lambda s: _service(registry).cancel(s, auth.client_id, verification_id)
    )
    return CompactJSONResponse(verification_view(row))


@router.get(
    "/verify/v1/verifications/{verification_id}/timeline",
    summary="Every send, delivery report, link open and attempt (never a code)",
    responses=_NOT_FOUND,
)
async def timeline(verification_id: str, registry: RegistryDep, auth: IntegrationAuth) -> CompactJSONResponse:
    entries = await run_in_threadpool(
        _run, registry, lambda s: _service(registry).timeline(s, auth.client_id, verification_id)
    )
    return CompactJSONResponse(timeline_view(verification_id, entries))
