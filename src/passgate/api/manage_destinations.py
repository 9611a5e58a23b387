"""/manage/v1/destinations: an operator's hand on one destination's failure counter (docs/mfa.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.api.views import unlock_view
from passgate.audit.services import record as audit
from passgate.contacts import normalise_destination
from passgate.db import transaction

router = APIRouter(prefix="/manage/v1/destinations", tags=["destinations"])

_UNLOCKED_EXAMPLE = {
    "channel": "EMAIL",
    "destination": "jo•@example.com",
    "failures": 100,
    "locked": True,
    "waitingUntil": "2026-12-10T09:30:00Z",
    "cleared": True,
}


def _checked(channel: str, value: str | None) -> str | None:
    if value is None:
        return None
    check = normalise_destination(channel, value)
    if not check.ok:
        raise ValueError(check.reason)
    return value


class UnlockBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"emailAddress": "jo@example.com"}, {"phoneNumber": "+15551234567"}]},
    )

    emailAddress: str | None = Field(default=None, max_length=320)
    phoneNumber: str | None = Field(default=None, max_length=32)

    @field_validator("emailAddress")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return _checked("EMAIL", v)

    @field_validator("phoneNumber")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return _checked("SMS", v)

    @model_validator(mode="after")
    def _one_destination(self) -> UnlockBody:
        if (self.emailAddress is None) == (self.phoneNumber is None):
            raise ValueError("give exactly one of emailAddress and phoneNumber")
        return self

    @property
    def channel(self) -> str:
        return "EMAIL" if self.emailAddress is not None else "SMS"

    @property
    def value(self) -> str:
        return self.emailAddress if self.emailAddress is not None else str(self.phoneNumber)


@router.post(
    "/unlock",
    summary="Clear a destination's failure counter, wait and lock",
    description="After 10 consecutive failed verifications of one email address or phone number the next "
    "try waits (30 s, doubling up to 1 h); after 100 the destination is locked and new challenges to it "
    "answer RATE_LIMITED. This clears all three for your client and records it in the audit log. Give the "
    "address or number as your integration sends it; it is normalised and hashed as challenges do. "
    "`cleared` is false when there was nothing to clear.",
    responses={
        200: {
            "description": "the state before the call",
            "content": {"application/json": {"example": _UNLOCKED_EXAMPLE}},
        }
    },
)
async def unlock(body: UnlockBody, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            result = registry.mfa.unlock_destination(session, auth.client_id, body.channel, body.value)
            audit(
                session,
                auth.client_id,
                f"apikey:{auth.key_id}",
                "destination.unlocked",
                result.masked,
                registry.clock.now(),
                {"channel": result.channel, "failures": result.failures, "locked": result.locked},
            )
            return unlock_view(result)

    return JSONResponse(await run_in_threadpool(run))
