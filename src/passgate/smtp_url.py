"""PASSGATE_SMTP_URL read once, the same way by the settings check, `passgate check` and the sender."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = ("smtp", "smtps")
DEFAULT_POOL = 32
MAX_POOL = 64


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    implicit_tls: bool  # smtps://: TLS from the first byte; smtp://: STARTTLS when the server offers it
    username: str | None
    password: str | None
    pool_size: int


def parse_smtp_url(url: str) -> SmtpTarget:
    """The relay a URL names; ValueError says what is wrong, without repeating the URL (it may hold a
    password)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not url.startswith(parts.scheme + "://"):
        raise ValueError(
            "must be smtp://[user:password@]host[:port] (STARTTLS, port 587 by default) "
            "or smtps://… (TLS, port 465 by default)"
        )
    if not parts.hostname:
        raise ValueError("names no host (e.g. smtp://user:password@mail.example.com:587)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    implicit_tls = parts.scheme == "smtps"
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"pool"})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (the only one is pool=N)")
    try:
        pool_size = int(query.get("pool", [str(DEFAULT_POOL)])[0])
    except ValueError:
        raise ValueError(f"the pool parameter must be a number from 1 to {MAX_POOL}") from None
    if not 1 <= pool_size <= MAX_POOL:
        raise ValueError(f"the pool parameter must be a number from 1 to {MAX_POOL}")
    return SmtpTarget(
        hostname=parts.hostname,
        port=port or (465 if implicit_tls else 587),
        implicit_tls=implicit_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        pool_size=pool_size,
    )
