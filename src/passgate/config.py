"""Settings read from PASSGATE_* environment variables (DESIGN §7)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSGATE_", extra="ignore")

    database_url: str = "sqlite:///./passgate.db"
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("./.passgate")
    # "production" hides dev-only surfaces (the dev inbox) and refuses generated secrets.
    environment: Literal["development", "production"] = "development"

    smtp_url: str | None = None
    mail_from: str = "Passgate <no-reply@passgate.localhost>"
    # One provider, or several in order of preference: "twilio,http" fails over to the gateway.
    sms_provider: str | None = None
    sms_http_url: str | None = None
    # The generic HTTP gateway's Standard Webhooks secret (whsec_…): Passgate signs its requests to the
    # gateway with it and requires it on the gateway's delivery reports. Required in production.
    sms_http_secret: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    sms_from: str = "Passgate"
    # Seconds between tries of a message that failed for a passing reason; tests shorten it.
    message_retry_seconds: str = "2,5,15,30,60,120,300"
    # How long a worker owns a message it claimed; a worker that dies mid-send is taken over after this.
    message_lock_seconds: int = Field(default=60, ge=1)

    redis_url: str | None = None
    # Comma-separated, newest first. Old keys still verify hashes and tokens made with them.
    secret_keys: str | None = None
    # Webhooks (docs/webhooks.md). Private, loopback and link-local targets, and plain http, are refused
    # unless this is true (tests and private deployments only).
    webhook_allow_private: bool = False
    # Seconds after each failed try (Standard Webhooks schedule); tests shorten it.
    webhook_retry_seconds: str = "5,300,1800,7200,18000,36000,50400,72000,86400"
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    # How long a worker owns a claimed delivery; keep it above the timeout or slow tries get sent twice.
    webhook_lock_seconds: int = Field(default=60, ge=1)
    # Tries in flight per endpoint (across all workers) and per worker process.
    webhook_endpoint_concurrency: int = Field(default=8, ge=1, le=256)
    webhook_max_in_flight: int = Field(default=64, ge=1, le=1024)
    # An endpoint whose every try failed for this long is disabled (shown in the API).
    webhook_disable_after_seconds: int = Field(default=5 * 86400, ge=1)
    # How long the old Kount RSA key / standard-webhooks secret stays valid after a rotation.
    webhook_key_overlap_seconds: int = Field(default=86400, ge=0)
    webhook_secret_overlap_seconds: int = Field(default=86400, ge=0)
    webhook_retention_days: int = Field(default=30, ge=1)
    workers_in_process: bool = True
    # Console sign-in attempts (docs/console.md): per email address (cleared by a success) and per IP.
    console_sign_in_rates_email: str = "5/15 minutes"
    console_sign_in_rates_ip: str = "50/15 minutes"

    # `passgate serve`'s HTTP limits (src/passgate/httpserver.py): the request line and headers at most
    # this many bytes (431 past it); the head within this many seconds of the connection (or of the next
    # request's first byte), the body within this many of the head (408); an idle kept-alive connection
    # closed after this many.
    http_max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    http_keepalive_seconds: int = Field(default=5, ge=1, le=3600)

    token_ttl_seconds: int = 1200
    # Wrong secrets at POST /oauth2/token: per IP address, and per client id (which refuses only the
    # addresses that sent a wrong secret for it; see auth.services.TokenAttempts).
    oauth_failure_rates_ip: str = "20/minute;200/hour"
    oauth_failure_rates_client: str = "50/minute;500/hour"
    metrics_token: str | None = None
    log_level: str = "INFO"
    # Seconds the API process trusts its cached view of an API key's revocation state.
    key_cache_seconds: float = Field(default=5.0, ge=0)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @cached_property
    def secret_key_list(self) -> list[bytes]:
        """The keyed-hash and signing secrets, newest first."""
        if self.secret_keys:
            keys = [k.strip() for k in self.secret_keys.split(",") if k.strip()]
            if any(len(k) < 32 for k in keys):
                raise ValueError("PASSGATE_SECRET_KEYS: every key must be at least 32 characters")
            return [k.encode() for k in keys]
        if self.environment == "production":
            raise ValueError("PASSGATE_SECRET_KEYS must be set in production")
        return [self._dev_secret_key().encode()]

    def _dev_secret_key(self) -> str:
        # Generated once into the data folder so restarts keep hashes and tokens valid.
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        return key

    @property
    def sms_providers(self) -> list[str]:
        """The SMS providers named in PASSGATE_SMS_PROVIDER, in order of preference."""
        return [n.strip() for n in (self.sms_provider or "").split(",") if n.strip()]

    @property
    def retry_schedule(self) -> tuple[float, ...]:
        return tuple(float(x) for x in self.message_retry_seconds.split(",") if x.strip())

    @property
    def dev_inbox_enabled(self) -> bool:
        return (
            self.environment != "production" and self.smtp_url is None and self.sms_provider in (None, "dev")
        )
