from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.clock import FrozenClock
from passgate.messaging.models import Message, MessageAttempt
from tests.conftest import TEST_SECRET
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain, session_of, timeline
from tests.servers import HttpReceiver, SmtpSink

PHONE = "+12015550123"


def attempts(registry: Registry, session_id: str) -> list[MessageAttempt]:
    with registry.sessions() as s:
        mid = s.scalars(select(Message.id).where(Message.session_id == session_id)).one()
        return list(
            s.scalars(
                select(MessageAttempt).where(MessageAttempt.message_id == mid).order_by(MessageAttempt.id)
            )
        )


def test_smtp_down_then_back_is_retried_and_delivered(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, clock: FrozenClock
) -> None:
    smtp.stop()
    m = challenge(http, tenant, "email-link", person={"emailAddress": "retry@example.com"})["mfa"]
    drain(registry)
    assert session_of(http, tenant, m["ID"])["status"] == "UNKNOWN"
    clock.advance(3)
    drain(registry)  # still down: second failure
    assert [a.result for a in attempts(registry, m["ID"])] == ["retry", "retry"]
    smtp.start()
    drain(registry)  # not due yet
    assert not smtp.received
    clock.advance(3)
    drain(registry)
    assert len(smtp.wait_for(1)) == 1
    assert [a.result for a in attempts(registry, m["ID"])] == ["retry", "retry", "sent"]
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"


