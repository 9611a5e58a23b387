"""The command line as a user meets it: real subprocesses in an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "passgate.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["serve", "--help"],
        ["client", "create", "--help"],
        ["apikey", "create", "--help"],
        ["worker", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_helps(args: list[str], tmp_path: Path) -> None:
    out = run(args, tmp_path)
    assert out.returncode == 0
    assert "usage: passgate" in out.stdout


def test_client_and_key_creation_print_json(tmp_path: Path) -> None:
    created = run(["client", "create", "--name", "Acme", "--country", "gb", "--json"], tmp_path)
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    assert client["clientId"].startswith("cl_") and client["country"] == "GB"
    key = run(["apikey", "create", "--client", client["clientId"], "--scope", "admin", "--json"], tmp_path)
    assert key.returncode == 0, key.stderr
    assert json.loads(key.stdout)["apiKey"].startswith("pgk_")
    assert (tmp_path / "passgate.db").exists()  # the embedded default
    missing = run(["apikey", "create", "--client", "cl_nope", "--json"], tmp_path)
    assert missing.returncode != 0 and "no client" in missing.stderr
    bad = run(["client", "create", "--name", "X", "--country", "USA"], tmp_path)
    assert bad.returncode != 0 and "two-letter" in bad.stderr


def test_serve_answers_on_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "passgate.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not come up")
        assert httpx.get(f"http://127.0.0.1:{port}/dev/inbox").status_code == 200
        assert (tmp_path / ".passgate" / "secret_key").exists()  # generated dev secret
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


def test_demo_reaches_verified(tmp_path: Path) -> None:
    out = run(["demo", "--json", "--data-dir", str(tmp_path / "demo")], tmp_path, timeout=90)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result == {"status": "VERIFIED", "nextDecision": "ALLOW", "dataDir": str(tmp_path / "demo")}


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_the_http_sms_gateway_needs_its_secret_in_production(command: list[str], tmp_path: Path) -> None:
    env = {
        "PASSGATE_ENVIRONMENT": "production",
        "PASSGATE_SECRET_KEYS": "k" * 40,
        "PASSGATE_SMTP_URL": "smtp://127.0.0.1:25",
        "PASSGATE_SMS_PROVIDER": "http",
        "PASSGATE_SMS_HTTP_URL": "https://gateway.example/sms",
    }
    out = run(command, tmp_path, env=env)
    assert out.returncode != 0
    assert "PASSGATE_SMS_HTTP_SECRET" in out.stderr and "Traceback" not in out.stderr, out.stderr
