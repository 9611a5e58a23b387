#!/usr/bin/env python3
"""What `passgate serve`'s HTTP limits cost: the bare endpoint served with them against the same endpoint
served by plain uvicorn/httptools, in the same run.

bench/bare_app.py twice (one process each, uvloop): plain httptools, and `--limited`
(passgate.httpserver: head cap counted as it arrives, head and body deadlines). Load from bench/loadgen.py
at the same concurrency and duration: plain -> limited -> plain [-> limited -> plain ...]; the ratio
limited/plain is the median of each limited run against the mean of the plain runs either side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from _common import (
    BARE_APP,
    BenchError,
    HelpFormatter,
    Workspace,
    free_port,
    interrupt_guard,
    progress,
    run_loadgen,
    table,
    write_result,
)

NAME = "http_limits"
TARGET_RATIO = 0.95
BODY = b'{"inquiryId": "inq0", "person": {"emailAddress": "jo@example.com"}, "account": {"id": "a1"}}'


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/http_limits.py",
        description="Measure the bare endpoint with passgate serve's HTTP limits against plain httptools, "
        f"in the same run; report the ratio limited/plain (target >= {TARGET_RATIO}).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=32, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=1.0, help="seconds of load before each measurement")
    p.add_argument("-r", "--rounds", type=int, default=2, help="limited runs, each between two plain runs")
    return p


def run(args: argparse.Namespace, ws: Workspace) -> int:
    plain_port, limited_port = free_port(), free_port()
    plain = ws.start("bare", [sys.executable, str(BARE_APP), "--port", str(plain_port)], plain_port)
    limited = ws.start(
        "bare-limited",
        [sys.executable, str(BARE_APP), "--port", str(limited_port), "--limited"],
        limited_port,
    )
    plain.wait_healthy()
    limited.wait_healthy()
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "limited": []}
    for i, kind in enumerate(["plain"] + ["limited", "plain"] * args.rounds, 1):
        server = plain if kind == "plain" else limited
        result = run_loadgen(
            server.base_url + "/bare",
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            method="POST",
            headers=["Content-Type: application/json"],
            body=BODY,
            workdir=ws.dir,
        )
        if result["requests"] == 0 or result["non_2xx"] or result["error_count"]:
            raise BenchError(f"{kind} run {i}: status {result['status']}, errors {result['error_count']}")
        progress(f"run {i}: {kind}: {result['rps']:.0f} req/s, p99 {result['latency_ms']['p99']:.2f} ms")
        runs[kind].append(result)
    plains, limiteds = runs["plain"], runs["limited"]
    ratios = [r["rps"] / ((plains[n]["rps"] + plains[n + 1]["rps"]) / 2) for n, r in enumerate(limiteds)]
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio >= TARGET_RATIO else "BELOW"
    rows = [
        [
            f"{kind} (run {n + 1})",
            f"{r['rps']:.0f}",
            f"{r['latency_ms']['p50']:.2f}",
            f"{r['latency_ms']['p99']:.2f}",
        ]
        for kind in ("plain", "limited")
        for n, r in enumerate(runs[kind])
    ]
    print(f"HTTP limits vs plain httptools: concurrency {args.concurrency}, {args.duration:g} s per run")
    print(table(["", "requests/s", "p50 ms", "p99 ms"], rows))
    print(f"ratio limited/plain: {ratio:.3f} (per round: {', '.join(f'{x:.3f}' for x in ratios)})  {verdict}")
    write_result(
        NAME,
        {
            "benchmark": NAME,
            "verdict": verdict,
            "summary": f"limited/plain {ratio:.3f} (target >= {TARGET_RATIO})",
            "ratio": ratio,
            "runs": runs,
        },
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 1 <= args.rounds <= 10 or not 0 < args.concurrency <= 1024:
        raise SystemExit("http_limits.py: --duration in (0, 600], --rounds 1..10, --concurrency 1..1024")
    try:
        with interrupt_guard(), Workspace(NAME) as ws:
            return run(args, ws)
    except KeyboardInterrupt:
        progress("interrupted; servers stopped, workspace removed")
        return 130
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        write_result(NAME, {"benchmark": NAME, "verdict": "FAIL", "summary": f"FAIL: {exc}"[:300]})
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
