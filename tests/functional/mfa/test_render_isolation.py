"""The dispatcher renders each client's messages in the render pool, within a per-round allowance: a
client with heavy templates (or many messages) never holds up another's, and what it could not render
this round waits for the next one, not counted as an attempt."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from passgate.bootstrap import Registry
from passgate.messaging import dispatcher as dispatching
from passgate.messaging.models import Message, MessageAttempt
from passgate.messaging.render_pool import RenderPool
from tests.factories import Tenant
from tests.functional.mfa.conftest import challenge, drain
from tests.servers import SmtpSink


def messages_of(registry: Registry, tenant: Tenant) -> list[Message]:
    with registry.sessions() as s:
        return list(s.scalars(select(Message).where(Message.client_id == tenant.client_id)).all())


def test_a_clients_render_time_per_round_is_bounded_and_the_rest_waits_for_the_next_round(
    http: TestClient,
    tenant: Tenant,
    other_tenant: Tenant,
    registry: Registry,
    smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatching, "ROUND_RENDER_SECONDS", 0.0)  # every client: one message a round
    for i in range(3):
        challenge(http, tenant, "email-link", person={"emailAddress": f"a{i}@example.com"})
    challenge(http, other_tenant, "email-link", person={"emailAddress": "b@example.com"})

    assert asyncio.run(registry.dispatcher.run_once()) == 4
    sent = smtp.wait_for(2)
    assert sorted(r for m in sent for r in m.rcpt_tos) == ["a0@example.com", "b@example.com"]
    waiting = [m for m in messages_of(registry, tenant) if m.destination != "a0@example.com"]
    assert {(m.status, m.attempts, m.sealed_secret is not None) for m in waiting} == {("QUEUED", 0, True)}
    with registry.sessions() as s:
        tried = s.scalars(select(MessageAttempt.message_id).where(
            MessageAttempt.message_id.in_([m.id for m in waiting]))).all()  # fmt: skip
    assert tried == []

    drain(registry)
    assert len(smtp.wait_for(4)) == 4
    assert {(m.status, m.attempts) for m in messages_of(registry, tenant)} == {("SENT", 1)}


def test_a_render_that_outlasts_the_pools_timeout_is_retried(
    http: TestClient, tenant: Tenant, registry: Registry, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = registry.dispatcher
    slow = dispatcher._render

    def render(c: dispatching.Claimed) -> object:
        time.sleep(0.3)  # a machine too busy to finish a render in time
        return slow(c)

    monkeypatch.setattr(dispatcher, "_render", render)
    monkeypatch.setattr(dispatcher, "render_pool", RenderPool("test-render", threads=1, timeout=0.05))
    challenge(http, tenant, "email-link", person={"emailAddress": "slow@example.com"})
    asyncio.run(dispatcher.run_once())
    [message] = messages_of(registry, tenant)
    assert (message.status, message.attempts) == ("QUEUED", 1)
    assert message.last_error == "rendering did not finish within 0.05 s; try again"
    assert smtp.received == []
