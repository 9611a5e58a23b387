#!/usr/bin/env python3
"""Run every benchmark in bench/ in sequence (what `make bench` does) and summarise them.

A benchmark is any `bench/<name>.py` that is not a helper (`_*.py`, loadgen.py, bare_app.py, this file).
Known ones run in a fixed order (decisions, challenge, webhooks, policy), any others after them in
alphabetical order. Each runs in a process of its own, one after the other (never in parallel: they
would measure each other); its output streams through. At the end, one line per benchmark from its
bench/results/<name>-latest.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

from _common import BENCH_DIR, RESULTS_DIR, HelpFormatter, interrupt_guard, progress, table

ORDER = ["decisions", "challenge", "webhooks", "policy"]
NOT_BENCHMARKS = {"loadgen", "bare_app", "run_all"}
# Run only when named with --only: scale.py seeds millions of rows first (half an hour and more at full size).
ONLY_WHEN_NAMED = {"scale"}


def discover() -> list[str]:
    names = {
        p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem not in NOT_BENCHMARKS
    }
    return [n for n in ORDER if n in names] + sorted(names - set(ORDER))


def read_result(name: str, since: float) -> dict[str, object] | None:
    path = RESULTS_DIR / f"{name}-latest.json"
    try:
        if path.stat().st_mtime < since:
            return None  # left over from an earlier run
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def run_one(name: str, forwarded: list[str]) -> tuple[int, float]:
    argv = [sys.executable, str(BENCH_DIR / f"{name}.py"), *forwarded]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=BENCH_DIR.parent)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # From a terminal the benchmark got the same Ctrl-C and is cleaning up; from SIGTERM it did
        # not, so pass it on. Either way wait for it: it stops the servers it started.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    return code, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(
        formatter_class=HelpFormatter,
        prog="bench/run_all.py",
        description="Run every benchmark in bench/ in sequence and print a summary. "
        f"Found: {', '.join(available) or 'none'}.",
    )
    parser.add_argument("-d", "--duration", type=float, help="measured seconds per load run (forwarded)")
    parser.add_argument("-c", "--concurrency", type=int, help="connections (forwarded)")
    parser.add_argument(
        "--only",
        action="append",
        choices=available,
        metavar="NAME",
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available))
        return 0
    names = [n for n in available if (n in args.only if args.only else n not in ONLY_WHEN_NAMED)]
    if not names:
        print("no benchmarks found in bench/", file=sys.stderr)
        return 1
    forwarded: list[str] = []
    if args.duration is not None:
        forwarded += ["--duration", str(args.duration)]
    if args.concurrency is not None:
        forwarded += ["--concurrency", str(args.concurrency)]

    rows: list[list[str]] = []
    worst = 0
    try:
        with interrupt_guard():
            for i, name in enumerate(names, 1):
                progress(f"=== benchmark {i}/{len(names)}: {name} {' '.join(forwarded)}".rstrip())
                since = time.time()
                code, elapsed = run_one(name, forwarded)
                result = read_result(name, since)
                verdict = str(result.get("verdict", "?")) if result else "?"
                summary = str(result.get("summary", "")) if result else "(no result file written)"
                if code != 0 and verdict in ("?", "PASS", "BELOW"):
                    verdict = "FAIL" if code == 1 else f"EXIT {code}"
                progress(f"=== {name}: {verdict} in {elapsed:.0f} s (exit status {code})")
                rows.append([name, verdict, f"{elapsed:.0f} s", summary])
                worst = max(worst, 0 if code == 0 else 1)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130

    print()
    print("Benchmark summary (ratios are measured within each benchmark's own run; the machine is shared)")
    print(table(["benchmark", "verdict", "time", "summary"], rows, align="llrl"))
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
