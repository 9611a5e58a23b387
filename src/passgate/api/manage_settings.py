"""/manage/v1/settings: per-client MFA settings (TTLs, lengths, attempts, sends, SMS countries)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.auth.models import Client
from passgate.db import transaction
from passgate.mfa.models import ClientSettings
from passgate.mfa.services import resolve_config

router = APIRouter(prefix="/manage/v1/settings", tags=["settings"])


class SettingsBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "linkTtlSeconds": 900,
                    "otpTtlSeconds": 300,
                    "otpLength": 6,
                    "maxVerifyAttempts": 5,
                    "maxSends": 3,
                    "smsAllowedCountries": ["US", "CA"],
                    "rejectVoip": True,
                }
            ]
        },
    )

    linkTtlSeconds: int | None = Field(default=None, ge=60, le=7 * 86400)
    otpTtlSeconds: int | None = Field(default=None, ge=60, le=3600)
    otpLength: int | None = Field(default=None, ge=4, le=10)
    maxVerifyAttempts: int | None = Field(default=None, ge=1, le=10)
    maxSends: int | None = Field(default=None, ge=1, le=10)
    smsAllowedCountries: list[str] | None = Field(default=None, max_length=250)
    rejectVoip: StrictBool | None = None

    @field_validator("smsAllowedCountries")
    @classmethod
    def _countries(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for c in v:
            if len(c) != 2 or not c.isalpha():
                raise ValueError(f"{c!r} is not a two-letter ISO 3166 country code")
            out.append(c.upper())
        return sorted(set(out))


def _view(session: Any, client_id: str) -> dict[str, Any]:
    client = session.get(Client, client_id)
    cfg = resolve_config(session, client)
    return {
        "linkTtlSeconds": {
            "login": cfg.login_email_link_ttl,
            "accountOpeningEmail": cfg.opening_email_link_ttl,
            "sms": cfg.sms_link_ttl,
        },
        "otpTtlSeconds": cfg.otp_ttl,
        "otpLength": cfg.otp_length,
        "maxVerifyAttempts": cfg.max_attempts,
        "maxSends": cfg.max_sends,
        "smsAllowedCountries": list(cfg.sms_allowed_countries),
        "rejectVoip": cfg.reject_voip,
        "homeCountry": client.country,
        "sandbox": client.sandbox,
    }


@router.get("", summary="Effective MFA settings (defaults filled in)")
async def get_settings(registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            return _view(session, auth.client_id)

    return JSONResponse(await run_in_threadpool(run))


@router.put("", summary="Change MFA settings; omitted or null fields return to the defaults")
async def put_settings(body: SettingsBody, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            row = session.get(ClientSettings, auth.client_id)
            if row is None:
                row = ClientSettings(client_id=auth.client_id, updated_at=registry.clock.now())
                session.add(row)
            row.link_ttl_seconds = body.linkTtlSeconds
            row.otp_ttl_seconds = body.otpTtlSeconds
            row.otp_length = body.otpLength
            row.max_verify_attempts = body.maxVerifyAttempts
            row.max_sends = body.maxSends
            row.sms_allowed_countries = body.smsAllowedCountries
            row.reject_voip = body.rejectVoip
            row.updated_at = registry.clock.now()
            session.flush()
            return _view(session, auth.client_id)

    view = await run_in_threadpool(run)
    registry.mfa.forget_config(auth.client_id)  # after the commit: a challenge in between read the old
    return JSONResponse(view)
