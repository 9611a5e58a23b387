"""A client's MFA settings: the stored row (null means the documented default), the effective values a
challenge uses, and the one write both the management API and the console make."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from sqlalchemy import Boolean, ForeignKey, Integer
from sqlalchemy.orm import Mapped, Session, mapped_column

from passgate.auth.models import Client
from passgate.auth.sms_breaker import BreakerConfig, SmsBreakerBody, breaker_config_from, breaker_view
from passgate.db import Base
from passgate.db.types import JSONType, UTCDateTime


class ClientSettings(Base):
    """Per-client MFA settings; a null column means the documented default."""

    __tablename__ = "client_settings"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    link_ttl_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    otp_ttl_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    otp_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_verify_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_sends: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sms_allowed_countries: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    reject_voip: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The SMS pumping breaker's settings given (auth.sms_breaker): null, or some of its fields.
    sms_breaker: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class MfaConfig:
    """The settings a challenge uses: the client's row over the defaults (`resolve_config`)."""

    otp_ttl: int = 600
    sms_link_ttl: int = 600
    login_email_link_ttl: int = 600
    opening_email_link_ttl: int = 86400
    otp_length: int = 6
    max_attempts: int = 5
    max_sends: int = 3
    sms_allowed_countries: tuple[str, ...] = ()
    reject_voip: bool = False
    sms_breaker: BreakerConfig = BreakerConfig()

    def ttl(self, channel: str, mfa_type: str, event_type: str) -> int:
        if mfa_type == "OTP":
            return self.otp_ttl
        if channel == "SMS":
            return self.sms_link_ttl
        return self.login_email_link_ttl if event_type == "LOGIN" else self.opening_email_link_ttl


class StoredSettings(NamedTuple):
    """A client_settings row as `config_from` reads it (when read as a plain row, not an ORM object)."""

    link_ttl_seconds: int | None
    otp_ttl_seconds: int | None
    otp_length: int | None
    max_verify_attempts: int | None
    max_sends: int | None
    sms_allowed_countries: list[str] | None
    reject_voip: bool | None
    sms_breaker: dict[str, Any] | None = None


def resolve_config(session: Session, client: Client) -> MfaConfig:
    return config_from(client.country, session.get(ClientSettings, client.id))


def config_from(country: str, s: Any) -> MfaConfig:
    """The effective settings: the client's row (`s`, None when it has none) over the defaults."""
    base = MfaConfig(sms_allowed_countries=(country,))
    if s is None:
        return base
    link = s.link_ttl_seconds
    return MfaConfig(
        otp_ttl=s.otp_ttl_seconds or base.otp_ttl,
        sms_link_ttl=link or base.sms_link_ttl,
        login_email_link_ttl=link or base.login_email_link_ttl,
        opening_email_link_ttl=link or base.opening_email_link_ttl,
        otp_length=s.otp_length or base.otp_length,
        max_attempts=s.max_verify_attempts or base.max_attempts,
        max_sends=s.max_sends or base.max_sends,
        sms_allowed_countries=tuple(s.sms_allowed_countries)
        if s.sms_allowed_countries
        else base.sms_allowed_countries,
        reject_voip=bool(s.reject_voip),
        sms_breaker=breaker_config_from(s.sms_breaker),
    )


class SettingsBody(BaseModel):
    """A settings change as the API takes it (and the console, from its form): omitted or null fields
    return to the defaults."""

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
                    "smsBreaker": {"mode": "enforce", "minSends": 50, "minConversion": 0.2},
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
    smsBreaker: SmsBreakerBody | None = None

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


def settings_view(session: Session, client_id: str) -> dict[str, Any]:
    """The effective settings (defaults filled in) as GET /manage/v1/settings answers them."""
    client = session.get(Client, client_id)
    assert client is not None, client_id
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
        "smsBreaker": breaker_view(cfg.sms_breaker),
        "homeCountry": client.country,
        "sandbox": client.sandbox,
    }


def update_settings(session: Session, client_id: str, body: SettingsBody, now: datetime) -> ClientSettings:
    """Replace the client's stored settings with `body` (null fields return to the defaults), in the
    caller's transaction. The caller forgets the cached config after the commit (`MfaService.forget_config`):
    a challenge started in between still reads the old row."""
    row = session.get(ClientSettings, client_id)
    if row is None:
        row = ClientSettings(client_id=client_id, updated_at=now)
        session.add(row)
    row.link_ttl_seconds = body.linkTtlSeconds
    row.otp_ttl_seconds = body.otpTtlSeconds
    row.otp_length = body.otpLength
    row.max_verify_attempts = body.maxVerifyAttempts
    row.max_sends = body.maxSends
    row.sms_allowed_countries = body.smsAllowedCountries
    row.reject_voip = body.rejectVoip
    row.sms_breaker = body.smsBreaker.stored() if body.smsBreaker is not None else None
    row.updated_at = now
    session.flush()
    return row
