"""Build Passgate's wheel, install it into a fresh virtualenv as a deployment would, and check that
`passgate serve` answers /healthz.

1. The wheel is built from a copy of the working tree with the locked build backend, Python warnings
   turned into errors: a build that warns fails here.
2. A new virtualenv gets requirements.lock (`--require-hashes`), then the wheel (`--no-deps`), then
   `pip check` confirms the wheel's declared ranges accept the locked versions.
3. `passgate serve` starts from that virtualenv in an empty folder (SQLite, dev settings) on a free
   loopback port; /healthz must answer within a minute. Only the process started here is stopped.

Every step is bounded in time; the temporary folder is removed at the end. Exit status 0 when all went
well. Run it with the project's virtualenv: `make wheel-check` (CI runs it after `make test`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", ".cache", "artifacts", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".mypy_cache", ".ruff_cache", "passgate.db*", ".passgate", "node_modules")  # fmt: skip
START_SECONDS = 60


def step(text: str) -> None:
    print(f"wheel check: {text}", flush=True)


def run(args: list[str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wheel check: `{' '.join(args)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_wheel(work: Path) -> Path:
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    out = work / "dist"
    out.mkdir()
    code = f"import setuptools.build_meta as backend; print(backend.build_wheel({str(out)!r}))"
    run([sys.executable, "-W", "error", "-c", code], source, timeout=300)
    [wheel] = out.glob("passgate-*.whl")
    step(f"built {wheel.name} (no warnings)")
    return wheel


def install(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work, timeout=120)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(ROOT / "requirements.lock")],
        work, timeout=900)  # fmt: skip
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], work, timeout=300)
    run([str(python), "-m", "pip", "check"], work, timeout=120)
    step(f"installed into a fresh virtualenv from requirements.lock ({venv})")
    return venv


def serve(work: Path, venv: Path) -> None:
    folder = work / "run"
    folder.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")}
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(venv / "bin" / "passgate"), "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:  # noqa: S310
                    body = answer.read()
                if answer.status == 200 and b'"ok"' in body:
                    step(f"passgate serve answered /healthz on 127.0.0.1:{port}: {body.decode()}")
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise SystemExit(
            f"wheel check: passgate serve did not answer /healthz within {START_SECONDS} s:\n"
            + (work / "serve.log").read_text(errors="replace")[-4000:]
        )
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="passgate-wheel-") as tmp:
        work = Path(tmp)
        serve(work, install(work, build_wheel(work)))
    step("ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
