"""`passgate serve` with its default PASSGATE_WORKERS_IN_PROCESS (process): the delivery workers run in a child
process it supervises. A real `passgate serve` subprocess and a real SMTP server: mail goes out through the
child; a child killed is replaced and mail goes out again; the child stops when serve stops, and when
serve is killed without a chance to stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET
from tests.factories import Tenant, login_body
from tests.servers import SmtpSink, free_port

pytestmark = pytest.mark.slow


def _wait(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not reaped by whoever adopted it, counts as stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Serve:
    def __init__(self, database_url: str, smtp: SmtpSink, tmp_path: Path) -> None:
        self.port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")},
            "PASSGATE_DATABASE_URL": database_url,
            "PASSGATE_SECRET_KEYS": TEST_SECRET,
            "PASSGATE_SMTP_URL": smtp.url,
            "PASSGATE_DATA_DIR": str(tmp_path / "data"),
            "PASSGATE_LOG_LEVEL": "INFO",
        }
        self.log = tmp_path / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "passgate.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.base = f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def worker(self) -> int | None:
        children = _children(self.proc.pid)
        return children[0] if len(children) == 1 else None

    def challenge(self, tenant: Tenant, email: str) -> None:
        body = login_body(strategy={"mfaTemplateName": "email-link"}, person={"emailAddress": email})
        r = httpx.post(f"{self.base}/login/v2", json=body, headers=tenant.headers, timeout=30)
        assert r.status_code == 200 and r.json()["mfa"]["error"] is None, r.text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _mailed(smtp: SmtpSink, email: str) -> Callable[[], bool]:
    return lambda: any(email in m.rcpt_tos for m in smtp.received)


def test_the_delivery_worker_is_a_child_restarted_when_killed_and_stopped_with_serve(
    database_url: str, http: TestClient, tenant: Tenant, smtp: SmtpSink, tmp_path: Path
) -> None:
    serve = Serve(database_url, smtp, tmp_path)
    try:
        assert _wait(serve.up, 120), serve.log.read_text()[-2000:]
        assert _wait(serve.worker, 30), _children(serve.proc.pid)
        first = serve.worker()
        assert first is not None
        serve.challenge(tenant, "one@example.com")
        assert _wait(_mailed(smtp, "one@example.com"), 60), serve.log.read_text()[-2000:]

        os.kill(first, signal.SIGKILL)
        assert _wait(lambda: serve.worker() not in (None, first), 60), serve.log.read_text()[-2000:]
        second = serve.worker()
        assert second is not None and _alive(second)
        assert "delivery worker exited" in serve.log.read_text()
        serve.challenge(tenant, "two@example.com")
        assert _wait(_mailed(smtp, "two@example.com"), 60), serve.log.read_text()[-2000:]
        assert serve.proc.poll() is None  # the API never stopped
    finally:
        serve.stop()
    assert serve.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on
    assert not _alive(second)


def test_the_delivery_worker_stops_when_serve_is_killed(
    database_url: str, smtp: SmtpSink, tmp_path: Path
) -> None:
    serve = Serve(database_url, smtp, tmp_path)
    try:
        assert _wait(serve.up, 120), serve.log.read_text()[-2000:]
        assert _wait(serve.worker, 30)
        child = serve.worker()
        assert child is not None
        serve.proc.kill()  # no chance to stop its child
        serve.proc.wait(10)
        assert _wait(lambda: not _alive(child), 30), f"the worker {child} outlived serve"
    finally:
        serve.stop()
