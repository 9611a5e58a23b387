"""Settings read from PASSGATE_* environment variables, every one checked before anything runs.

Each setting has its own validator below; a mistake is reported as `(variable, what is wrong)` and
`InvalidConfiguration.lines()` is the one place that turns those into what the command line prints:
`passgate: invalid configuration: PASSGATE_X: …`, one line per mistake. A check that needs several
settings at once (`_together`) names the variable at fault itself.
"""

from __future__ import annotations

import difflib
import math
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from passgate.whsec import InvalidSigningKeyError, decode_whsec

ENV_PREFIX = "PASSGATE_"
# A secret key is at least this long; `passgate keys generate` makes 64 random URL-safe characters.
MIN_SECRET_KEY_LENGTH = 32
SMS_PROVIDERS = ("dev", "twilio", "http")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Links are made from the public URL and templates print them: their save-time size checks count on it.
MAX_PUBLIC_URL_CHARS = 200
# Values of settings whose name holds one of these words are never repeated in an error line.
_SECRET_WORDS = ("secret", "token", "password", "url", "sid", "key")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class ConfigProblems(ValueError):
    """Mistakes found by a check of several settings, each naming its own variable."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{var}: {msg}" for var, msg in problems))
        self.problems = problems


class InvalidConfiguration(Exception):
    """The settings cannot be used; `problems` holds (variable, what is wrong), one per mistake."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{var}: {msg}" for var, msg in problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [f"passgate: invalid configuration: {var}: {msg}" for var, msg in self.problems]

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidConfiguration:
        problems: list[tuple[str, str]] = []
        for err in exc.errors(include_url=False):
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, ConfigProblems):
                problems.extend(cause.problems)
                continue
            field = str(err["loc"][0]) if err["loc"] else ""
            problems.append((env_name(field) if field else "PASSGATE_*", _message(field, err)))
        return cls(problems)


