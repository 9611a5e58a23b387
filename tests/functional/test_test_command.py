"""`make test` says which PostgreSQL and Redis variants it left out, and why, in one line at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "tests/unit/policy/test_velocity.py"


def pytest_run(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_TEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", SAMPLE, "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_variants_left_out_are_named_with_the_reason() -> None:
    [line] = [line for line in pytest_run().splitlines() if line.startswith("NOT RUN")]
    assert "the PostgreSQL variants of" in line and "(PASSGATE_TEST_DATABASE_URL is unset)" in line
    assert "the Redis variants of" in line and "(PASSGATE_TEST_REDIS_URL is unset)" in line


def test_nothing_is_said_of_what_did_run() -> None:
    servers = {
        k: v for k, v in os.environ.items() if k in ("PASSGATE_TEST_DATABASE_URL", "PASSGATE_TEST_REDIS_URL")
    }
    if not servers:
        import pytest

        pytest.skip("needs PASSGATE_TEST_DATABASE_URL or PASSGATE_TEST_REDIS_URL (CI sets both)")
    said = [line for line in pytest_run(**servers).splitlines() if line.startswith("NOT RUN")]
    if len(servers) == 2:
        assert said == []
    else:
        [line] = said
        named = "Redis" if "PASSGATE_TEST_DATABASE_URL" in servers else "PostgreSQL"
        assert named in line and ("PostgreSQL" if named == "Redis" else "Redis") not in line