def test_smtp_permanent_refusal_makes_the_session_invalid(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    smtp.reject_rcpt = True
    m = challenge(http, tenant, "email-link", person={"emailAddress": "nobody@example.com"})["mfa"]
    drain(registry)
    s = session_of(http, tenant, m["ID"])
    assert (s["status"], s["deliveryStatus"]) == ("INVALID", "UNDELIVERED")
    assert [a.result for a in attempts(registry, m["ID"])] == ["failed"]
    assert "550" in (attempts(registry, m["ID"])[0].error or "")
    assert any(e["type"] == "MESSAGE_FAILED" for e in timeline(http, tenant, m["ID"]))


def test_retries_run_out_loudly(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver, clock: FrozenClock
) -> None:
    gateway.responder = lambda rec: (503, {}, b"busy")
    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    for _ in range(5):
        drain(registry)
        clock.advance(3)
    assert [a.result for a in attempts(registry, m["ID"])] == ["retry", "retry", "retry", "failed"]
    assert session_of(http, tenant, m["ID"])["status"] == "INVALID"


def test_smtp_auth_is_used_over_starttls(http: TestClient, tenant: Tenant, registry: Registry) -> None:
    from passgate.messaging.senders.smtp import SmtpEmailSender

    sink = SmtpSink(credentials=("mailer", "s3cret pass"), tls="starttls").start()
    try:
        url = sink.url.replace("s3cret pass", "s3cret%20pass")
        registry.dispatcher.email_sender = SmtpEmailSender(url, tls_context=sink.client_context())
        challenge(http, tenant, "email-code", person={"emailAddress": "auth@example.com"})
        drain(registry)
        assert len(sink.wait_for(1)) == 1
        assert sink.auth_seen == ["mailer"]
    finally:
        sink.stop()


def test_smtp_credentials_are_not_sent_to_a_relay_without_starttls(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    from passgate.messaging.senders.smtp import SmtpEmailSender

    # A relay that offers no STARTTLS and takes a login in clear: the send fails, the reason recorded.
    sink = SmtpSink(credentials=("mailer", "s3cret")).start()
    try:
        registry.dispatcher.email_sender = SmtpEmailSender(sink.url)
        m = challenge(http, tenant, "email-code", person={"emailAddress": "clear@example.com"})["mfa"]
        drain(registry)
        assert sink.auth_seen == [] and sink.received == []
        s = session_of(http, tenant, m["ID"])
        assert (s["status"], s["deliveryStatus"]) == ("FAILED_AUTHORIZATION", "UNDELIVERED")
        [attempt] = attempts(registry, m["ID"])
        assert attempt.result == "failed" and "offers no STARTTLS" in (attempt.error or "")
        assert "s3cret" not in (attempt.error or "")
        failed = [e for e in timeline(http, tenant, m["ID"]) if e["type"] == "MESSAGE_FAILED"]
        assert "never sent in clear" in failed[0]["data"]["reason"]
    finally:
        sink.stop()


def test_twenty_concurrent_right_answers_verify_once(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    import re

    m = challenge(http, tenant, "sms-code", person={"phoneNumber": PHONE})["mfa"]
    drain(registry)
    code = re.search(r"#(\d{6})$", gateway.requests[-1].json()["body"]).group(1)  # type: ignore[union-attr]
    barrier = threading.Barrier(20)

    def go(_: int) -> int:
        barrier.wait()
        return http.post(f"/mfa/v2/{m['ID']}/verify", json={"code": code}, headers=tenant.headers).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(go, range(20)))
    assert codes.count(200) == 1, codes
    assert codes.count(409) == 19, codes
    changes = [
        e
        for e in timeline(http, tenant, m["ID"])
        if e["type"] == "STATUS_CHANGED" and e["data"]["to"] == "VERIFIED"
    ]
    assert len(changes) == 1


def _worker(database_url: str, tmp: Path, smtp_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PASSGATE_DATABASE_URL": database_url,
        "PASSGATE_SECRET_KEYS": TEST_SECRET,
        "PASSGATE_SMTP_URL": smtp_url,
        "PASSGATE_DATA_DIR": str(tmp),
        "PASSGATE_MESSAGE_LOCK_SECONDS": "2",
        "PASSGATE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "worker", "--poll", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_worker_killed_mid_send_loses_nothing(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    smtp.stall_data = 30.0
    m = challenge(http, tenant, "email-link", person={"emailAddress": "killed@example.com"})["mfa"]
    first = _worker(database_url, tmp_path, smtp.url)
    try:
        assert smtp.stalled.wait(20), "the worker never reached the SMTP server"
        first.send_signal(signal.SIGKILL)  # mid-send: the message was claimed, the DATA is in flight
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert not smtp.received
    with registry.sessions() as s:
        assert s.scalars(select(Message.status).where(Message.session_id == m["ID"])).one() == "SENDING"
    smtp.stall_data = 0.0
    second = _worker(database_url, tmp_path, smtp.url)
    try:
        deadline = time.monotonic() + 20
        while not smtp.received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(10)
        except subprocess.TimeoutExpired:
            second.kill()
    assert len(smtp.received) == 1
    assert smtp.received[0].rcpt_tos == ["killed@example.com"]
    with registry.sessions() as s:
        msg = s.scalars(select(Message).where(Message.session_id == m["ID"])).one()
    assert (msg.status, msg.attempts) == ("SENT", 2)
    assert session_of(http, tenant, m["ID"])["status"] == "MESSAGE_SENT"


def test_a_message_whose_session_closed_first_is_not_sent(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    m = challenge(http, tenant, "email-link", person={"emailAddress": "late@example.com"})["mfa"]
    r = http.post(f"/mfa/v2/{m['ID']}/cancel", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert drain(registry) == 0  # claimed, found closed, not sent
    assert not smtp.received
    with registry.sessions() as s:
        message = s.scalars(select(Message).where(Message.session_id == m["ID"])).one()
        assert (message.status, message.attempts, message.sealed_secret) == ("FAILED", 0, None)
        assert message.last_error and message.last_error.startswith("not sent: session ")
    assert attempts(registry, m["ID"]) == []
    assert any(e["type"] == "MESSAGE_SKIPPED" for e in timeline(http, tenant, m["ID"]))


def test_concurrent_claims_take_each_message_once(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    ids = [
        challenge(http, tenant, "email-link", person={"emailAddress": f"c{i}@example.com"})["mfa"]["ID"]
        for i in range(30)
    ]
    with ThreadPoolExecutor(4) as pool:
        rounds = list(pool.map(lambda _: registry.dispatcher.claim(limit=10), range(4)))
    claimed = [c.message_id for r in rounds for c in r]
    assert len(claimed) == len(set(claimed)) == 30
    assert all(c.attempt == 1 and c.secret for r in rounds for c in r)
    with registry.sessions() as s:
        rows = s.scalars(select(Message).where(Message.session_id.in_(ids))).all()
        assert {m.status for m in rows} == {"SENDING"}
        assert {m.locked_by for m in rows} == {registry.dispatcher.worker_id}


def test_secrets_made_before_the_claim_are_stored_only_for_the_messages_it_takes(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, clock: FrozenClock
) -> None:
    from passgate.mfa.models import MfaSecret

    dispatcher = registry.dispatcher
    assert dispatcher.look_ahead(10) is None  # nothing due: no claim, no write
    ids = [
        challenge(http, tenant, "email-link", person={"emailAddress": f"la{i}@example.com"})["mfa"]["ID"]
        for i in range(3)
    ]
    premade = dispatcher.look_ahead(10)
    assert premade is not None and len(premade) == 3
    # Another worker takes the oldest first; then a fourth message becomes due after the look ahead.
    [first] = dispatcher.claim(limit=1)
    late = challenge(http, tenant, "email-link", person={"emailAddress": "late@example.com"})["mfa"]["ID"]
    taken = {c.message_id: c for c in dispatcher.claim(limit=10, premade=premade)}
    assert len(taken) == 3 and first.message_id not in taken
    with registry.sessions() as s:
        by_message = {mid: sid for mid, sid in s.execute(select(Message.id, Message.session_id))}
        secrets = {
            sid: s.scalars(select(MfaSecret).where(MfaSecret.session_id == sid)).all() for sid in [*ids, late]
        }
    assert all(len(rows) == 1 for rows in secrets.values())  # one secret each: no premade one left behind
    for mid, c in taken.items():
        [stored] = secrets[by_message[mid]]
        if by_message[mid] == late:  # due after the look ahead: made at the claim
            assert mid not in premade
        else:  # made before the claim, stored by it, and the value that goes out
            secret, _ = premade[mid]
            assert (stored.id, c.secret) == (secret.secret_id, secret.value)
    # The premade secret of the message the other worker took was never stored.
    assert secrets[by_message[first.message_id]][0].id != premade[first.message_id][0].secret_id
    clock.advance(61)  # the claims above were never sent: taken over once their lock ends
    drain(registry)
    sent = " ".join(m.part("text/plain") for m in smtp.wait_for(4))
    assert all(c.secret and c.secret in sent for c in [first, *taken.values()])


def test_a_session_cancelled_while_its_sent_message_is_recorded_stays_cancelled(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, clock: FrozenClock
) -> None:
    """A round's record is worked out on a read snapshot and written later (SQLite): a session cancelled
    in between is not moved back to MESSAGE_SENT; the record runs again with the write lock held."""
    import asyncio
    import sqlite3

    import pytest

    from passgate.db.group_commit import InlineCommitter
    from passgate.messaging.dispatcher import Sent

    url = str(registry.engine.url)
    if not url.startswith("sqlite:///"):
        pytest.skip("read snapshots and a single write lock are SQLite's")
    m = challenge(http, tenant, "email-link", person={"emailAddress": "racing@example.com"})["mfa"]
    [claimed] = registry.dispatcher.claim(limit=10)
    sent = Sent(claimed, "smtp", "<queue-1>", clock.now())
    computed: list[int] = []

    def record(session):  # type: ignore[no-untyped-def]
        computed.append(1)
        registry.dispatcher._record_sent(session, [sent])

    async def scenario() -> None:
        committer = InlineCommitter(registry.sessions)
        committer.start()
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            task = asyncio.ensure_future(committer.run_deferred(record))
            await asyncio.sleep(0.05)
            assert computed == [1] and not task.done()  # worked out; its writes wait for the lock
            # The session is cancelled meanwhile (as POST …/cancel would leave it).
            other.execute(
                "UPDATE mfa_sessions SET status = 'TERMINATED', termination_reason = 'CANCELLED', "
                "sequence = sequence + 1 WHERE id = ?",
                (m["ID"],),
            )
            other.execute("COMMIT")
            await task
        finally:
            other.close()
            committer.stop()

    asyncio.run(scenario())
    assert len(computed) == 2  # the stale write was refused and the record ran again
    assert session_of(http, tenant, m["ID"])["status"] == "TERMINATED"
    with registry.sessions() as s:
        message = s.scalars(select(Message).where(Message.session_id == m["ID"])).one()
        assert (message.status, message.provider_message_id, message.sealed_secret) == (
            "SENT",
            "<queue-1>",
            None,
        )
    events = timeline(http, tenant, m["ID"])
    assert [e["type"] for e in events].count("MESSAGE_SENT") == 1
    assert not [
        e for e in events if e["type"] == "STATUS_CHANGED" and e.get("data", {}).get("to") == "MESSAGE_SENT"
    ]


def test_claims_worked_out_on_one_snapshot_still_take_each_message_once(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    """Two rounds' claims worked out on read snapshots while the write lock is taken see the same due
    messages; when written, the second finds them claimed (its guard fails), runs again under the lock,
    and takes the rest."""
    import asyncio
    import sqlite3

    import pytest

    from passgate.db.group_commit import InlineCommitter

    url = str(registry.engine.url)
    if not url.startswith("sqlite:///"):
        pytest.skip("read snapshots and a single write lock are SQLite's")
    ids = [
        challenge(http, tenant, "email-link", person={"emailAddress": f"snap{i}@example.com"})["mfa"]["ID"]
        for i in range(6)
    ]
    dispatcher = registry.dispatcher

    async def scenario() -> list[list[str]]:
        committer = InlineCommitter(registry.sessions)
        committer.start()
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            tasks = [
                asyncio.ensure_future(committer.run_deferred(lambda s: dispatcher._claim_on_snapshot(s, 4)))
                for _ in range(2)
            ]
            await asyncio.sleep(0.05)
            assert committer.snapshot_batches >= 1 and not any(t.done() for t in tasks)
            other.execute("COMMIT")
            rounds = await asyncio.gather(*tasks)
        finally:
            other.close()
            committer.stop()
        return [[m.id for m, _, _ in r] for r in rounds]

    first, second = asyncio.run(scenario())
    assert len(first) == 4 and len(second) == 2 and not set(first) & set(second)
    with registry.sessions() as s:
        rows = s.scalars(select(Message).where(Message.session_id.in_(ids))).all()
        assert sorted(m.status for m in rows) == ["SENDING"] * 6
        assert {m.attempts for m in rows} == {1} and all(m.secret_id and m.sealed_secret for m in rows)
        from passgate.mfa.models import MfaSecret

        secrets = s.scalars(select(MfaSecret).where(MfaSecret.session_id.in_(ids))).all()
        assert len(secrets) == 6  # one per message: nothing of the refused write was kept


def test_the_timeline_lists_creation_queueing_sending_and_the_status_change(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    from passgate.mfa.models import MfaEvent

    m = challenge(http, tenant, "email-link", person={"emailAddress": "timeline@example.com"})["mfa"]
    drain(registry)
    events = timeline(http, tenant, m["ID"])
    assert [(e["type"], e["source"]) for e in events] == [
        ("CREATED", "api"),
        ("MESSAGE_QUEUED", "api"),
        ("MESSAGE_SENT", "worker"),
        ("STATUS_CHANGED", "worker"),
    ]
    created, queued, sent, changed = (e["data"] for e in events)
    assert set(created) == {"decisionId", "templateName", "locale", "sandbox"}
    with registry.sessions() as s:
        message_id = s.scalars(select(Message.id).where(Message.session_id == m["ID"])).one()
        stored = s.scalars(select(MfaEvent).where(MfaEvent.session_id == m["ID"])).all()
    assert queued == {"messageId": message_id, "send": 1}
    assert sent == {"messageId": message_id, "provider": "smtp", "attempt": 1}
    assert changed == {"from": "UNKNOWN", "to": "MESSAGE_SENT"}
    assert events[0]["at"] == events[1]["at"] and events[2]["at"] == events[3]["at"]
    assert len(stored) == 2  # each pair is one row


def test_a_rounds_record_and_the_next_claim_are_written_together(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    """A long-running worker on SQLite writes a round's record and the next round's claim in one
    transaction; the next round sends what was claimed, and a stopping worker sends it without claiming
    more (`run_once(chain=False)`)."""
    import asyncio

    import pytest

    from passgate.db.group_commit import InlineCommitter

    if not str(registry.engine.url).startswith("sqlite:///"):
        pytest.skip("read snapshots and a single write lock are SQLite's")
    ids = [
        challenge(http, tenant, "email-link", person={"emailAddress": f"chain{i}@example.com"})["mfa"]["ID"]
        for i in range(5)
    ]
    dispatcher = registry.dispatcher

    def statuses() -> list[str]:
        with registry.sessions() as s:
            by_session = {
                m.session_id: m.status for m in s.scalars(select(Message).where(Message.session_id.in_(ids)))
            }
        return [by_session[i] for i in ids]

    async def scenario() -> list[tuple[int, int, list[str], bool]]:
        committer = dispatcher.committer = InlineCommitter(registry.sessions)
        committer.start()
        dispatcher.keep_connections = True
        steps = []
        try:
            for chain in (True, True, False):
                before = committer.batches
                sent = await dispatcher.run_once(limit=2, chain=chain)
                steps.append((sent, committer.batches - before, statuses(), dispatcher.has_claimed))
            # A claim ahead that came back empty (another worker took everything meanwhile): the next
            # round looks for itself.
            ids.append(
                challenge(http, tenant, "email-link", person={"emailAddress": "chain5@example.com"})["mfa"][
                    "ID"
                ]
            )
            dispatcher._claimed_ahead = []
            steps.append(
                (await dispatcher.run_once(limit=2, chain=False), 0, statuses(), dispatcher.has_claimed)
            )
        finally:
            dispatcher.keep_connections = False
            await dispatcher.release()
            committer.stop()
        return steps

    try:
        steps = asyncio.run(scenario())
    finally:
        dispatcher.committer = registry.committer
    # Round 1 claims two in a transaction of its own, and its record claims the next two: two writes.
    assert steps[0] == (2, 2, ["SENT", "SENT", "SENDING", "SENDING", "QUEUED"], True)
    # Round 2 sends those; its record claims the last one: one write for both.
    assert steps[1] == (2, 1, ["SENT", "SENT", "SENT", "SENT", "SENDING"], True)
    # A stopping worker's round sends what was claimed, and claims nothing more.
    assert steps[2] == (1, 1, ["SENT"] * 5, False)
    assert steps[3] == (1, 0, ["SENT"] * 6, False)
    assert sorted(m.rcpt_tos[0] for m in smtp.wait_for(6)) == sorted(
        f"chain{i}@example.com" for i in range(6)
    )


def test_a_long_running_worker_spaces_rounds_that_were_not_full(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    """A round that took fewer messages than it could is followed by the next no sooner than
    `round_spacing` after it began, so that under a steady load each round takes what came meanwhile
    instead of a few messages; a full round goes on at once, and a one-off round never waits."""
    import asyncio
    import time

    dispatcher = registry.dispatcher
    emails = iter(range(100))

    def challenges(n: int) -> None:
        for _ in range(n):
            challenge(
                http, tenant, "email-link", person={"emailAddress": f"spaced{next(emails)}@example.com"}
            )

    async def timed(limit: int) -> tuple[int, float]:
        started = time.monotonic()
        sent = await dispatcher.run_once(limit=limit)
        if dispatcher.has_claimed:
            sent += await dispatcher.run_once(limit=limit, chain=False)
        return sent, time.monotonic() - started

    async def scenario() -> list[tuple[int, float]]:
        dispatcher.keep_connections = True
        dispatcher.round_spacing = 1.0
        try:
            challenges(1)
            not_full = await timed(limit=5)
            challenges(2)
            full = await timed(limit=2)
        finally:
            dispatcher.keep_connections = False
            dispatcher.round_spacing = 0.0
            await dispatcher.release()
        return [not_full, full]

    (one, waited), (two, at_once) = asyncio.run(scenario())
    assert one == 1 and waited >= 1.0
    assert two == 2 and at_once < 1.0
    # One-off rounds (a script, a test) do not wait, whatever the spacing says.
    dispatcher.round_spacing = 1.0
    try:
        challenges(1)
        started = time.monotonic()
        assert asyncio.run(dispatcher.run_once(limit=5)) == 1
        assert time.monotonic() - started < 1.0
    finally:
        dispatcher.round_spacing = 0.0
    assert len(smtp.wait_for(4)) == 4
