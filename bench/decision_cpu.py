#!/usr/bin/env python3
"""A decision's CPU against the bare endpoint's, in one process, through ASGI (no server, no socket).

What it does:

1. `prepare DIR`: a SQLite file with a client, its API key, the bench device known under the default
   LOGIN set (as bench/decisions.py sets it up), and what a run needs to reach it, written to DIR;
2. `run DIR`: a copy of that file, Passgate's app and bench/bare_app.py's app in this process, on uvloop
   as `passgate serve` runs; then rounds, each of --per-round logins (every one an ALLOW with its own
   inquiryId) and as many bare requests, sent --concurrency at a time straight to the ASGI apps; the CPU
   of this thread (`time.thread_time`) per request of each kind, per round; the medians as JSON on the
   last line.

Why: through HTTP on a shared machine the ratio moves by 0.1 between runs of one build; this moves a
few per cent, so a change's effect shows when the old and the new code are run in turn (separate
processes, `PYTHONPATH` pointing at each checkout: the script itself only needs Passgate importable).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Workspace, in_process_site, progress
from decisions import ACCOUNT_ID, ALLOW_ALL, login_body  # noqa: F401  (ACCOUNT_ID: the device's account)

META = "meta.json"
_COUNTER = itertools.count(1)  # every login its own inquiryId


def prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with Workspace("decision_cpu") as ws:
        registry, client_id, api_key, _ = in_process_site(ws, ALLOW_ALL, login_body("setup1"))
        registry.close()
        shutil.copy(ws.dir / "bench.db", directory / "bench.db")
        (directory / META).write_text(
            json.dumps(
                {"client_id": client_id, "api_key": api_key, "secret_keys": ws.env["PASSGATE_SECRET_KEYS"]}
            )
        )
    progress(f"prepared {directory}")


class Driver:
    """Requests straight to an ASGI app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def call(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


async def lifespan(app: Any) -> Any:
    ctx = app.router.lifespan_context(app)
    await ctx.__aenter__()
    return ctx


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    from bare_app import create_app as create_bare
    from passgate.bootstrap import build_registry
    from passgate.config import Settings
    from passgate.main import create_app
    from passgate.runtime import tune_gc

    meta = json.loads((args.dir / META).read_text())
    work = Path(tempfile.mkdtemp(prefix="passgate-decision-cpu-"))
    try:
        shutil.copy(args.dir / "bench.db", work / "bench.db")
        settings = Settings(
            database_url=f"sqlite:///{work / 'bench.db'}",
            secret_keys=meta["secret_keys"],
            data_dir=str(work / "data"),
            workers_in_process="off",
            log_level="WARNING",
        )
        registry = build_registry(settings)
        app = create_app(registry=registry)
        bare = create_bare()
        ctx = await lifespan(app)
        try:
            return await _rounds(args, meta, app, bare, tune_gc)
        finally:
            await ctx.__aexit__(None, None, None)
            registry.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _rounds(
    args: argparse.Namespace, meta: dict[str, Any], app: Any, bare: Any, tune_gc: Any
) -> dict[str, Any]:
    import base64

    passgate, floor = Driver(app), Driver(bare)
    basic = base64.b64encode(f"{meta['client_id']}:{meta['api_key']}".encode())
    status, raw = await passgate.call(
        "POST",
        "/oauth2/token",
        [(b"authorization", b"Basic " + basic), (b"content-type", b"application/x-www-form-urlencoded")],
        b"grant_type=client_credentials&scope=k1_integration_api",
    )
    if status != 200:
        raise SystemExit(f"token: {status} {raw[:300]!r}")
    token = json.loads(raw)["access_token"]
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]
    template = json.dumps(login_body("inq__N__"), separators=(",", ":"))

    def login_bytes() -> bytes:
        return template.replace("__N__", str(next(_COUNTER))).encode()

    async def logins(n: int) -> float:
        if n == 0:
            return 0.0
        t0 = time.thread_time()
        for start in range(0, n, args.concurrency):
            results = await asyncio.gather(
                *(
                    passgate.call("POST", "/login/v2", headers, login_bytes())
                    for _ in range(min(args.concurrency, n - start))
                )
            )
            for status, raw in results:
                if status != 200 or b'"decision":"ALLOW"' not in raw:
                    raise SystemExit(f"login answered {status}: {raw[:300]!r}")
        return (time.thread_time() - t0) / n * 1e6

    async def bares(n: int) -> float:
        if n == 0:
            return 0.0
        body = login_bytes()
        t0 = time.thread_time()
        for start in range(0, n, args.concurrency):
            results = await asyncio.gather(
                *(floor.call("POST", "/bare", headers, body) for _ in range(min(args.concurrency, n - start)))
            )
            for status, raw in results:
                if status != 200:
                    raise SystemExit(f"bare answered {status}: {raw[:300]!r}")
        return (time.thread_time() - t0) / n * 1e6

    decisions_too, bare_too = args.only in ("both", "decisions"), args.only in ("both", "bare")
    await logins(args.warmup if decisions_too else 0)
    await bares(args.warmup if bare_too else 0)
    tune_gc()
    decisions: list[float] = []
    floors: list[float] = []
    for _ in range(args.rounds):
        decisions.append(await logins(args.per_round if decisions_too else 0) or 1.0)
        floors.append(await bares(args.per_round if bare_too else 0) or 1.0)
    gc.collect()
    return {
        "decision_us": statistics.median(decisions),
        "bare_us": statistics.median(floors),
        "ratio": statistics.median(f / d for f, d in zip(floors, decisions, strict=True)),
        "decision_rounds": [round(x, 1) for x in decisions],
        "bare_rounds": [round(x, 1) for x in floors],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/decision_cpu.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("prepare", "run"))
    p.add_argument("dir", type=Path, help="where `prepare` writes the database and `run` reads it")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--per-round", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument(
        "--only",
        choices=("both", "decisions", "bare"),
        default="both",
        help="send only one kind (e.g. under valgrind, where two counts of requests are compared)",
    )
    args = p.parse_args(argv)
    if not (1 <= args.rounds <= 100 and 1 <= args.per_round <= 100_000 and 0 <= args.warmup <= 100_000):
        p.error("--rounds 1 to 100, --per-round 1 to 100,000, --warmup 0 to 100,000")
    if args.command == "prepare":
        prepare(args.dir)
        return 0
    from passgate.runtime import run_event_loop

    result = run_event_loop(measure(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
