"""`passgate check` against real services on loopback: the database (SQLite, and PostgreSQL when set up),
Redis (when set up), an SMTP server with STARTTLS and AUTH, an HTTP SMS gateway, a running Passgate."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from passgate.config import Settings
from passgate.db import make_engine
from passgate.doctor import run_checks
from passgate.migrate import upgrade
from tests.cli import passgate
from tests.functional.test_cli import start_serve, stop
from tests.servers import HttpReceiver, SmtpSink, free_port

SMTP_USER, SMTP_PASSWORD = "ops", "relay-pass-81"
TWILIO_SID = "AC" + "0123456789abcdef" * 2


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[SmtpSink, dict[str, str]]]:
    """An SMTP server that requires STARTTLS and AUTH, and the environment that makes a subprocess
    trust its certificate (OpenSSL reads SSL_CERT_FILE)."""
    sink = SmtpSink(credentials=(SMTP_USER, SMTP_PASSWORD), tls="starttls").start()
    cert = tmp_path / "relay.pem"
    cert.write_bytes(sink.cert_pem)
    yield sink, {"SSL_CERT_FILE": str(cert)}
    sink.stop()


@pytest.fixture
def sms_gateway() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def check(settings: Settings, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    out = passgate(settings, "check", "--json", *args, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def details(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"]}


def test_a_working_setup_passes_and_nothing_is_sent(
    settings: Settings,
    engine: Engine,
    relay: tuple[SmtpSink, dict[str, str]],
    sms_gateway: HttpReceiver,
) -> None:
    sink, trust = relay
    env = {
        **trust,
        "PASSGATE_SMTP_URL": sink.url,
        "PASSGATE_SMS_PROVIDER": "twilio,http",
        "PASSGATE_TWILIO_ACCOUNT_SID": TWILIO_SID,
        "PASSGATE_TWILIO_AUTH_TOKEN": "twilio-token-55",
        "PASSGATE_TWILIO_FROM": "+12015550100",
        "PASSGATE_SMS_HTTP_URL": f"{sms_gateway.url}/sms",
        "PASSGATE_PUBLIC_URL": "https://passgate.example.com",
    }
    redis_url = os.environ.get("PASSGATE_TEST_REDIS_URL")
    if redis_url:
        env["PASSGATE_REDIS_URL"] = redis_url
    code, report = check(settings, env)
    assert code == 0 and report["ok"] is True, report
    got = statuses(report)
    assert got == {
        "secret keys": "ok",
        "database": "ok",
        "migrations": "ok",
        "redis": "ok" if redis_url else "skip",
        "smtp": "ok",
        "sms twilio": "ok",
        "sms http": "ok",
        "public url": "ok",
    }
    said = details(report)
    assert "EHLO, STARTTLS, AUTH as ops (no mail sent)" in said["smtp"]
    assert ("PostgreSQL" if settings.database_url.startswith("postgresql") else "SQLite") in said["database"]
    assert sink.received == [] and sink.auth_seen == [SMTP_USER]
    assert sms_gateway.requests == []  # a connection only, no message
    assert "twilio-token-55" not in str(report) and SMTP_PASSWORD not in str(report)

    table = passgate(settings, "doctor", env=env)  # the other name, read by a person
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert table.stdout.rstrip().endswith("all checks passed")


def test_what_fails_is_said_and_the_exit_status_is_1(
    settings: Settings, engine: Engine, relay: tuple[SmtpSink, dict[str, str]]
) -> None:
    sink, trust = relay
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    env = {
        **trust,
        "PASSGATE_SMTP_URL": sink.url.replace(SMTP_PASSWORD, "wrong-password"),
        "PASSGATE_REDIS_URL": f"redis://127.0.0.1:{dead_port}/0",
        "PASSGATE_SMS_PROVIDER": "twilio",
        "PASSGATE_TWILIO_ACCOUNT_SID": "AC123",
        "PASSGATE_TWILIO_AUTH_TOKEN": "twilio-token-1",
        "PASSGATE_TWILIO_FROM": "not a sender!",
        "PASSGATE_PUBLIC_URL": f"http://127.0.0.1:{dead_port}",
    }
    code, report = check(settings, env, "--timeout", "3")
    assert code == 1 and report["ok"] is False
    got, said = statuses(report), details(report)
    assert (got["database"], got["migrations"]) == ("ok", "ok")
    assert got["smtp"] == "fail" and "SMTPAuthenticationError" in said["smtp"]
    assert got["redis"] == "fail" and "ConnectionError" in said["redis"]
    assert got["sms twilio"] == "fail" and "AC followed by 32" in said["sms twilio"]
    assert "PASSGATE_TWILIO_FROM should be" in said["sms twilio"]
    assert (
        got["public url"] == "fail"
        and f"nothing answers at http://127.0.0.1:{dead_port}/healthz" in said["public url"]
    )
    assert "wrong-password" not in str(report) and sink.received == []
    table = passgate(settings, "check", "--timeout", "3", env=env)
    assert table.returncode == 1 and table.stdout.rstrip().endswith("4 checks failed")


def test_pending_migrations_and_a_missing_database(tmp_path: Path, settings: Settings) -> None:
    old = tmp_path / "old.db"
    partly = make_engine(f"sqlite:///{old}")
    upgrade(partly, "0002")
    partly.dispose()
    code, report = check(settings.model_copy(update={"database_url": f"sqlite:///{old}"}), {})
    assert code == 1
    assert statuses(report)["migrations"] == "fail"
    assert (
        "pending" in details(report)["migrations"] and "run passgate migrate" in details(report)["migrations"]
    )

    missing = tmp_path / "nowhere.db"
    code, report = check(settings.model_copy(update={"database_url": f"sqlite:///{missing}"}), {})
    assert code == 1 and statuses(report)["database"] == "fail"
    assert "no such file yet" in details(report)["database"]
    assert not missing.exists()  # checking does not create it


def test_the_public_url_of_a_running_passgate(tmp_path: Path, settings: Settings, engine: Engine) -> None:
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        code, report = check(settings, {"PASSGATE_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    finally:
        stop(proc)
    assert statuses(report)["public url"] == "ok", report
    assert code == 0


def test_an_http_port_that_is_not_passgate(
    settings: Settings, engine: Engine, sms_gateway: HttpReceiver
) -> None:
    code, report = check(settings, {"PASSGATE_PUBLIC_URL": sms_gateway.url})
    assert code == 1 and statuses(report)["public url"] == "fail"
    assert "not as Passgate does" in details(report)["public url"]


def test_a_relay_without_starttls_is_a_warning(settings: Settings, engine: Engine) -> None:
    plain = SmtpSink().start()
    try:
        found = {
            c.name: c for c in run_checks(settings.model_copy(update={"smtp_url": plain.url}), timeout=3)
        }
    finally:
        plain.stop()
    assert found["smtp"].status == "warn" and "no STARTTLS offered" in found["smtp"].detail
    assert plain.received == []


def test_production_without_providers_warns(settings: Settings, engine: Engine) -> None:
    prod = settings.model_copy(
        update={"environment": "production", "public_url": "http://passgate.example.com"}
    )
    found = {c.name: c for c in run_checks(prod, timeout=3)}
    assert found["smtp"].status == "warn" and "email challenges will fail" in found["smtp"].detail
    assert found["sms"].status == "warn"
    assert found["public url"].status == "warn" and "plain http" in found["public url"].detail
