#!/usr/bin/env python3
"""What a decision costs Passgate itself: ALLOW against CHALLENGE in one process, without HTTP, workers
or an SMTP server.

1. a throw-away workspace (a SQLite file) and a client with the default LOGIN set, set up as
   bench/challenge.py does: a known device is ALLOW, a new device and address naming `email-link` is a
   CHALLENGE (a session, its outbox message, its timeline rows; its code or link is made by the worker);
2. in this process, batches of --batch decisions run through DecisionService.decide in one transaction
   each, as the group commit runs them (their deferred rows written at the commit): half a second of
   ALLOW batches, then half a second of CHALLENGE batches, in turn for --duration seconds, so that both
   kinds meet the machine in the same state and each runs with its own data in the caches;
3. per decision, the CPU time of this thread (time.thread_time: time spent waiting for a core does not
   count) in three parts — deciding, the deferred inserts, the commit — as the median over the batches,
   with the mean beside it (the commits that checkpoint the WAL fall in the mean), and the ratios
   CHALLENGE/ALLOW.

Why: bench/challenge.py measures the whole path on the two shared cores, where the worker, the SMTP server
and the load generator take their part and the figures move 10-20 % from run to run. This one measures
the part that a change to the decision path changes, and moves a few per cent. It has no target; it
shows where a challenge's own cost is. The request bodies are parsed before the clock starts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from _common import HelpFormatter, Workspace, in_process_site, interrupt_guard, progress, table, write_result
from challenge import login

NAME = "decide_cost"
PARTS = ("decide", "inserts", "commit")
BLOCK_S = 0.5  # seconds of one kind before the other


def measure(args: argparse.Namespace, ws: Workspace) -> dict[str, Any]:
    from passgate.db import deferred
    from passgate.ids import new_uuid
    from passgate.policy.requests import LoginRequest

    allow_all = {"name": "all", "segments": [{"name": "d"}]}
    first = login("setup1", "benchdev1", "jo@acme.example")
    registry, client_id, _, _ = in_process_site(ws, allow_all, first)

    counter = 0

    def bodies(kind: str) -> list[dict[str, Any]]:
        nonlocal counter
        out = []
        for _ in range(args.batch):
            counter += 1
            n = counter
            body = (
                login(f"inq{n}", "benchdev1", "jo@acme.example")
                if kind == "allow"
                else login(f"ch{n}", f"d{n}", f"u{n}@bench.example", "email-link")
            )
            out.append(LoginRequest.model_validate(body).model_dump(mode="json", exclude_none=True))
        return out

    expected = {"allow": "ALLOW", "challenge": "CHALLENGE"}

    def batch(kind: str) -> dict[str, float]:
        payloads = bodies(kind)
        t0 = time.thread_time()
        with registry.sessions() as session, session.begin():
            for payload in payloads:
                out = registry.decisions.decide(
                    session, client_id, False, "LOGIN", payload, new_uuid(), registry.clock.now()
                )
                if out.decision != expected[kind]:
                    raise SystemExit(f"a {kind} decision answered {out.decision}: {out}")
            t1 = time.thread_time()
            deferred.flush(session)
            t2 = time.thread_time()
        t3 = time.thread_time()
        per = 1e6 / len(payloads)
        return {"decide": (t1 - t0) * per, "inserts": (t2 - t1) * per, "commit": (t3 - t2) * per}

    # As in passgate serve: the committer's start also starts what runs beside it (on SQLite, the thread
    # that checkpoints the WAL); the batches below run here, not through it.
    registry.committer.start()
    progress(f"warm-up: {args.warmup:g} s of both kinds (the database grows as it would under load)")
    end = time.monotonic() + args.warmup
    while time.monotonic() < end:
        batch("allow")
        batch("challenge")
    samples: dict[str, list[dict[str, float]]] = {"allow": [], "challenge": []}
    progress(f"measuring: {args.duration:g} s, batches of {args.batch}, ALLOW and CHALLENGE in turn")
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        for kind in ("allow", "challenge"):
            block = time.monotonic() + BLOCK_S
            while time.monotonic() < block:
                samples[kind].append(batch(kind))
    registry.committer.stop()
    registry.engine.dispose()

    result: dict[str, Any] = {}
    for kind, rows in samples.items():
        result[kind] = {
            "batches": len(rows),
            **{f"{p}_median_us": statistics.median(r[p] for r in rows) for p in PARTS},
            "total_median_us": statistics.median(sum(r.values()) for r in rows),
            "total_mean_us": statistics.fmean(sum(r.values()) for r in rows),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench/decide_cost.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("-w", "--warmup", type=float, default=3.0, help="seconds of both kinds before it")
    p.add_argument("-b", "--batch", type=int, default=20, help="decisions per transaction")
    p.add_argument("-c", "--concurrency", type=int, default=None, help="accepted for run_all; not used")
    args = p.parse_args(argv)
    if not 1 <= args.batch <= 500 or args.duration <= 0 or args.duration > 600 or args.warmup < 0:
        p.error("--batch must be 1 to 500, --duration above 0 and at most 600 s, --warmup not negative")
    with interrupt_guard(), Workspace(NAME) as ws:
        result = measure(args, ws)
    a, c = result["allow"], result["challenge"]
    rows = [
        [
            kind.upper(),
            r["batches"],
            *(f"{r[f'{p}_median_us']:.0f}" for p in PARTS),
            f"{r['total_median_us']:.0f}",
            f"{r['total_mean_us']:.0f}",
        ]
        for kind, r in (("allow", a), ("challenge", c))
    ]
    ratio_median = c["total_median_us"] / a["total_median_us"]
    ratio_mean = c["total_mean_us"] / a["total_mean_us"]
    print(f"\nA decision's own CPU in one process (µs per decision, batches of {args.batch}, SQLite)")
    print(table(["", "batches", "decide", "inserts", "commit", "total (median)", "total (mean)"], rows))
    print(f"\nCHALLENGE / ALLOW: {ratio_median:.2f} (medians), {ratio_mean:.2f} (means)")
    print(
        "the part of a challenge beyond an ALLOW: "
        + ", ".join(f"{p} {c[f'{p}_median_us'] - a[f'{p}_median_us']:.0f} µs" for p in PARTS)
    )
    write_result(
        NAME,
        {
            "verdict": "PASS",
            "summary": f"CHALLENGE costs {ratio_median:.2f}x an ALLOW in-process "
            f"({c['total_median_us']:.0f} against {a['total_median_us']:.0f} µs, medians); no target",
            "batch": args.batch,
            "duration_s": args.duration,
            "ratio_median": ratio_median,
            "ratio_mean": ratio_mean,
            **result,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
