"""`passgate check`: does what the settings name answer? The database (and its migrations), Redis, the
SMTP relay (connect, EHLO, STARTTLS, AUTH; no mail is sent), the SMS providers (their settings; a
connection to an HTTP gateway, no message) and the public URL.

Every check is bounded by `timeout` seconds and reports ok, warn (works, but look at it), fail (will not
work) or skip (not configured, and nothing needs it). Details never carry a password or token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from passgate.config import Settings

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
# An alphanumeric sender ID: up to 11 letters, digits and spaces, at least one letter.
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def view(self) -> dict[str, str]:
        return asdict(self)


def run_checks(settings: Settings, timeout: float = 5.0) -> list[Check]:
    secrets = [
        s
        for s in (
            settings.twilio_auth_token,
            settings.metrics_token,
            *(settings.secret_keys or "").split(","),
            *_passwords(settings.database_url, settings.redis_url, settings.smtp_url, settings.sms_http_url),
        )
        if s
    ]
    checks = [
        _secret_keys(settings),
        *_database(settings, timeout),
        _redis(settings, timeout),
        _smtp(settings, timeout),
        *_sms(settings, timeout),
        _public_url(settings, timeout),
    ]
    return [Check(c.name, c.status, _scrub(c.detail, secrets)) for c in checks]


def _passwords(*urls: str | None) -> list[str]:
    out = []
    for url in urls:
        if url:
            try:
                password = urlsplit(url).password
            except ValueError:
                continue
            if password:
                out.append(password)
    return out


def _scrub(text: str, secrets: list[str]) -> str:
    # Values of a few characters would blank out ordinary words; no real secret is that short.
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:  # a check reports what went wrong, it does not stop the others
        return Check(name, FAIL, _failure(exc))


# -- secret keys -------------------------------------------------------------------------------------------


def _secret_keys(settings: Settings) -> Check:
    if settings.secret_keys:
        n = len(settings.secret_keys.split(","))
        return Check(
            "secret keys", OK, f"{n} key{'s' if n > 1 else ''} in PASSGATE_SECRET_KEYS, newest first"
        )
    path = settings.data_dir / "secret_key"
    where = "kept in" if path.exists() else "made on first use into"
    return Check(
        "secret keys",
        OK,
        f"development key {where} {path}; set PASSGATE_SECRET_KEYS (passgate keys generate) before several "
        "processes or machines share the database",
    )


# -- the database ------------------------------------------------------------------------------------------


def _database(settings: Settings, timeout: float) -> list[Check]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from passgate.db import make_engine

    url = make_url(settings.database_url)
    where = url.render_as_string(hide_password=True)
    if url.drivername == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.exists():
            return [
                Check("database", FAIL, f"{where}: no such file yet (passgate migrate creates it)"),
                Check("migrations", SKIP, "no database"),
            ]
    kwargs: dict[str, Any] = {}
    if url.drivername != "sqlite":
        kwargs["connect_args"] = {"connect_timeout": max(1, int(timeout))}
    engine = make_engine(settings.database_url, **kwargs)
    try:
        try:
            with engine.connect() as conn:
                version = conn.execute(
                    text("SELECT sqlite_version()" if url.drivername == "sqlite" else "SHOW server_version")
                ).scalar()
                database = Check(
                    "database",
                    OK,
                    f"{where} answers ({'SQLite' if url.drivername == 'sqlite' else 'PostgreSQL'} {version})",
                )
                migrations = _guarded("migrations", lambda: _migrations(conn))
        except Exception as exc:
            return [
                Check("database", FAIL, f"{where}: {_failure(exc)}"),
                Check("migrations", SKIP, "no database"),
            ]
    finally:
        engine.dispose()
    return [database, migrations]


def _migrations(conn: Any) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from passgate.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    expected = set(script.get_heads())
    current = set(MigrationContext.configure(conn).get_current_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = current - known
    if unknown:
        return Check(
            "migrations",
            FAIL,
            f"the database has revisions this Passgate does not know ({', '.join(sorted(unknown))}): "
            "it was migrated by a newer version",
        )
    if current == expected:
        return Check("migrations", OK, f"up to date ({len(expected)} branch heads)")
    pending = {rev.revision for head in expected for rev in script.iterate_revisions(head, "base")} - {
        rev.revision for head in current for rev in script.iterate_revisions(head, "base")
    }
    return Check(
        "migrations",
        FAIL,
        f"{len(pending)} pending ({', '.join(sorted(pending))}): run passgate migrate",
    )


# -- Redis -------------------------------------------------------------------------------------------------


def _redis(settings: Settings, timeout: float) -> Check:
    if not settings.redis_url:
        return Check("redis", SKIP, "not set: rate limits and velocity counters are kept in this process")

    def check() -> Check:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url or "", socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            client.ping()
            info = client.info("server")
        finally:
            client.close()
        parts = urlsplit(settings.redis_url or "")
        return Check(
            "redis",
            OK,
            f"{parts.hostname}:{parts.port or 6379} answers PING (Redis {info.get('redis_version')})",
        )

    return _guarded("redis", check)


# -- the SMTP relay ----------------------------------------------------------------------------------------


def _smtp(settings: Settings, timeout: float, tls_context: ssl.SSLContext | None = None) -> Check:
    if not settings.smtp_url:
        if settings.environment == "production":
            return Check("smtp", WARN, "PASSGATE_SMTP_URL is not set: email challenges will fail")
        return Check("smtp", SKIP, "not set: email goes to the dev inbox (/dev/inbox)")
    from passgate.smtp_url import parse_smtp_url

    target = parse_smtp_url(settings.smtp_url)
    try:
        return asyncio.run(asyncio.wait_for(smtp_conversation(target, timeout, tls_context), timeout * 4))
    except Exception as exc:
        return Check("smtp", FAIL, f"{target.hostname}:{target.port}: {_failure(exc)}")


async def smtp_conversation(
    target: Any, reply_seconds: float, tls_context: ssl.SSLContext | None = None
) -> Check:
    """Connect, EHLO, STARTTLS (when smtp:// and offered), AUTH (when the URL has credentials), QUIT;
    `reply_seconds` bounds each step."""
    import aiosmtplib

    where = f"{target.hostname}:{target.port}"
    steps = ["TLS" if target.implicit_tls else "connected"]
    smtp = aiosmtplib.SMTP(
        hostname=target.hostname,
        port=target.port,
        use_tls=target.implicit_tls,
        start_tls=False,
        timeout=reply_seconds,
        tls_context=tls_context,
    )
    await smtp.connect()
    status = OK
    try:
        await smtp.ehlo()
        steps.append("EHLO")
        if not target.implicit_tls:
            if smtp.supports_extension("starttls"):
                await smtp.starttls()
                steps.append("STARTTLS")
            else:
                status = WARN
                steps.append("no STARTTLS offered: mail and passwords travel in plain text")
        if target.username:
            await smtp.login(target.username, target.password or "")
            steps.append(f"AUTH as {target.username}")
        await smtp.quit()
    finally:
        smtp.close()
    return Check("smtp", status, f"{where}: " + ", ".join(steps) + " (no mail sent)")


# -- SMS providers -----------------------------------------------------------------------------------------


def _sms(settings: Settings, timeout: float) -> list[Check]:
    names = [n for n in (settings.sms_provider or "").split(",") if n]
    if not names:
        if settings.environment == "production":
            return [Check("sms", WARN, "PASSGATE_SMS_PROVIDER is not set: SMS challenges will fail")]
        return [Check("sms", SKIP, "not set: SMS goes to the dev inbox (/dev/inbox)")]
    out = []
    for name in names:
        label = f"sms {name}"
        if name == "dev":
            if settings.environment == "production":
                out.append(Check(label, WARN, "messages are kept in the dev inbox table, never sent"))
            else:
                out.append(Check(label, OK, "the dev inbox (/dev/inbox)"))
        elif name == "twilio":
            out.append(_twilio(settings))
        elif name == "http":
            out.append(_guarded(label, lambda: _http_gateway(settings, timeout)))
    return out


def _twilio(settings: Settings) -> Check:
    sid, sender = settings.twilio_account_sid or "", settings.twilio_from or ""
    problems = []
    if not _TWILIO_SID.match(sid):
        problems.append("PASSGATE_TWILIO_ACCOUNT_SID should be AC followed by 32 hexadecimal digits")
    if not (_e164(sender) or _MESSAGING_SERVICE_SID.match(sender) or _ALPHA_SENDER.match(sender)):
        problems.append(
            "PASSGATE_TWILIO_FROM should be a number in E.164 form (+12015550100), a messaging service "
            "SID (MG…) or an alphanumeric sender ID (up to 11 letters and digits)"
        )
    base = urlsplit(settings.twilio_base_url)
    if base.scheme != "https" and not _loopback(base.hostname or ""):
        problems.append("PASSGATE_TWILIO_BASE_URL should be https://")
    if problems:
        return Check("sms twilio", FAIL, "; ".join(problems))
    return Check(
        "sms twilio",
        OK,
        f"account {sid[:6]}…{sid[-4:]}, from {sender}, API {settings.twilio_base_url} "
        "(settings checked; no request made)",
    )


def _e164(value: str) -> bool:
    import phonenumbers

    try:
        return value.startswith("+") and phonenumbers.is_possible_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False


def _http_gateway(settings: Settings, timeout: float) -> Check:
    parts = urlsplit(settings.sms_http_url or "")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        how = "TCP"
        if parts.scheme == "https":
            with ssl.create_default_context().wrap_socket(sock, server_hostname=host):
                how = "TLS"
    ms = (time.monotonic() - started) * 1000
    status = OK if parts.scheme == "https" or _loopback(host) else WARN
    plain = "" if status == OK else "; plain http outside this machine"
    return Check(
        "sms http", status, f"{host}:{port} accepts a {how} connection ({ms:.0f} ms; no message sent){plain}"
    )


# -- the public URL ----------------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_url(settings: Settings, timeout: float) -> Check:
    import httpx

    url = settings.public_url
    parts = urlsplit(url)
    if not _loopback(parts.hostname or ""):
        if parts.scheme != "https" and settings.environment == "production":
            return Check("public url", WARN, f"{url}: links in messages use plain http")
        return Check(
            "public url", OK, f"{url} is well-formed (not a loopback address: not fetched from here)"
        )
    health = f"{url}/healthz"
    try:
        answer = httpx.get(health, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Check(
            "public url",
            FAIL,
            f"nothing answers at {health} ({_failure(exc)}): start passgate serve there, or set "
            "PASSGATE_PUBLIC_URL to where it listens",
        )
    try:
        passgate = answer.status_code == 200 and answer.json() == {"status": "ok"}
    except ValueError:
        passgate = False
    if not passgate:
        return Check(
            "public url",
            FAIL,
            f"{health} answered {answer.status_code}, not as Passgate does: is another program on that port?",
        )
    return Check("public url", OK, f"{health} answers")
