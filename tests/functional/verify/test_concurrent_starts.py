"""Starts at the same instant, and the answer of a start against the session as stored: with real SMTP
and a real HTTP SMS gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from passgate.bootstrap import Registry, build_registry
from passgate.clock import FrozenClock
from passgate.config import Settings
from passgate.db import transaction
from passgate.main import create_app
from passgate.messaging.models import Message
from passgate.mfa.models import MfaEvent, MfaSession
from tests.factories import Tenant
from tests.functional.mfa.conftest import drain
from tests.functional.verify.conftest import fetch, mails_to, sms_to, start
from tests.servers import HttpReceiver, SmtpSink

SAME_TIME = 20


def _fire(http: TestClient, tenant: Tenant, body: dict[str, Any], n: int = SAME_TIME) -> list[httpx.Response]:
    """`n` identical starts, released together from `n` threads."""
    gate = threading.Barrier(n)

    def send(_: int) -> httpx.Response:
        gate.wait(timeout=10)
        return start(http, tenant, **body)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(send, range(n)))


def _stored(registry: Registry, client_id: str, session_ids: set[str]) -> dict[str, int]:
    with transaction(registry.sessions) as s:
        sessions = s.scalar(
            select(func.count()).where(MfaSession.client_id == client_id, MfaSession.id.in_(session_ids))
        )
        messages = s.scalar(select(func.count()).where(Message.session_id.in_(session_ids)))
        kinds = s.execute(
            select(MfaEvent.type, func.count())
            .where(MfaEvent.session_id.in_(session_ids))
            .group_by(MfaEvent.type)
        ).all()
    return {"sessions": int(sessions or 0), "messages": int(messages or 0), **{k: int(n) for k, n in kinds}}


def _one_verification(answers: list[httpx.Response]) -> str:
    assert all(r.status_code in (200, 201) for r in answers), [
        r.text for r in answers if r.status_code >= 300
    ]
    assert sorted(r.status_code for r in answers) == [200] * (len(answers) - 1) + [201]
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1, ids
    assert {r.json()["sendAttempts"] for r in answers} == {1}
    return ids.pop()


def test_twenty_identical_email_starts_at_once_make_one_verification_and_one_mail(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink
) -> None:
    to = f"same.instant.{uuid.uuid4().hex[:12]}@example.com"
    answers = _fire(http, tenant, {"to": to, "channel": "email-code", "purpose": "signup"})
    vid = _one_verification(answers)
    # One session and one message; the other starts were handed the pending one (a REUSED row each).
    assert _stored(registry, tenant.client_id, {vid}) == {
        "sessions": 1,
        "messages": 1,
        "CREATED": 1,
        "REUSED": SAME_TIME - 1,
    }
    drain(registry)
    assert len(mails_to(smtp, to)) == 1
    assert fetch(http, tenant, vid).json()["status"] == "MESSAGE_SENT"


def test_twenty_identical_sms_starts_at_once_make_one_verification_and_one_sms(
    http: TestClient, tenant: Tenant, registry: Registry, gateway: HttpReceiver
) -> None:
    number = f"+1201555{random.randrange(10_000):04d}"
    answers = _fire(http, tenant, {"to": number, "channel": "sms-code", "purpose": "other"})
    vid = _one_verification(answers)
    stored = _stored(registry, tenant.client_id, {vid})
    assert (stored["sessions"], stored["messages"], stored["CREATED"]) == (1, 1, 1)
    drain(registry)
    assert len(sms_to(gateway, number)) == 1


def test_identical_starts_that_are_refused_are_each_refused(http: TestClient, tenant: Tenant) -> None:
    """A start that settles nothing (here: an unknown template) lets the next one run; each gets its own
    answer, and none waits for ever."""
    to = f"refused.{uuid.uuid4().hex[:12]}@example.com"
    answers = _fire(http, tenant, {"to": to, "channel": "email-code", "templateName": "no-such"}, n=8)
    assert [r.status_code for r in answers] == [400] * 8
    assert {e["field"] for r in answers for e in r.json()["errors"]} == {"templateName"}


def test_different_destinations_at_once_each_get_their_own(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    run = uuid.uuid4().hex[:12]
    gate = threading.Barrier(10)

    def send(i: int) -> httpx.Response:
        gate.wait(timeout=10)
        return start(http, tenant, to=f"many.{run}.{i}@example.com", channel="email-link")

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    assert _stored(registry, tenant.client_id, ids) == {"sessions": 10, "messages": 10, "CREATED": 10}


def _generated_start(rng: random.Random, run: str, i: int) -> dict[str, Any]:
    channel = rng.choice(["email-link", "email-code", "sms-link", "sms-code"])
    if channel.startswith("email"):
        to = f"Gen.{run}.{i}@{rng.choice(['example.com', 'EXAMPLE.org', 'example.net'])}"
    else:  # a prefix of its own per start: no send limit per prefix is reached
        to = f"+1{rng.choice(['201', '212', '415'])}{rng.randrange(200, 999)}{rng.randrange(10_000):04d}"
    body: dict[str, Any] = {"to": to, "channel": channel}
    if rng.random() < 0.7:
        body["purpose"] = rng.choice(["signup", "email_change", "password_reset", "other"])
    if rng.random() < 0.4:
        body["locale"] = rng.choice(["en", "es", "fr", "pt-BR", "de"])
    if channel.endswith("link") and rng.random() < 0.5:
        body["redirectUrl"] = f"https://shop.example/after/{i}?x={rng.randrange(100)}"
    if rng.random() < 0.4:
        body["customValues"] = {f"v{j}": f"value {rng.randrange(1000)}" for j in range(rng.randrange(1, 4))}
    return body


def test_a_start_answers_what_the_stored_session_reads(
    http: TestClient, tenant: Tenant, clock: FrozenClock
) -> None:
    """A start answers from the session's row as it writes it, without reading it back: on many generated
    starts (every channel and purpose, locales, redirect URLs, values; new and pending; times with
    microseconds), its answer is the one a GET of the stored verification gives right after."""
    rng = random.Random(20261207)
    run = uuid.uuid4().hex[:10]
    seen = 0
    for i in range(48):
        clock.advance(microseconds=rng.randrange(1, 999_999))
        body = _generated_start(rng, run, i)
        for expected in (201, 200) if rng.random() < 0.3 else (201,):
            r = start(http, tenant, **body)
            assert r.status_code == expected, (body, r.text)
            stored = fetch(http, tenant, r.json()["id"])
            assert stored.status_code == 200, (body, stored.text)
            assert r.json() == stored.json(), body
            seen += 1
    assert seen >= 48


def test_identical_starts_sent_to_two_api_processes_make_one_verification(
    http: TestClient,
    tenant: Tenant,
    registry: Registry,
    settings: Settings,
    engine: Engine,
    clock: FrozenClock,
    smtp: SmtpSink,
) -> None:
    """Two apps on the same database, each with its own group commit (as two API processes are): a start
    holds its key until it commits (PostgreSQL), so the other process's starts find its session."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one API process (passgate serve refuses more)")
    second = build_registry(settings, clock=clock, engine=engine)
    to = f"two.processes.{uuid.uuid4().hex[:12]}@example.com"
    gate = threading.Barrier(16)
    with TestClient(create_app(registry=second), raise_server_exceptions=False) as other:

        def send(i: int) -> httpx.Response:
            gate.wait(timeout=10)
            return start(http if i % 2 else other, tenant, to=to, channel="email-code", purpose="signup")

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, range(16)))
    vid = _one_verification(answers)
    stored = _stored(registry, tenant.client_id, {vid})
    assert (stored["sessions"], stored["messages"], stored["CREATED"], stored["REUSED"]) == (1, 1, 1, 15)
    drain(registry)
    assert len(mails_to(smtp, to)) == 1
