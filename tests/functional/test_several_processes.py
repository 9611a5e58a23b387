"""Several processes, one cluster: `passgate serve --workers 2` and two `passgate worker` processes on
PostgreSQL and Redis. Challenges go through both API processes; the limits hold for the cluster, every
message is sent once, every webhook event is delivered once, and the periodic jobs run once per period
in the whole cluster, not once per process."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from passgate import leases
from passgate.config import Settings
from passgate.db import make_engine
from passgate.worker import PURGE_JOB
from tests.conftest import TEST_SECRET
from tests.factories import Tenant, login_body
from tests.functional.webhooks.conftest import create_endpoint
from tests.servers import HttpReceiver, SmtpSink, free_port

pytestmark = pytest.mark.slow

# Addresses of this run only: the send limits live in Redis, which outlives a run (and counts per day).
RUN = secrets.token_hex(4)
SAME = f"same-{RUN}@example.com"
OTHERS = 16
SAME_TRIES = 8
# mfa.services.DESTINATION_SEND_RATES: five sends per destination in ten minutes.
SAME_SENT = 5


@pytest.fixture
def hooks() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def settings(settings: Settings, smtp: SmtpSink) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True, "smtp_url": smtp.url})


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _access_pids(log: Path) -> Counter[int]:
    pids: Counter[int] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "passgate.access" and entry.get("route") == "/login/v2":
            pids[int(entry["pid"])] += 1
    return pids


def test_two_api_processes_and_two_workers_make_one_cluster(
    database_url: str,
    http: TestClient,
    tenant: Tenant,
    smtp: SmtpSink,
    hooks: HttpReceiver,
    tmp_path: Path,
) -> None:
    redis_url = os.environ.get("PASSGATE_TEST_REDIS_URL")
    if not database_url.startswith("postgresql"):
        pytest.skip("several API processes need PostgreSQL: the postgresql variant runs this test")
    if not redis_url:
        pytest.skip("several API processes need Redis (PASSGATE_TEST_REDIS_URL is unset)")
    create_endpoint(http, tenant, f"{hooks.url}/hooks", "standard-webhooks")
    port = free_port()
    env = {
        **os.environ,
        "PASSGATE_DATABASE_URL": database_url,
        "PASSGATE_REDIS_URL": redis_url,
        "PASSGATE_SECRET_KEYS": TEST_SECRET,
        "PASSGATE_SMTP_URL": smtp.url,
        "PASSGATE_DATA_DIR": str(tmp_path),
        "PASSGATE_WORKERS_IN_PROCESS": "false",
        "PASSGATE_WEBHOOK_ALLOW_PRIVATE": "true",
        "PASSGATE_PURGE_INTERVAL_SECONDS": "1",
        "PASSGATE_LOG_LEVEL": "INFO",
    }
    serve_log = tmp_path / "serve.log"
    started = time.monotonic()
    with serve_log.open("wb") as out:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "passgate.cli", "serve", "--port", str(port), "--workers", "2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        ]
    procs += [
        subprocess.Popen(
            [sys.executable, "-m", "passgate.cli", "worker", "--poll", "0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        # Both API processes answer: each healthz on a new connection goes to whichever accepts it.
        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait(up, 120), f"serve --workers 2 did not answer: {serve_log.read_text()[-2000:]}"
        assert _wait(lambda: serve_log.read_text().count("Application startup complete") >= 2, 120)

        # New connection per request, so the kernel hands them to either process.
        fresh = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        outcomes: dict[str, list[str | None]] = {}
        emails = [f"p{i}-{RUN}@example.com" for i in range(OTHERS)] + [SAME] * SAME_TRIES
        for email in emails:
            body = login_body(strategy={"mfaTemplateName": "email-link"}, person={"emailAddress": email})
            r = fresh.post("/login/v2", json=body, headers=tenant.headers)
            assert r.status_code == 200, r.text
            outcomes.setdefault(email, []).append(r.json()["mfa"]["error"])
        fresh.close()

        # The send limit is the cluster's: five sends to one address in ten minutes, not five per process.
        assert Counter(outcomes[SAME]) == {None: SAME_SENT, "RATE_LIMITED": SAME_TRIES - SAME_SENT}
        assert all(errors == [None] for email, errors in outcomes.items() if email != SAME)
        expected_mails = OTHERS + SAME_SENT

        # Every message sent once, by one of the two workers.
        assert _wait(lambda: len(smtp.received) >= expected_mails, 90), len(smtp.received)
        time.sleep(3)  # a second copy, if any, would arrive meanwhile
        ids = Counter(str(m.message["Message-ID"]) for m in smtp.received)
        assert len(ids) == expected_mails and set(ids.values()) == {1}, ids.most_common(3)

        # Every webhook event delivered once (each challenge's first status, at least).
        assert _wait(lambda: len(hooks.requests) >= expected_mails, 90), len(hooks.requests)
        time.sleep(3)
        event_ids = Counter(rec.headers.get("webhook-id") for rec in hooks.requests)
        assert set(event_ids.values()) == {1}, event_ids.most_common(3)

        # Both API processes took decisions.
        pids = _access_pids(serve_log)
        assert len(pids) == 2, pids

        # The purge ran about once a second in the whole cluster, not once a second per worker.
        time.sleep(4)
        elapsed = time.monotonic() - started
        engine = make_engine(database_url)
        try:
            with Session(engine) as session:
                runs = leases.runs(session, PURGE_JOB)
        finally:
            engine.dispose()
        assert 2 <= runs <= elapsed / 0.9 + 1, (runs, elapsed)
    finally:
        _stop(procs)
