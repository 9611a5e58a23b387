#!/usr/bin/env python3
"""ALLOW decisions with one API process and with two (`passgate serve --workers 1|2`), on PostgreSQL and
Redis, alternated in the same run.

What it does, in one command:

1. a throw-away schema in the PostgreSQL database of `--database-url` (dropped at the end), a Redis
   database (`--redis-url`), random secret keys, a client and an admin API key made by the `passgate` CLI;
2. `passgate serve --workers 1` and `passgate serve --workers 2` on two ports, both with their delivery
   workers in process as the default runs them, the bench device made known (as bench/decisions.py);
3. load from bench/loadgen.py: one, two, one, two, ... (`--rounds`), every login a distinct inquiry that
   must answer 200 ALLOW;
4. requests/s of each run, the ratio two/one (median over rounds), and the CPU of each API process, of
   PostgreSQL's and Redis's servers and of the load generator, as a share of a core and per request.

The ratio says what a second API process buys on this machine: on 2 cores shared with PostgreSQL and the
load generator, less than 2. Everything started is stopped, and the schema dropped, on success, error or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
from typing import Any

from _common import (
    BenchError,
    HelpFormatter,
    Server,
    Workspace,
    cpu_line,
    free_port,
    get_token,
    interrupt_guard,
    progress,
    run_loadgen,
    table,
    venv_bin,
    write_result,
)
from decisions import ALLOW_MARK, check_run, login_template, prepare_known_device

NAME = "processes"


def children(pid: int) -> list[int]:
    """The processes `pid` started (uvicorn's API processes under its supervisor)."""
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    pids = []
    for p in out.split():
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if b"resource_tracker" in f.read():
                    continue  # multiprocessing's helper, not an API process
        except OSError:
            continue
        pids.append(int(p))
    return pids


def server_pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, timeout=10).stdout
    return [int(p) for p in out.split()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/processes.py",
        description="POST /login/v2 (ALLOW) with `passgate serve --workers 1` and `--workers 2` on PostgreSQL "
        "and Redis, alternated in one run; prints the ratio and the CPU per request of each process.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    p.add_argument("-d", "--duration", type=float, default=8.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=32, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    p.add_argument("-r", "--rounds", type=int, default=2, help="pairs of runs (one process, then two)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60 or not 1 <= args.rounds <= 10:
        raise SystemExit("processes.py: --duration in (0, 600], --warmup in [0, 60], --rounds 1..10")
    schema = "bench_" + secrets.token_hex(4)
    try:
        with interrupt_guard(), Workspace(NAME) as ws:
            _schema(args.database_url, f"CREATE SCHEMA {schema}")
            try:
                return run(args, ws, schema)
            finally:
                ws.close()  # the servers stop before their schema goes
                _schema(args.database_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except KeyboardInterrupt:
        progress("interrupted; servers stopped, workspace removed")
        return 130
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        return 1


def _schema(url: str, statement: str) -> None:
    from sqlalchemy import text

    from passgate.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def run(args: argparse.Namespace, ws: Workspace, schema: str) -> int:
    sep = "&" if "?" in args.database_url else "?"
    ws.env["PASSGATE_DATABASE_URL"] = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
    ws.env["PASSGATE_REDIS_URL"] = args.redis_url
    progress(f"schema {schema}; creating a client and an admin API key (passgate CLI)")
    client_id, api_key = ws.create_client("Bench")
    servers: dict[int, Server] = {}
    for n in (1, 2):
        port = free_port()
        argv = [str(venv_bin("passgate")), "serve", "--port", str(port), "--workers", str(n)]
        servers[n] = ws.start(f"serve-{n}", argv, port)
    for server in servers.values():
        server.wait_healthy(timeout=120)
    prepare_known_device(servers[1].base_url, get_token(servers[1].base_url, client_id, api_key))

    template = login_template()
    counter = 0
    runs: list[dict[str, Any]] = []
    problems: list[str] = []
    redis = server_pids("redis-server")
    for r in range(args.rounds):
        for n in (1, 2):
            server = servers[n]
            token = get_token(server.base_url, client_id, api_key)
            pids = {"supervisor": server.proc.pid} if n == 2 else {}
            api = [server.proc.pid] if n == 1 else children(server.proc.pid)
            pids.update({f"api{i + 1}": pid for i, pid in enumerate(api)})
            # Every PostgreSQL process (other databases' backends too, on a shared machine).
            pids.update({f"postgres{i}": pid for i, pid in enumerate(server_pids("postgres"))})
            if redis:
                pids["redis"] = redis[0]
            progress(f"round {r + 1}: --workers {n} ({len(api)} API process(es))")
            result = run_loadgen(
                f"{server.base_url}/login/v2",
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
                method="POST",
                headers=[f"Authorization: Bearer {token}", "Content-Type: application/json"],
                body_template=template,
                start=counter,
                expect=ALLOW_MARK,
                workdir=ws.dir,
                cpu_of=pids,
            )
            counter += int(result["requests_sent"])
            check_run(f"--workers {n}", result, problems)
            runs.append({"round": r + 1, "workers": n, **result})
    if problems:
        raise BenchError("; ".join(problems))

    ratios = []
    rows = []
    for r in range(args.rounds):
        one, two = (x for x in runs if x["round"] == r + 1)
        ratios.append(two["rps"] / one["rps"] if one["rps"] else 0.0)
        for x in (one, two):
            cpu = _summed(x.get("cpu", {}))
            rows.append(
                [
                    r + 1,
                    x["workers"],
                    f"{x['rps']:,.0f}",
                    f"{x['latency_ms']['p50']:.2f}",
                    f"{x['latency_ms']['p99']:.2f}",
                ]
            )
            print(f"  round {r + 1} --workers {x['workers']}: {cpu_line(cpu, x['rps'])}")
    ratio = statistics.median(ratios)
    print(table(["round", "workers", "req/s", "p50 ms", "p99 ms"], rows))
    print(f"ratio two processes / one: {ratio:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    write_result(NAME, {"benchmark": NAME, "ratio": ratio, "ratios": ratios, "runs": runs})
    return 0


def _summed(cpu: dict[str, float]) -> dict[str, float]:
    """PostgreSQL's backends added into one line."""
    out: dict[str, float] = {}
    for name, share in cpu.items():
        key = "postgres" if name.startswith("postgres") else name
        out[key] = round(out.get(key, 0.0) + share, 3)
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
