"""Helpers shared by the benchmarks in bench/: a throw-away Passgate workspace, servers started and
always stopped, health waits, tokens, the load generator, result files and tables.

Conventions every benchmark follows (bench/run_all.py relies on them):

- it is a script `bench/<name>.py` with argparse `--duration` and `--concurrency` (run_all forwards them);
- progress goes to stderr through `progress()`; the final table to stdout;
- it writes `bench/results/<name>-latest.json` through `write_result()`, with a one-line `summary`
  and a `verdict` of PASS, BELOW (measured fine, under target) or FAIL (the measurement is invalid);
- exit status 0 when the measurement is valid (PASS or BELOW), 1 when it is not (FAIL), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOADGEN = BENCH_DIR / "loadgen.py"
BARE_APP = BENCH_DIR / "bare_app.py"
LOOPBACK = "127.0.0.1"

_T0 = time.monotonic()


def progress(msg: str) -> None:
    """A progress line on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults only where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return action.help or ""
        if "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


class BenchError(Exception):
    """The benchmark cannot produce a valid measurement (setup failed, wrong answers, ...)."""


def sigterm_as_exit() -> None:
    """Make SIGTERM unwind the stack like Ctrl-C does, so `finally` blocks stop the servers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def venv_bin(name: str) -> Path:
    """An executable installed next to this interpreter (the venv's `passgate`)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise BenchError(f"{path} not found; install Passgate into this venv: pip install -e '.[dev]'")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------------------
# Servers


class Server:
    """A server process we started: stopped by its own handle, never by name."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], port: int, log_dir: Path) -> None:
        self.name = name
        self.port = port
        self.base_url = f"http://{LOOPBACK}:{port}"
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        # A session of its own: Ctrl-C in the terminal reaches only the benchmark, which then stops
        # the server in an orderly way (and we never signal anything but this process group).
        self.proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: str = "no answer yet"
        with httpx.Client(trust_env=False, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with status {self.proc.returncode} while starting:\n"
                        + self.log_tail()
                    )
                try:
                    r = http.get(self.base_url + path)
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.1)
        raise BenchError(f"{self.name} not healthy after {timeout:g} s ({last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            self._log.flush()
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn: graceful shutdown
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# ----------------------------------------------------------------------------------------------------
# A throw-away Passgate installation


class Workspace:
    """A temp folder holding a SQLite database, the environment pointing Passgate at it, and every
    server started for the benchmark. Use as a context manager: servers stopped, folder removed,
    whatever happens."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"passgate-bench-{name}-"))
        self.servers: list[Server] = []
        # Start from the caller's environment less any PASSGATE_* (a developer's SMTP or Redis
        # settings must not leak into the measurement).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")}
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        env.update(
            {
                "PASSGATE_DATABASE_URL": f"sqlite:///{self.dir / 'bench.db'}",
                "PASSGATE_SECRET_KEYS": "".join(secrets.choice(alphabet) for _ in range(48)),
                "PASSGATE_DATA_DIR": str(self.dir / "data"),
                "PASSGATE_LOG_LEVEL": "WARNING",
                "PASSGATE_WORKERS_IN_PROCESS": "true",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        self.env = env

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        errors = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{server.name}: {exc}")
        self.servers.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            progress("trouble stopping servers: " + "; ".join(errors))

    # -- the CLI ---------------------------------------------------------------------------------

    def passgate_json(self, *args: str) -> dict[str, Any]:
        argv = [str(venv_bin("passgate")), *args, "--json"]
        proc = subprocess.run(argv, env=self.env, cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise BenchError(f"`passgate {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr}")
        try:
            return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            raise BenchError(f"`passgate {' '.join(args)}` printed no JSON:\n{proc.stdout}") from None

    def create_client(
        self, name: str = "Bench", scope: str = "admin", sandbox: bool = False
    ) -> tuple[str, str]:
        """A client and an API key for it: (clientId, apiKey)."""
        extra = ["--sandbox"] if sandbox else []
        client_id = str(self.passgate_json("client", "create", "--name", name, *extra)["clientId"])
        key = self.passgate_json("apikey", "create", "--client", client_id, "--scope", scope)
        return client_id, str(key["apiKey"])

    # -- servers ---------------------------------------------------------------------------------

    def start(self, name: str, argv: Sequence[str], port: int) -> Server:
        server = Server(name, argv, self.env, port, self.dir)
        self.servers.append(server)
        return server

    def start_passgate(self, port: int | None = None) -> Server:
        """`passgate serve` as production runs it: one process on the SQLite file."""
        port = port or free_port()
        return self.start("passgate", [str(venv_bin("passgate")), "serve", "--port", str(port)], port)

    def start_bare(self, port: int | None = None) -> Server:
        port = port or free_port()
        return self.start("bare", [sys.executable, str(BARE_APP), "--port", str(port)], port)


@contextmanager
def pg_schema(database_url: str, prefix: str = "bench") -> Iterator[str]:
    """A throw-away schema in the PostgreSQL database of `database_url`; yields the URL that puts it first
    on the search path, drops it (and everything in it) at the end. Stop the servers using it first."""
    from sqlalchemy import text

    from passgate.db import make_engine

    schema = f"{prefix}_{secrets.token_hex(4)}"
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in database_url else "?"
        try:
            yield f"{database_url}{sep}options=-csearch_path%3D{schema}"
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------------
# HTTP for setup (low volume; the load itself comes from loadgen.py)


def in_process_site(
    ws: Workspace, allow_all: dict[str, Any], first_login: dict[str, Any]
) -> tuple[Any, str, str, str]:
    """For the benchmarks that drive Passgate in their own process: a registry on `ws`'s database (workers
    off), a client with the default LOGIN set and the bench device known to it (published allow-all, one
    login, the default set again). Returns (registry, clientId, its API key, a bearer token); the caller
    closes the registry."""
    from fastapi.testclient import TestClient

    from passgate.bootstrap import build_registry
    from passgate.config import Settings
    from passgate.main import create_app
    from passgate.policy.schemas import default_document

    client_id, api_key = ws.create_client("Live")  # also migrates the database
    settings = Settings(
        database_url=ws.env["PASSGATE_DATABASE_URL"],
        secret_keys=ws.env["PASSGATE_SECRET_KEYS"],
        data_dir=ws.env["PASSGATE_DATA_DIR"],
        workers_in_process="off",
        log_level="WARNING",
    )
    registry = build_registry(settings)
    with TestClient(create_app(registry=registry)) as http:
        token = http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "k1_integration_api admin"},
            auth=(client_id, api_key),
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        sets = "/manage/v1/policy-sets/LOGIN"
        for step in (
            http.put(f"{sets}/draft", json=allow_all, headers=headers),
            http.post(f"{sets}/publish", headers=headers),
            http.post("/login/v2", json=first_login, headers=headers),
            http.put(f"{sets}/draft", json=default_document("LOGIN"), headers=headers),
            http.post(f"{sets}/publish", headers=headers),
        ):
            if step.status_code >= 300:
                raise SystemExit(f"setup failed: {step.status_code} {step.text[:300]}")
    return registry, client_id, api_key, token


def http_client(base_url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=30.0, trust_env=False)


def expect_status(resp: httpx.Response, *codes: int) -> Any:
    if resp.status_code not in codes:
        raise BenchError(
            f"{resp.request.method} {resp.request.url.path} answered {resp.status_code}, "
            f"expected {'/'.join(map(str, codes))}: {resp.text[:500]}"
        )
    return resp.json() if resp.content else None


def get_token(base_url: str, client_id: str, api_key: str, scope: str = "k1_integration_api admin") -> str:
    basic = base64.b64encode(f"{client_id}:{api_key}".encode()).decode()
    with httpx.Client(timeout=30.0, trust_env=False) as http:
        resp = http.post(
            base_url + "/oauth2/token",
            data={"grant_type": "client_credentials", "scope": scope},
            headers={"Authorization": f"Basic {basic}"},
        )
    return str(expect_status(resp, 200)["access_token"])


# ----------------------------------------------------------------------------------------------------
# The load generator, in a process of its own


def run_loadgen(
    url: str,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    method: str = "GET",
    headers: Sequence[str] = (),
    body: bytes | None = None,
    body_template: bytes | None = None,
    start: int = 0,
    expect: str | None = None,
    workdir: Path,
    extra: Sequence[str] = (),
    cpu_of: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Runs bench/loadgen.py against `url` and returns its JSON result.

    With `cpu_of` ({name: pid}), the result also has `cpu`: the CPU each of those processes and the
    load generator itself used during the measured seconds (warm-up excluded), as a share of one core."""
    argv = [
        sys.executable,
        str(LOADGEN),
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--method",
        method,
        "--quiet",
    ]
    if headers:  # through a file, so a bearer token does not show in `ps`
        path = workdir / f"headers-{secrets.token_hex(4)}.txt"
        path.touch(mode=0o600)
        path.write_text("".join(f"{h}\n" for h in headers))
        argv += ["--headers-file", str(path)]
    if body is not None:
        path = workdir / f"body-{secrets.token_hex(4)}.json"
        path.write_bytes(body)
        argv += ["--body-file", str(path)]
    if body_template is not None:
        path = workdir / f"template-{secrets.token_hex(4)}.json"
        path.write_bytes(body_template)
        argv += ["--body-template-file", str(path), "--start", str(start)]
    if expect is not None:
        argv += ["--expect", expect]
    argv += list(extra)
    limit = warmup + duration + 60
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        meter = CpuWindow({**(cpu_of or {}), "loadgen": proc.pid}, warmup, duration) if cpu_of else None
        try:
            out, err = proc.communicate(timeout=limit)
        except BaseException:  # timeout, Ctrl-C: never leave the load running
            proc.kill()
            proc.communicate()
            raise
    if proc.returncode != 0:
        raise BenchError(f"loadgen failed ({proc.returncode}):\n{err}")
    try:
        result = dict(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise BenchError(f"loadgen printed no result:\n{out}\n{err}") from None
    if meter is not None:
        result["cpu"] = meter.shares()
    return result


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU of some processes over a window that opens `delay` s from now and lasts `length` s (a timer
    thread takes the two readings, so the caller can block on the load meanwhile)."""

    def __init__(self, pids: dict[str, int], delay: float, length: float) -> None:
        self.pids = pids
        self.length = length
        self.readings: list[tuple[float, dict[str, float | None]]] = []
        self._timers = [threading.Timer(delay + t, self._read) for t in (0.0, length)]
        for timer in self._timers:
            timer.daemon = True
            timer.start()

    def _read(self) -> None:
        self.readings.append((time.monotonic(), {n: cpu_seconds(p) for n, p in self.pids.items()}))

    def shares(self) -> dict[str, float]:
        """{name: share of one core} over the window; empty when the load ended before it closed."""
        for timer in self._timers:
            timer.cancel()
        if len(self.readings) < 2:
            return {}
        (t0, a), (t1, b) = self.readings[:2]
        out = {}
        for name in self.pids:
            x, y = a[name], b[name]
            if x is not None and y is not None:
                out[name] = round((y - x) / (t1 - t0), 3)
        return out


def cpu_line(cpu: dict[str, float], rps: float) -> str:
    """`server 0.98 core (0.52 ms/req), ...`: where the CPU of a run went, per process."""
    if not cpu:
        return "cpu: n/a"
    parts = [
        f"{name} {share:.2f} core ({share * 1000 / rps:.2f} ms/req)" if rps else f"{name} {share:.2f} core"
        for name, share in cpu.items()
    ]
    return "cpu: " + ", ".join(parts) + f"; total {sum(cpu.values()):.2f} of {os.cpu_count()} cores"


# ----------------------------------------------------------------------------------------------------
# Results


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    ignore = RESULTS_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*.json\n")
    path = RESULTS_DIR / f"{name}-latest.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A plain-text table; `align` has one letter per column, l or r (default: first l, others r)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r: list[str]) -> str:
        pairs = zip(r, widths, align, strict=True)
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in pairs).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


@contextmanager
def interrupt_guard() -> Iterator[None]:
    """Turns SIGTERM into KeyboardInterrupt for the duration, restoring the old handler after."""
    old = signal.getsignal(signal.SIGTERM)
    sigterm_as_exit()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
