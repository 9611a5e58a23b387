"""Running `passgate` as an operator does: a subprocess, on the tests' database and secret keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from passgate.config import Settings


def passgate(
    settings: Settings,
    *args: str,
    stdin: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`passgate ARGS` with the tests' database, keys and data folder, and `env` on top."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")}
    full.update(
        PASSGATE_DATABASE_URL=settings.database_url,
        PASSGATE_SECRET_KEYS=settings.secret_keys or "",
        PASSGATE_DATA_DIR=str(settings.data_dir),
        PASSGATE_LOG_LEVEL="WARNING",
        **(env or {}),
    )
    return subprocess.run(
        [sys.executable, "-m", "passgate.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def passgate_json(settings: Settings, *args: str, stdin: str | None = None) -> Any:
    out = passgate(settings, *args, "--json", stdin=stdin)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)
