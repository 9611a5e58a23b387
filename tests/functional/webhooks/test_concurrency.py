"""One slow receiver ties up only its own delivery slots; the others keep flowing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from passgate.bootstrap import Registry
from passgate.config import Settings
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import Hooks, create_endpoint, deliverer, public_keys
from tests.servers import HttpReceiver, Recorded

PER_ENDPOINT = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"webhook_endpoint_concurrency": PER_ENDPOINT, "webhook_timeout_seconds": 10.0}
    )


def test_a_slow_endpoint_does_not_stall_the_others(
    http: TestClient, tenant: Tenant, registry: Registry
) -> None:
    release = threading.Event()
    in_flight = 0
    most = 0
    count_lock = threading.Lock()
    slow = Hooks(HttpReceiver().start())
    fast = Hooks(HttpReceiver().start())
    slow_verify = slow.respond

    def stuck(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        nonlocal in_flight, most
        with count_lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            release.wait(10)
            return slow_verify(rec)
        finally:
            with count_lock:
                in_flight -= 1

    slow.receiver.responder = stuck
    try:
        slow.endpoint = create_endpoint(http, tenant, slow.url, events=["Decision.Created"])
        fast.endpoint = create_endpoint(http, tenant, fast.url, events=["Decision.Created"])
        slow.public_keys = fast.public_keys = public_keys(http, tenant)
        for _ in range(5):
            assert http.post("/login/v2", json=login_body(), headers=tenant.headers).status_code == 200

        async def run() -> tuple[int, int]:
            worker = deliverer(registry)
            deadline = time.monotonic() + 5
            while len(fast.accepted) < 5 and time.monotonic() < deadline:
                await worker.run_once()
                await asyncio.sleep(0.02)
            stuck_requests = len(slow.receiver.requests)
            fast_done = len(fast.accepted)
            release.set()  # let the slow receiver answer, then finish everything
            await worker.drain(seconds=10)
            return fast_done, stuck_requests

        fast_done, stuck_requests = asyncio.run(run())
        assert fast_done == 5  # all of the fast endpoint's events went through meanwhile
        assert stuck_requests == PER_ENDPOINT  # the slow one never had more than its slots
        assert most <= PER_ENDPOINT
        assert len(slow.accepted) == 5 and not slow.bad_signatures
    finally:
        release.set()
        slow.receiver.stop()
        fast.receiver.stop()
