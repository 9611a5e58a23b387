#!/usr/bin/env python3
"""Throughput with a year of data: ALLOW, CHALLENGE and OTP verify against a client holding 1,000,000 MFA
sessions, against the same on an empty database, in one run, on SQLite and on PostgreSQL.

What it does, in one command, for each database (`--db sqlite|postgresql|both`):

1. two throw-away installations (workspaces; on PostgreSQL each a schema of `--database-url`, dropped at
   the end), each with a sandbox client and an admin API key made by the `passgate` CLI;
2. the "big" one gets a year of its client's data written in bulk (bench/_scale_data.py: `--rows` MFA
   sessions, each with its secret, message, the message's attempt and three timeline rows; as many
   decisions; a tenth as many webhook events, deliveries and attempts), rows built from the ORM tables;
   PostgreSQL's statistics are brought up to date (ANALYZE), as autovacuum would;
3. the plan of every statement of the hot paths, on the big database (EXPLAIN QUERY PLAN / EXPLAIN): a
   full scan of a table with at least `--large-min` rows fails the run;
4. `passgate serve` on both (one process each, workers in process), the bench device made known on both
   (bench/decisions.py), then closed-loop load (bench/loadgen.py), empty -> big -> empty for each of:
   ALLOW (a known device), CHALLENGE (a new device and address per request, email link), OTP verify
   (`--otp-sessions` sandbox sms-code sessions made first on each, one verify each, every answer VERIFIED);
5. the ratio big / mean of the two empty runs for each, target >= 0.9;
6. `--purge`: ALLOW and CHALLENGE on the big installation again while `passgate.retention.purge_once`
   (looked up by name; the phase is skipped, saying so, while it does not exist) purges ~`--purge-rows`
   old rows in a background thread; ratio with / without the purge, target >= 0.8.

Exit status: 0 when every target is met, 2 when one is missed or a plan reads a large table whole, 1 when
the measurement is invalid, 130 on Ctrl-C. The full result goes to bench/results/scale-latest.json.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _common import (
    BenchError,
    HelpFormatter,
    Server,
    Workspace,
    cpu_line,
    cpu_seconds,
    get_token,
    interrupt_guard,
    pg_schema,
    progress,
    run_loadgen,
    table,
    write_result,
)
from _scale_data import (
    YEAR,
    Plan,
    Seeder,
    SeedSize,
    analyze,
    check_plans,
    hot_statements,
    insert_statements,
    keyring_of,
    plan_report,
    query_functions,
    table_counts,
)
from challenge import CHALLENGE_MARK, as_template, login, make_otp_sessions, verify_sessions, wait_sent
from decisions import ALLOW_MARK, check_run, login_template, prepare_known_device

NAME = "scale"
TARGET = 0.9
TARGET_PURGE = 0.8
PURGE_FUNCTION = "passgate.retention.services.purge_once"
KINDS = ("allow", "challenge", "verify")


@dataclass
class Installation:
    """One throw-away Passgate: its workspace, database URL, sandbox client and server."""

    label: str
    ws: Workspace
    url: str
    client_id: str = ""
    api_key: str = ""
    server: Server | None = None
    counter: int = 0
    otp_batches: int = 0
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @property
    def base(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def token(self) -> str:
        return get_token(self.base, self.client_id, self.api_key)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/scale.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--rows", type=int, default=1_000_000, help="MFA sessions (and decisions) seeded")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=1.0, help="seconds of load before each measurement")
    p.add_argument("-r", "--rounds", type=int, default=1, help="empty -> big -> empty rounds per kind")
    p.add_argument(
        "--otp-sessions", type=int, default=1000, help="sessions made, then verified, per verify run"
    )
    p.add_argument("--large-min", type=int, default=10_000, help="rows from which a table counts as large")
    p.add_argument("--batch", type=int, default=5000, help="sessions written per transaction while seeding")
    p.add_argument("--purge", action="store_true", help=f"also measure while {PURGE_FUNCTION} runs")
    p.add_argument("--purge-rows", type=int, default=1_000_000, help="old rows the purge phase removes")
    p.add_argument("--plans", choices=("problems", "all"), default="problems", help="plans printed in full")
    p.add_argument("--no-load", action="store_true", help="seed and check the plans only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60 or not 0 < args.concurrency <= 1024:
        raise SystemExit("scale.py: --duration in (0, 600], --warmup in [0, 60], --concurrency 1..1024")
    if not 1 <= args.rounds <= 10:
        raise SystemExit("scale.py: --rounds 1..10")
    if not 10 <= args.rows <= 5_000_000 or not 1 <= args.otp_sessions <= 20_000:
        raise SystemExit("scale.py: --rows 10..5000000, --otp-sessions 1..20000")
    dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    results: dict[str, Any] = {}
    try:
        with interrupt_guard():
            for db in dbs:
                results[db] = run_database(db, args)
    except KeyboardInterrupt:
        progress("interrupted; servers stopped, workspaces removed")
        return 130
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        write_result(NAME, {"benchmark": NAME, "verdict": "FAIL", "summary": f"FAIL: {exc}"[:300], **results})
        return 1
    verdict = "PASS" if all(r["pass"] for r in results.values()) else "BELOW"
    summary = "; ".join(r["summary"] for r in results.values()) + f": {verdict}"
    print(f"\n{summary}")
    write_result(NAME, {"benchmark": NAME, "verdict": verdict, "summary": summary, **results})
    return 0 if verdict == "PASS" else 2


def run_database(db: str, args: argparse.Namespace) -> dict[str, Any]:
    progress(f"== {db}: {args.rows:,} sessions against an empty database")
    with ExitStack() as stack:
        sites = {}
        for label in ("empty", "big"):
            if db == "postgresql":
                url = stack.enter_context(pg_schema(args.database_url, prefix=f"scale_{label}"))
            ws = stack.enter_context(Workspace(f"{NAME}-{db}-{label}"))
            if db == "postgresql":
                ws.env["PASSGATE_DATABASE_URL"] = url
            sites[label] = Installation(label, ws, ws.env["PASSGATE_DATABASE_URL"])
        for site in sites.values():
            site.client_id, site.api_key = site.ws.create_client("Scale", sandbox=True)
        big, empty = sites["big"], sites["empty"]
        seeded, plans = seed_and_plan(db, big, args)
        result: dict[str, Any] = {"rows": args.rows, "seeded": seeded, "plans": [p.__dict__ for p in plans]}
        problems = [f"{p.name}: {x}" for p in plans for x in p.problems]
        errors = [f"{p.name}: {p.error}" for p in plans if p.error]
        result["planProblems"], result["planErrors"] = problems, errors
        plan_verdict = "no full scan" if not problems else f"{len(problems)} full scan(s)"
        if args.no_load:
            result["pass"] = not problems
            result["summary"] = f"{db}: plans of {len(plans)} statements, {plan_verdict}"
            return result
        for site in (empty, big):
            site.server = site.ws.start_passgate()
        for site in (empty, big):
            site.server.wait_healthy(timeout=120)  # type: ignore[union-attr]
            prepare_known_device(site.base, site.token())
        measure(args, empty, big)
        ratios = {k: ratio(big.runs[k], empty.runs[k]) for k in KINDS}
        print_runs(db, args, empty, big, ratios)
        result["runs"] = {"empty": empty.runs, "big": big.runs}
        result["ratios"] = ratios
        result["cpuRatios"] = {k: cpu_ratio(big.runs[k], empty.runs[k]) for k in KINDS}
        ok = all(r >= TARGET for r in ratios.values()) and not problems
        purge = purge_phase(args, big, seeded) if args.purge else None
        if purge is not None:
            result["purge"] = purge
            if purge.get("ratios"):
                ok = ok and all(r >= TARGET_PURGE for r in purge["ratios"].values())
        result["pass"] = ok
        result["summary"] = (
            f"{db} at {args.rows:,} sessions: "
            + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items())
            + f" (target {TARGET}), plans: {plan_verdict}"
            + (f", during a purge: {purge['summary']}" if purge else "")
        )
        return result  # leaving the stack: each workspace (its server) closes before its schema goes


def keep_for(engine: Any, client_id: str, days: int, now: datetime) -> None:
    """The client's retention periods (passgate.retention): sessions and decisions `days`, deliveries at most
    365 (their bound), the audit log 10 years. Without this the server's own purge job would delete the
    seeded year down to the 90-day default while the benchmark measures."""
    from passgate.retention.models import ClientRetention

    table = ClientRetention.__table__
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.client_id == client_id))
        conn.execute(
            table.insert().values(
                client_id=client_id,
                sessions_days=days,
                decisions_days=days,
                webhook_deliveries_days=min(365, days),
                audit_log_days=3650,
                updated_at=now,
            )
        )


def seed_and_plan(db: str, big: Installation, args: argparse.Namespace) -> tuple[dict[str, int], list[Plan]]:
    from passgate.db import make_engine

    engine = make_engine(big.url)
    try:
        now = datetime.now(UTC)
        seeder = Seeder(
            engine,
            big.client_id,
            keyring_of(big.ws.env["PASSGATE_SECRET_KEYS"]),
            now,
            SeedSize.of(args.rows),
            batch=args.batch,
            report=progress,
        )
        seeder.run()
        keep_for(engine, big.client_id, 3650, now)  # a client that keeps (more than) its year of data
        analyze(engine)
        counts = table_counts(engine)
        large = {name for name, n in counts.items() if n >= args.large_min}
        from sqlalchemy import text

        with engine.connect() as conn:
            sample_id = str(conn.scalar(text("SELECT max(id) FROM mfa_sessions")))
            endpoint_id = str(conn.scalar(text("SELECT max(id) FROM webhook_endpoints")))
        statements = hot_statements() + query_functions() + insert_statements(seeder)
        plans = check_plans(
            engine,
            statements,
            client_id=big.client_id,
            sample_id=sample_id,
            now=now,
            large=large,
            endpoint_id=endpoint_id,
        )
    finally:
        engine.dispose()
    print(f"\n{db}: rows per table after seeding: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(
        f"{db}: plans of {len(plans)} hot-path statements (large tables: {', '.join(sorted(large)) or 'none'})"
    )
    for line in plan_report(plans, verbose=args.plans == "all"):
        print(line)
    return counts, plans


# -- load ----------------------------------------------------------------------------------------------


def drive(args: argparse.Namespace, site: Installation, kind: str) -> dict[str, Any]:
    assert site.server is not None
    if kind == "verify":
        return verify_run(args, site)
    body, mark = (
        (login_template(), ALLOW_MARK)
        if kind == "allow"
        else (as_template(login("ch__N__", "d__N__", "u__N__@bench.example", "email-link")), CHALLENGE_MARK)
    )
    progress(
        f"{kind} on {site.label}: {args.warmup:g} s warm-up, {args.duration:g} s at concurrency {args.concurrency}"
    )
    r = run_loadgen(
        site.base + "/login/v2",
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        method="POST",
        headers=[f"Authorization: Bearer {site.token()}", "Content-Type: application/json"],
        body_template=body,
        start=site.counter,
        expect=mark,
        workdir=site.ws.dir,
        cpu_of={"serve": site.server.proc.pid},
    )
    site.counter += int(r["requests_sent"])
    problems: list[str] = []
    check_run(f"{kind} on {site.label}", r, problems)
    if problems:
        raise BenchError("; ".join(problems))
    progress(
        f"    {r['rps']:,.0f} req/s, p50 {r['latency_ms']['p50']:.2f} ms; {cpu_line(r.get('cpu', {}), r['rps'])}"
    )
    return r


def prepare_otp(args: argparse.Namespace, site: Installation) -> str:
    """A batch of sandbox OTP sessions made and sent; the account that names them."""
    site.otp_batches += 1
    account = f"otp_{site.label}_{site.otp_batches}"
    make_otp_sessions(site.base, site.token(), args.otp_sessions, args.concurrency, site.ws.dir, account)
    return account


def verify_run(args: argparse.Namespace, site: Installation) -> dict[str, Any]:
    from sqlalchemy import text

    from passgate.db import make_engine

    account = prepare_otp(args, site)
    engine = make_engine(site.url)
    try:

        def rows(sql: str) -> list[Any]:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), {"c": site.client_id, "a": account}))

        ids = [r[0] for r in rows("SELECT id FROM mfa_sessions WHERE client_id = :c AND account_id = :a")]
        wait_sent(
            lambda: rows(
                "SELECT count(*) FROM messages m JOIN mfa_sessions s ON s.id = m.session_id "
                "WHERE s.client_id = :c AND s.account_id = :a AND m.status != 'SENT'"
            )[0][0]
        )
    finally:
        engine.dispose()
    if len(ids) != args.otp_sessions:
        raise BenchError(f"verify on {site.label}: {len(ids)} sessions made, {args.otp_sessions} asked")
    assert site.server is not None
    pid = site.server.proc.pid
    # The server's CPU over the whole run (it is too short for run_loadgen's fixed window).
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    r = verify_sessions(site.base, site.token(), ids, args.concurrency, site.ws.dir)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    if cpu0 is not None and cpu1 is not None:
        r["cpu"] = {"serve": round((cpu1 - cpu0) / (t1 - t0), 3)}
    return r


def measure(args: argparse.Namespace, empty: Installation, big: Installation) -> None:
    """Each kind empty -> big -> empty (the two empty runs averaged cancel the machine's drift), `--rounds`
    times."""
    for r in range(args.rounds):
        if args.rounds > 1:
            progress(f"round {r + 1} of {args.rounds}")
        for kind in KINDS:
            for site in (empty, big, empty):
                site.runs[kind].append(drive(args, site, kind))


def per_round(big_runs: list[dict[str, Any]], empty_runs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(big run, empty run before, empty run after) of each round."""
    return [(b, empty_runs[2 * i], empty_runs[2 * i + 1]) for i, b in enumerate(big_runs)]


def ratio(big_runs: list[dict[str, Any]], empty_runs: list[dict[str, Any]]) -> float:
    """Big req/s over the mean of the empty runs either side, the median over the rounds."""
    ratios = [
        b["rps"] / statistics.mean((e1["rps"], e2["rps"]))
        for b, e1, e2 in per_round(big_runs, empty_runs)
        if e1["rps"] and e2["rps"]
    ]
    return round(statistics.median(ratios), 4) if ratios else 0.0


def cpu_per_request(run: dict[str, Any]) -> float | None:
    """The server's CPU ms per request in a run (None when the window was not measured)."""
    share = run.get("cpu", {}).get("serve")
    return share * 1000 / run["rps"] if share and run["rps"] else None


def cpu_ratio(big_runs: list[dict[str, Any]], empty_runs: list[dict[str, Any]]) -> float | None:
    """Empty's CPU per request / big's: the same comparison as the throughput ratio, by the measure other
    jobs on the machine disturb less (median over the rounds)."""
    ratios = []
    for b, e1, e2 in per_round(big_runs, empty_runs):
        empty = [c for c in (cpu_per_request(e1), cpu_per_request(e2)) if c is not None]
        big = cpu_per_request(b)
        if empty and big:
            ratios.append(statistics.mean(empty) / big)
    return round(statistics.median(ratios), 4) if ratios else None


def print_runs(
    db: str, args: argparse.Namespace, empty: Installation, big: Installation, ratios: dict[str, float]
) -> None:
    rows = []
    for kind in KINDS:
        e = [r["rps"] for r in empty.runs[kind]]
        drift = abs(e[0] - e[-1]) / max(e) if len(e) > 1 and max(e) else 0.0
        b = big.runs[kind][-1]
        cpu = [cpu_per_request(r) for r in (empty.runs[kind][0], b, empty.runs[kind][-1])]
        by_cpu = cpu_ratio(big.runs[kind], empty.runs[kind])
        rows.append(
            [
                kind.upper() if kind != "verify" else "OTP verify",
                f"{e[0]:,.0f}",
                f"{b['rps']:,.0f}",
                f"{e[-1]:,.0f}",
                f"{b['latency_ms']['p99']:.1f}",
                f"{ratios[kind]:.3f}",
                "PASS" if ratios[kind] >= TARGET else "BELOW",
                f"{drift * 100:.0f}%",
                " / ".join("n/a" if c is None else f"{c:.2f}" for c in cpu),
                "n/a" if by_cpu is None else f"{by_cpu:.3f}",
            ]
        )
    print(
        f"\n{db}: {args.rows:,} sessions against an empty database, concurrency {args.concurrency}, "
        f"{args.duration:g} s per run (ALLOW, CHALLENGE), {args.otp_sessions} verifies per OTP run; "
        f"the last of {args.rounds} round(s) shown, the ratios their median"
    )
    headers = ["", "empty req/s", "big req/s", "empty again", "big p99 ms", "big/empty", f">= {TARGET}"]
    headers += ["drift", "serve CPU ms/req (e / b / e)", "by CPU"]
    print(table(headers, rows))


# -- during a purge -----------------------------------------------------------------------------------


def find_purge(path: str = PURGE_FUNCTION) -> Callable[..., Any] | None:
    """The purge function named by `path` (module.function), or None while it does not exist."""
    module, _, name = path.rpartition(".")
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError:
        return None
    fn = getattr(found, name, None)
    return fn if callable(fn) else None


def purge_arguments(fn: Callable[..., Any], available: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Arguments for `fn`, by parameter name, from the makers in `available`; a parameter with a default
    that the bench does not know keeps it. A required one it does not know is an error naming it."""
    out = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in available:
            out[name] = available[name]()
        elif param.default is param.empty:
            raise BenchError(
                f"{PURGE_FUNCTION} wants {name!r}, which bench/scale.py does not know how to give"
            )
    return out


class PurgeThread(threading.Thread):
    """Calls the purge until it reports nothing left (a falsy or zero result), `stop` is set, or
    `limit_s` has passed; notes how many rows its calls reported and when it ran."""

    def __init__(
        self, fn: Callable[..., Any], kwargs: dict[str, Any], limit_s: float, stop: threading.Event
    ) -> None:
        super().__init__(name="purge", daemon=True)
        self.fn, self.kwargs, self.limit_s = fn, kwargs, limit_s
        self.stop = stop
        self.calls = 0
        self.purged = 0
        # Rows removed so far, batch by batch (when the purge takes `on_batch`): a call can outlast the runs.
        self.batches = 0
        self.batch_rows = 0
        self.started_at = self.ended_at = 0.0
        self.error: BaseException | None = None

    def on_batch(self, done: Any) -> None:
        self.batches += 1
        self.batch_rows += sum(done.counts.values())

    @property
    def removed(self) -> int:
        """Rows removed so far: counted batch by batch, or from the calls' reports."""
        return max(self.batch_rows, self.purged)

    def lasted(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            while not self.stop.is_set() and time.monotonic() - self.started_at < self.limit_s:
                got = self.fn(**self.kwargs)
                self.calls += 1
                if hasattr(got, "removed"):  # passgate.retention's PurgeReport
                    progress(
                        f"purge call {self.calls}: {sum(got.removed.values()):,} rows in {got.batches} batches "
                        f"over {got.clients} clients, {got.seconds:.1f} s, longest write "
                        f"{got.longest_batch_seconds * 1000:.0f} ms, complete {got.complete}"
                    )
                    got = got.removed
                n = sum(got.values()) if isinstance(got, dict) else int(got or 0)
                self.purged += n
                if not n:
                    break
        except BaseException as exc:  # reported by the phase
            self.error = exc
        finally:
            self.ended_at = time.monotonic()


def purge_phase(args: argparse.Namespace, big: Installation, seeded: dict[str, int]) -> dict[str, Any]:
    fn = find_purge()
    if fn is None:
        msg = f"purge phase skipped: {PURGE_FUNCTION} does not exist yet (retention is not merged)"
        progress(msg)
        print(f"\n{msg}")
        return {"skipped": msg, "summary": "skipped (no purge function yet)"}
    from passgate.clock import SystemClock
    from passgate.config import Settings
    from passgate.db import make_engine, make_sessionmaker

    total = sum(seeded.values())
    share = min(0.9, args.purge_rows / max(1, total))
    now = datetime.now(UTC)
    cutoff = now - YEAR + YEAR * share
    engine = make_engine(big.url)
    # The client shortens its retention to the period that makes the oldest `share` of its rows due (as an
    # operator would); the server's own purge job, which runs every PASSGATE_PURGE_INTERVAL_SECONDS, and
    # this call then agree on what goes.
    days = max(7, int((now - cutoff).total_seconds() // 86400))
    keep_for(engine, big.client_id, days, now)
    available: dict[str, Callable[[], Any]] = {
        "engine": lambda: engine,
        "session_factory": lambda: make_sessionmaker(engine),
        "sessionmaker": lambda: make_sessionmaker(engine),
        "factory": lambda: make_sessionmaker(engine),
        "settings": lambda: Settings(database_url=big.url, secret_keys=big.ws.env["PASSGATE_SECRET_KEYS"]),
        "clock": SystemClock,
        "target": lambda: engine,
        "now": lambda: now,
        "cutoff": lambda: cutoff,
        "before": lambda: cutoff,
        "older_than": lambda: now - cutoff,
    }
    limit_s = 2 * (args.warmup + args.duration) + 60
    kwargs = purge_arguments(fn, available)  # the names it takes; each run's stop and counter are its own
    progress(
        f"purge: {PURGE_FUNCTION}({', '.join(kwargs)}) in a thread, rows before {cutoff:%Y-%m-%d} "
        f"(~{share * total:,.0f} of {total:,}); each kind without -> during -> without, {args.rounds} round(s)"
    )
    threads: list[PurgeThread] = []

    def during(kind: str) -> dict[str, Any]:
        """One run of `kind` while the purge works in a thread; the purge is stopped (after its batch) when
        the run ends and goes on where it left off in the next one."""
        stop = threading.Event()
        thread = PurgeThread(fn, {}, limit_s, stop)
        thread.kwargs = purge_arguments(
            fn, {**available, "stop": lambda: stop, "on_batch": lambda: thread.on_batch}
        )
        threads.append(thread)
        thread.start()
        try:
            run = drive(args, big, kind)
            run["purgeStillRunning"] = thread.is_alive()
            run["rowsPurgedMeanwhile"] = thread.removed
        finally:
            stop.set()
            thread.join(60)
        if thread.error is not None:
            raise BenchError(f"{PURGE_FUNCTION} failed: {type(thread.error).__name__}: {thread.error}")
        progress(f"    the purge removed {thread.removed:,} rows in {thread.batches:,} batches meanwhile")
        return run

    kinds = ("allow", "challenge")
    without: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with_purge: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for _ in range(args.rounds):
            for kind in kinds:
                without[kind].append(drive(args, big, kind))
                with_purge[kind].append(during(kind))
                without[kind].append(drive(args, big, kind))
    finally:
        engine.dispose()
    ratios = {k: ratio(with_purge[k], without[k]) for k in kinds}
    removed = sum(t.removed for t in threads)
    batches = sum(t.batches for t in threads)
    lasted = sum(t.lasted() for t in threads)
    print(
        f"\nduring a purge ({removed:,} rows in {batches:,} batches over {lasted:,.1f} s of load; "
        f"the ratios the median over {args.rounds} round(s) of during ÷ the mean of the runs either side)"
    )
    print(
        table(
            [
                "",
                "without req/s",
                "during purge",
                "without again",
                "rows purged meanwhile",
                "ratio",
                f">= {TARGET_PURGE}",
            ],
            [
                [
                    k.upper(),
                    f"{without[k][-2]['rps']:,.0f}",
                    f"{with_purge[k][-1]['rps']:,.0f}",
                    f"{without[k][-1]['rps']:,.0f}",
                    f"{with_purge[k][-1]['rowsPurgedMeanwhile']:,}",
                    f"{ratios[k]:.3f}",
                    "PASS" if ratios[k] >= TARGET_PURGE else "BELOW",
                ]
                for k in kinds
            ],
        )
    )
    return {
        "function": PURGE_FUNCTION,
        "arguments": sorted(kwargs),
        "cutoff": cutoff.isoformat(),
        "purged": removed,
        "batches": batches,
        "seconds": round(lasted, 1),
        "runs": {"without": without, "during": with_purge},
        "ratios": ratios,
        "summary": ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()) + f" (target {TARGET_PURGE})",
    }


if __name__ == "__main__":
    sys.exit(main())
