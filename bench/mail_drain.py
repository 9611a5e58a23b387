#!/usr/bin/env python3
"""A backlog drained by one `passgate worker`: the worker's CPU per message, with nothing else to do.

1. a throw-away workspace and `passgate serve` with no delivery workers (PASSGATE_WORKERS_IN_PROCESS=false)
   on a SQLite file; a client whose bench device is known, so a new device is a CHALLENGE;
2. `--count` challenges made through `POST /login/v2` (bench/loadgen.py, closed loop): `email-link` to a
   new address each (`--channel email`), or `sms-code` to a new Berlin number each (`--channel sms`); the
   messages wait in the outbox; then `passgate serve` stops and the file is checkpointed;
3. per run: a copy of that file, the lean SMTP server (bench/_smtpsink.py) or SMS gateway
   (bench/_httpsink.py) in a process of its own, and one `passgate worker` on the copy. Its CPU (utime +
   stime from /proc) is read when the first message arrives and again once every message is recorded
   SENT: **the worker's CPU per message** is the difference ÷ the messages sent in between;
4. `--worker-src DIR` (repeatable) runs the worker with PYTHONPATH=DIR: the same backlog drained by two
   versions of the code, alternated `--rounds` times (A B A B ...), medians printed.

Nothing but the worker runs during a drain (the load generator and the API have stopped), so the figure
moves little with the machine's load; the load average is printed with it. Writes
bench/results/mail_drain-latest.json.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    HelpFormatter,
    Workspace,
    cpu_seconds,
    expect_status,
    free_port,
    get_token,
    http_client,
    interrupt_guard,
    progress,
    run_loadgen,
    table,
    venv_bin,
    write_result,
)
from challenge import CHALLENGE_MARK, SMS_FIRST, SMS_PREFIX, LeanSink, as_template, login, sms_login

NAME = "mail_drain"


def make_backlog(args: argparse.Namespace, ws: Workspace, smtp_port: int, sms_port: int) -> Path:
    """The workspace's database with `args.count` challenge messages queued; returns its path."""
    ws.env["PASSGATE_WORKERS_IN_PROCESS"] = "false"
    ws.env["PASSGATE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    ws.env["PASSGATE_MAIL_FROM"] = "Bench <bench@passgate.example>"
    ws.env["PASSGATE_SMS_PROVIDER"] = "http"
    ws.env["PASSGATE_SMS_HTTP_URL"] = f"http://127.0.0.1:{sms_port}/sms"
    client_id, key = ws.create_client("Live")
    server = ws.start_passgate()
    server.wait_healthy()
    base = server.base_url
    with http_client(base, get_token(base, client_id, key)) as http:
        from passgate.policy.schemas import default_document

        sets = "/manage/v1/policy-sets/LOGIN"
        expect_status(http.put(f"{sets}/draft", json={"name": "all", "segments": [{"name": "d"}]}), 200)
        expect_status(http.post(f"{sets}/publish"), 201)
        expect_status(http.post("/login/v2", json=login("setup1", "benchdev1", "jo@acme.example")), 200)
        expect_status(http.put(f"{sets}/draft", json=default_document("LOGIN")), 200)
        expect_status(http.post(f"{sets}/publish"), 201)
        expect_status(http.put("/manage/v1/settings", json={"smsAllowedCountries": ["US", "DE"]}), 200)
    if args.channel == "email":
        body = as_template(login("ch__N__", "d__N__", "u__N__@bench.example", "email-link"))
        start = 0
    else:
        body = as_template(sms_login("sms__N__", "sd__N__", f"{SMS_PREFIX}__N__1234", "sms-code"))
        start = SMS_FIRST
    progress(f"making {args.count} {args.channel} challenges")
    r = run_loadgen(
        base + "/login/v2",
        concurrency=16,
        duration=600,
        warmup=0,
        method="POST",
        headers=[f"Authorization: Bearer {get_token(base, client_id, key)}"],
        body_template=body,
        start=start,
        expect=CHALLENGE_MARK,
        workdir=ws.dir,
        extra=["--max-requests", str(args.count)],
    )
    if r["non_2xx"] or r["error_count"] or r.get("expect_mismatches"):
        raise BenchError(f"not every challenge was made: {r['status']} {r.get('mismatch_samples', [])[:1]}")
    server.stop()
    ws.servers.remove(server)
    db = ws.dir / "bench.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        queued = conn.execute("SELECT count(*) FROM messages WHERE status = 'QUEUED'").fetchone()[0]
    if queued != args.count:
        raise BenchError(f"{queued} messages queued, expected {args.count}")
    progress(f"{queued} messages queued")
    return db


def drain(args: argparse.Namespace, ws: Workspace, backlog: Path, src: str | None, n: int) -> dict[str, Any]:
    """One `passgate worker` (its code from `src`, if given) draining a copy of the backlog."""
    db = ws.dir / f"run-{n}.db"
    shutil.copyfile(backlog, db)
    # The backlog falls due `--startup` seconds from now: the worker has started and is idle by then, and
    # its CPU is read just before, so that the figure holds the drain and nothing of the start-up.
    due = time.time() + args.startup
    with sqlite3.connect(db) as conn:
        [sample] = conn.execute("SELECT next_attempt_at FROM messages LIMIT 1").fetchone()
        stamp = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if len(str(sample)) != len(stamp):
            raise BenchError(f"unexpected time format in the outbox: {sample!r}")
        conn.execute("UPDATE messages SET next_attempt_at = ?", (stamp,))
    script = "_smtpsink.py" if args.channel == "email" else "_httpsink.py"
    sink_dir = ws.dir / f"sink-{n}"  # each drain's arrivals in a file of their own
    sink_dir.mkdir()
    with LeanSink(sink_dir, script) as sink:
        env = dict(ws.env)
        env["PASSGATE_DATABASE_URL"] = f"sqlite:///{db}"
        if args.channel == "email":
            env["PASSGATE_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
        else:
            env["PASSGATE_SMS_HTTP_URL"] = f"http://127.0.0.1:{sink.port}/sms"
        if src is not None:
            env["PYTHONPATH"] = src
        log = open(ws.dir / f"worker-{n}.log", "wb")  # noqa: SIM115 (closed below)
        wrap = shlex.split(args.wrap)
        out = ws.dir / f"callgrind-{n}.out"
        if args.callgrind:
            # Instrumented only from the first message on (`callgrind_control -i on` below): start-up runs
            # at a few times its speed instead of fifty.
            wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        proc = subprocess.Popen(
            [*wrap, str(venv_bin("passgate")), "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + args.timeout
            while time.time() < due - 0.2:
                if proc.poll() is not None:
                    raise BenchError(f"the worker exited (status {proc.poll()}); see its log")
                time.sleep(0.01)
            started = (ws.dir / f"worker-{n}.log").read_text(errors="replace")
            if "running" not in started:
                raise BenchError(
                    f"the worker had not started when the backlog fell due: raise --startup\n{started}"
                )
            if sink.snapshot():
                raise BenchError(
                    f"{len(sink.snapshot())} messages went {due - time.time():.2f} s before the backlog fell due"
                )
            if args.callgrind:
                for switch in (["-i", "on"], ["-z"]):
                    subprocess.run(
                        ["callgrind_control", *switch, str(proc.pid)], capture_output=True, check=True
                    )
            cpu0, sent0 = cpu_seconds(proc.pid), len(sink.snapshot())
            t0 = time.monotonic() + max(0.0, due - time.time())
            while len(sink.snapshot()) < args.count:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"{len(sink.snapshot())} of {args.count} messages arrived")
                time.sleep(0.01)
            t1 = time.monotonic()
            with sqlite3.connect(db, timeout=30) as conn:
                while conn.execute("SELECT count(*) FROM messages WHERE status != 'SENT'").fetchone()[0]:
                    if time.monotonic() > deadline:
                        raise BenchError("the messages were sent but not all recorded SENT")
                    time.sleep(0.005)
            cpu1 = cpu_seconds(proc.pid)
            if cpu0 is None or cpu1 is None:
                raise BenchError("the worker exited during the drain")
            instructions = None
            if args.callgrind:
                subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
                instructions = _callgrind_total(out)
        finally:
            if proc.poll() is None:
                # Ctrl-C to its process group (a session of its own): the worker stops, and a profiler
                # it runs under writes what it recorded.
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            log.close()
    db.unlink(missing_ok=True)
    count = args.count - sent0
    if instructions is not None:
        return {
            "src": src or "(this checkout)",
            "ms_per_message": round(instructions / count / 1e6, 4),  # millions of instructions, here
            "messages_per_s": round(count / max(1e-6, t1 - t0), 1),
            "load_average": round(os.getloadavg()[0], 2),
        }
    return {
        "src": src or "(this checkout)",
        "ms_per_message": round((cpu1 - cpu0) * 1000 / count, 4),
        "messages_per_s": round(count / max(1e-6, t1 - t0), 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def _callgrind_total(out: Path) -> int:
    """The instructions counted in callgrind's dumps of the worker (`totals:` of each part file)."""
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total += int(line.split()[1])
                break
    return total


def main() -> int:
    p = argparse.ArgumentParser(
        prog="bench/mail_drain.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-n", "--count", type=int, default=3000, help="challenges in the backlog")
    p.add_argument("--channel", choices=("email", "sms"), default="email")
    p.add_argument("-r", "--rounds", type=int, default=2, help="drains per version of the code")
    p.add_argument(
        "--worker-src",
        action="append",
        default=[],
        help="PYTHONPATH for the worker (repeatable: versions alternated); default: this checkout's",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one drain may take at most")
    p.add_argument(
        "--startup",
        type=float,
        default=6.0,
        help="seconds after the worker starts at which the backlog falls due (its start-up must fit)",
    )
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="count the worker's instructions per message under valgrind's callgrind instead of its CPU "
        "time (repeatable whatever the machine's load; slow: use a small --count). The figures printed "
        "are then millions of instructions per message",
    )
    p.add_argument(
        "--wrap",
        default="",
        help="a command the worker runs under (a profiler: `py-spy record -o out.txt -f raw --`); the CPU "
        "figures are then that command's",
    )
    # Accepted for bench/run_all.py; the drain has no duration or concurrency of its own.
    p.add_argument("-d", "--duration", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("-c", "--concurrency", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 100 <= args.count <= 50_000 or not 1 <= args.rounds <= 10:
        raise SystemExit("--count 100..50000, --rounds 1..10")
    sources: list[str | None] = list(args.worker_src) or [None]
    runs: list[dict[str, Any]] = []
    with interrupt_guard(), Workspace(NAME) as ws:
        try:
            backlog = make_backlog(args, ws, free_port(), free_port())
            for r in range(args.rounds):
                for i, src in enumerate(sources):
                    run = drain(args, ws, backlog, src, r * len(sources) + i)
                    progress(
                        f"{run['src']}: {run['ms_per_message']:.4f} ms of worker CPU per {args.channel}, "
                        f"{run['messages_per_s']:,.0f}/s (load {run['load_average']})"
                    )
                    runs.append(run)
        except BenchError as exc:
            print(f"FAIL: {exc}", file=sys.stderr)
            write_result(NAME, {"verdict": "FAIL", "summary": str(exc), "runs": runs})
            return 1
        except KeyboardInterrupt:
            return 130
    rows = []
    for src in sources:
        mine = [run for run in runs if run["src"] == (src or "(this checkout)")]
        rows.append(
            [
                src or "(this checkout)",
                ", ".join(f"{run['ms_per_message']:.3f}" for run in mine),
                f"{statistics.median(run['ms_per_message'] for run in mine):.3f}",
                f"{statistics.median(run['messages_per_s'] for run in mine):,.0f}",
            ]
        )
    print(table(["worker code", "ms per message (runs)", "median", "messages/s"], rows))
    summary = "; ".join(f"{row[0]}: {row[2]} ms/{args.channel}" for row in rows)
    write_result(NAME, {"verdict": "PASS", "summary": summary, "channel": args.channel, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
