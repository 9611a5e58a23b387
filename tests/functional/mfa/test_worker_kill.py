"""Delivery is at least once, and a crash duplicates only what was in flight: a real `passgate worker`
is SIGKILLed while it sends many mails to a real SMTP server; the next worker sends every message that
was not recorded as sent, and a mail arrives twice only if the server took it in the moment before the
kill (same Message-ID, same link).

"In flight" is measured from the SMTP server's side: a mail it accepted more than `WINDOW` seconds before
the kill must have been recorded as sent, and must not come again."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.messaging.models import Message
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge
from tests.functional.mfa.test_delivery import _worker
from tests.servers import ReceivedMail, SmtpSink

# A worker records an accepted mail within a few tens of milliseconds plus one transaction; a second is
# far more, even on a busy 2-core machine.
WINDOW = 1.0


def _queue(http: TestClient, tenant: Tenant, emails: list[str]) -> None:
    for email in emails:
        out = challenge(http, tenant, "email-link", person={"emailAddress": email})
        assert out["mfa"]["error"] is None, out


def _outbox_ids(registry: Registry, tenant: Tenant) -> set[str]:
    with registry.sessions() as s:
        return set(s.scalars(select(Message.id).where(Message.client_id == tenant.client_id)))


def _message_id(mail: ReceivedMail) -> str:
    return str(mail.message["Message-ID"]).strip("<>").split("@")[0]


def _wait(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _kill(proc: subprocess.Popen[bytes]) -> float:
    at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return at


def _finish(
    registry: Registry, tenant: Tenant, smtp: SmtpSink, database_url: str, tmp: Path, url: str
) -> None:
    """A second worker sends what is left; returns once every message is recorded SENT."""
    second = _worker(database_url, tmp, url)
    try:

        def all_sent() -> bool:
            with registry.sessions() as s:
                statuses = s.scalars(select(Message.status).where(Message.client_id == tenant.client_id))
                return all(status == "SENT" for status in statuses)

        assert _wait(all_sent, 60), "the second worker did not send everything"
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(15)
        except subprocess.TimeoutExpired:
            second.kill()


def _check(
    registry: Registry, tenant: Tenant, smtp: SmtpSink, killed_at: float
) -> tuple[int, int, list[str]]:
    """Nothing lost, duplicates only of mails accepted within WINDOW of the kill, each copy the same.
    Returns (mails received, outbox messages, duplicated ids)."""
    expected = _outbox_ids(registry, tenant)
    mails = [m for m in smtp.received if _message_id(m) in expected]
    seen = Counter(_message_id(m) for m in mails)
    assert set(seen) == expected, f"lost: {sorted(expected - set(seen))[:5]}"
    duplicated = [mid for mid, n in seen.items() if n > 1]
    for mid in duplicated:
        copies = [m for m in mails if _message_id(m) == mid]
        first = min(copies, key=lambda m: m.at)
        assert killed_at - first.at < WINDOW, (
            f"{mid} was accepted {killed_at - first.at:.2f} s before the kill and sent again: it was not "
            f"in flight ({len(duplicated)} duplicated in all)"
        )
        # The same message: the same link, sealed in the outbox for the worker that takes it over.
        assert len({m.part("text/plain") for m in copies}) == 1
    return len(mails), len(expected), duplicated


def test_a_killed_worker_leaves_no_accepted_mail_unrecorded_behind_a_slow_one(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    # One slow transaction in the round: the others were accepted long before the kill. Recorded only
    # with the whole round, they were all sent again.
    smtp.stall_data, smtp.stall_rcpt = 60.0, {"slow@example.com"}
    _queue(http, tenant, [f"quick{i}@example.com" for i in range(59)] + ["slow@example.com"])
    url = f"{smtp.url}?pool=8"
    first = _worker(database_url, tmp_path, url)
    try:
        assert _wait(lambda: smtp.stalled.is_set() and len(smtp.received) >= 59, 60), "not sent"
        time.sleep(2 * WINDOW)  # the 59 are long done
        killed_at = _kill(first)
    finally:
        if first.poll() is None:
            first.kill()
    smtp.stall_data, smtp.stall_rcpt = 0.0, set()
    _finish(registry, tenant, smtp, database_url, tmp_path, url)
    received, messages, duplicated = _check(registry, tenant, smtp, killed_at)
    assert (received, messages, duplicated) == (60, 60, [])


def test_a_worker_killed_mid_stream_duplicates_at_most_the_mails_in_flight(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    # 200 mails through 4 connections at about 40 a second; the kill lands in the middle of the stream.
    smtp.data_delay = 0.1
    _queue(http, tenant, [f"stream{i}@example.com" for i in range(200)])
    url = f"{smtp.url}?pool=4"
    first = _worker(database_url, tmp_path, url)
    try:
        assert _wait(lambda: len(smtp.received) >= 80, 60), "not sent"
        killed_at = _kill(first)
    finally:
        if first.poll() is None:
            first.kill()
    smtp.data_delay = 0.0
    _finish(registry, tenant, smtp, database_url, tmp_path, url)
    received, messages, duplicated = _check(registry, tenant, smtp, killed_at)
    assert messages == 200 and received == 200 + len(duplicated)