def _message(field: str, err: Any) -> str:
    """Pydantic's message in the words of an environment variable, with the value when it is no secret."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    shown = not any(word in field for word in _SECRET_WORDS)
    got = f" (got {value!r})" if shown and isinstance(value, str | int | float) else ""
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '').replace(chr(39), '')}{got}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(ctx.values()), "")
        return f"must be {words} {limit}{got}"
    return f"{err['msg']}{got}"


def _http_url(value: str, example: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.startswith(parts.scheme + "://"):
        raise ValueError(f"must be an http:// or https:// URL, e.g. {example}")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"names no host, e.g. {example}")
    return value


def _retry_schedule(value: str) -> str:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise ValueError("needs at least one delay in seconds, e.g. 2,5,15,30")
    for part in parts:
        try:
            delay = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number of seconds (the form is 2,5,15,30)") from None
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"{part!r} is not a number of seconds (the form is 2,5,15,30)")
    return value


_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The local part of a bounce address is this, `+` and a 52-character token: 64 characters at most.
_BOUNCE_LOCAL_PART = re.compile(r"[a-z0-9][a-z0-9.-]{0,10}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

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
    # Bounces (docs/operations.md, "Bounces"): with a domain, each email's envelope sender is its own
    # bounce address there (`{domain}`: the From address's domain); unset, the From address as before.
    bounce_domain: str | None = None
    bounce_local_part: str = "bounces"
    # The Standard Webhooks secret (whsec_…) a relay signs POST /providers/bounces with; unset, no endpoint.
    bounce_secret: str | None = None
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
    # Where `passgate serve` runs the delivery workers (docs/mfa.md, "Which layout"):
    # "process", a child process it supervises (the default); "thread", a thread of the API process (what
    # true meant before); "off", none (false): `passgate worker` processes deliver.
    workers_in_process: Literal["process", "thread", "off"] = "process"
    # Seconds between runs of the cluster-wide housekeeping (forgetting old velocity counters); one process
    # of the whole cluster runs it per period (passgate.leases).
    purge_interval_seconds: float = Field(default=60.0, ge=1, le=86400)
    # API processes of `passgate serve` (`--workers` overrides it); more than one needs PostgreSQL and Redis.
    api_workers: int = Field(default=1, ge=1, le=64)
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

    token_ttl_seconds: int = Field(default=1200, ge=1)
    # Wrong secrets at POST /oauth2/token: per IP address, and per client id (which refuses only the
    # addresses that sent a wrong secret for it; see auth.services.TokenAttempts).
    oauth_failure_rates_ip: str = "20/minute;200/hour"
    oauth_failure_rates_client: str = "50/minute;500/hour"
    metrics_token: str | None = None
    log_level: str = "INFO"
    # Seconds the API process trusts its cached view of an API key's revocation state.
    key_cache_seconds: float = Field(default=5.0, ge=0)

    # -- one validator per setting -------------------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            scheme = make_url(v).drivername
        except ArgumentError:
            scheme = ""
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                "must be sqlite:///path/to/passgate.db or postgresql://user:password@host:5432/database"
            )
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        v = _http_url(v, "https://passgate.example.com")
        parts = urlsplit(v)
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                "must be the plain base URL that people's browsers reach, e.g. https://passgate.example.com"
            )
        v = v.rstrip("/")
        if len(v) > MAX_PUBLIC_URL_CHARS:
            raise ValueError(f"must be at most {MAX_PUBLIC_URL_CHARS} characters")
        return v

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, v: str | None) -> str | None:
        from passgate.smtp_url import parse_smtp_url

        if v:
            parse_smtp_url(v)
        return v or None

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, v: str) -> str:
        from email.headerregistry import Address
        from email.utils import parseaddr

        _, address = parseaddr(v)
        try:
            Address(addr_spec=address)
        except (ValueError, IndexError):
            address = ""
        if "@" not in address:
            raise ValueError("must be an email address, e.g. 'Passgate <no-reply@example.com>'")
        return v

    @field_validator("workers_in_process", mode="before")
    @classmethod
    def _workers_in_process(cls, v: Any) -> Any:
        aliases = {"true": "thread", "1": "thread", "yes": "thread", "false": "off", "0": "off", "no": "off"}
        if isinstance(v, bool):
            return "thread" if v else "off"
        if isinstance(v, str):
            value = aliases.get(v.strip().lower(), v.strip().lower())
            if value not in ("process", "thread", "off"):
                raise ValueError(f"must be process, thread or off (or true = thread, false = off), got {v!r}")
            return value
        return v

    @field_validator("sms_provider")
    @classmethod
    def _sms_provider(cls, v: str | None) -> str | None:
        names = [n.strip() for n in (v or "").split(",") if n.strip()]
        for name in names:
            if name not in SMS_PROVIDERS:
                close = difflib.get_close_matches(name, SMS_PROVIDERS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(
                    f"unknown SMS provider {name!r}{hint}; the providers are dev, twilio and http, "
                    "one or several in order of preference (e.g. twilio,http)"
                )
        if len(set(names)) != len(names):
            raise ValueError("names a provider twice")
        return ",".join(names) or None

    @field_validator("sms_http_url")
    @classmethod
    def _sms_http_url(cls, v: str | None) -> str | None:
        return _http_url(v, "https://sms-gateway.example.com/send") if v else None

    @field_validator("twilio_base_url")
    @classmethod
    def _twilio_base_url(cls, v: str) -> str:
        return _http_url(v, "https://api.twilio.com")

    @field_validator("message_retry_seconds", "webhook_retry_seconds")
    @classmethod
    def _schedules(cls, v: str) -> str:
        return _retry_schedule(v)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v and urlsplit(v).scheme not in REDIS_SCHEMES:
            raise ValueError("must be redis://host:6379/0, rediss://… (TLS) or unix:///path/to/redis.sock")
        return v or None

    @field_validator("secret_keys")
    @classmethod
    def _secret_keys(cls, v: str | None) -> str | None:
        keys = [k.strip() for k in (v or "").split(",") if k.strip()]
        for n, key in enumerate(keys, 1):
            if len(key) < MIN_SECRET_KEY_LENGTH:
                which = f"key {n} of {len(keys)}" if len(keys) > 1 else "the key"
                raise ValueError(
                    f"every key must be at least {MIN_SECRET_KEY_LENGTH} characters ({which} has "
                    f"{len(key)}); make one with: passgate keys generate"
                )
        if len(set(keys)) != len(keys):
            raise ValueError("lists a key twice")
        return ",".join(keys) or None

    @field_validator(
        "console_sign_in_rates_email",
        "console_sign_in_rates_ip",
        "oauth_failure_rates_ip",
        "oauth_failure_rates_client",
    )
    @classmethod
    def _rates(cls, v: str) -> str:
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError:
            raise ValueError("must be rates like '5/15 minutes' or '10/minute;100/day'") from None
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (got {v!r})")
        return level

    @field_validator("bounce_domain")
    @classmethod
    def _bounce_domain(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().lower().rstrip(".")
        sample = v.replace("{domain}", "example.com")
        labels = sample.split(".")
        if (
            v.count("{domain}") > 1
            or len(sample) > 200
            or len(labels) < 2
            or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        ):
            raise ValueError(
                "must be a domain name such as bounces.example.com, or one with {domain} (the From "
                "address's domain) such as bounce.{domain}"
            )
        return v

    @field_validator("bounce_local_part")
    @classmethod
    def _bounce_local_part(cls, v: str) -> str:
        if not _BOUNCE_LOCAL_PART.fullmatch(v):
            raise ValueError("must be 1 to 11 lowercase letters, digits, dots or hyphens (such as bounces)")
        return v

    @field_validator("sms_http_secret", "bounce_secret")
    @classmethod
    def _sms_http_secret(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v.startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret: whsec_ followed by base64")
        try:
            decode_whsec(v)
        except InvalidSigningKeyError as exc:
            raise ValueError(str(exc)) from None
        return v

    # -- checks of several settings together ---------------------------------------------------------

    @model_validator(mode="after")
    def _together(self) -> Settings:
        problems: list[tuple[str, str]] = []
        if self.environment == "production" and not self.secret_keys:
            problems.append(
                (
                    "PASSGATE_SECRET_KEYS",
                    "must be set in production (a development server generates one into its data "
                    "folder; production needs the same keys on every process): make one with "
                    "passgate keys generate",
                )
            )
        providers = (self.sms_provider or "").split(",")
        if "twilio" in providers:
            for field in ("twilio_account_sid", "twilio_auth_token", "twilio_from"):
                if not getattr(self, field):
                    problems.append((env_name(field), "must be set when PASSGATE_SMS_PROVIDER names twilio"))
        if "http" in providers and not self.sms_http_url:
            problems.append(("PASSGATE_SMS_HTTP_URL", "must be set when PASSGATE_SMS_PROVIDER names http"))
        if "http" in providers and self.environment == "production" and not self.sms_http_secret:
            problems.append(
                (
                    "PASSGATE_SMS_HTTP_SECRET",
                    "must be set in production when PASSGATE_SMS_PROVIDER names http (a whsec_ secret "
                    "shared with the gateway: it signs Passgate's requests and the gateway's delivery reports)",
                )
            )
        if problems:
            raise ConfigProblems(problems)
        return self

    # -- derived values ------------------------------------------------------------------------------

    @cached_property
    def secret_key_list(self) -> list[bytes]:
        """The keyed-hash and signing secrets, newest first."""
        if self.secret_keys:
            return [k.encode() for k in self.secret_keys.split(",")]
        if self.environment == "production":  # refused by _together; kept for settings built by copy
            raise ValueError("PASSGATE_SECRET_KEYS must be set in production")
        return [self._dev_secret_key().encode()]

    def _dev_secret_key(self) -> str:
        # Generated once into the data folder so restarts keep hashes and tokens valid.
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = generate_secret_key()
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


def redact_url(url: str) -> str:
    """A URL fit to print: whatever stands before `@` (user and password) becomes ***."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def generate_secret_key() -> str:
    """64 URL-safe characters from 48 random bytes (384 bits): one entry of PASSGATE_SECRET_KEYS."""
    return secrets.token_urlsafe(48)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (and `overrides`), or InvalidConfiguration naming every mistake."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise InvalidConfiguration.from_validation(exc) from None
