#!/usr/bin/env python3
"""Policy cost: ALLOW decisions under the default set against ALLOW decisions under the 25-policy example
set (docs/examples/policy-set-25.json: lists, velocities, email/phone/IP signals), in the same run.

1. a throw-away workspace and `passgate serve` (one process, SQLite), two clients made by the CLI;
2. client A keeps the default set; client B gets the example's five lists (with entries) and the
   25-policy set; for both the bench device is made known, so the measured path answers ALLOW;
3. load from bench/loadgen.py at the same concurrency and duration: A, then --rounds times B -> A; each
   B run is compared with the mean of the A runs either side of it, and the ratio is the median of those
   rounds (the machine is shared: single runs drift); every answer must be 200 and ALLOW;
4. prints requests/s, p50, p99 and the server's CPU ms per request of each run, the ratio 25-policy/default
   (target >= 0.7) and the same comparison by server CPU per request, and writes
   bench/results/policy-latest.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from _common import (
    REPO_DIR,
    BenchError,
    HelpFormatter,
    Workspace,
    cpu_line,
    expect_status,
    get_token,
    http_client,
    interrupt_guard,
    progress,
    run_loadgen,
    table,
    write_result,
)

NAME = "policy"
TARGET_RATIO = 0.7
ALLOW_MARK = '"decision":"ALLOW"'
ALLOW_ALL = {"name": "allow-all", "segments": [{"name": "default", "policies": []}], "policies": []}
EXAMPLES = REPO_DIR / "docs" / "examples"


def login_body(inquiry_id: str) -> dict[str, Any]:
    """A login that every policy of the example set reads and none fires on: a known device, an
    established account, a US address, a company email."""
    return {
        "inquiryId": inquiry_id,
        "channel": "WEB",
        "deviceSessionId": "benchdev1",
        "userIp": "8.8.4.4",
        "person": {
            "name": {"first": "Jo", "last": "Doe"},
            "emailAddress": "jo@acme-corp.com",
            "phoneNumber": "+12015550123",
        },
        "account": {
            "id": "bench-acct",
            "username": "jo",
            "type": "PRO",
            "accountIsActive": True,
            "creationDateTime": "2020-01-01T00:00:00Z",
        },
        "customFields": {"riskTier": "green", "cartValue": 120.5},
    }


def template() -> bytes:
    return json.dumps(login_body("inq__N__"), separators=(",", ":")).replace("__N__", "{n}").encode()


def make_device_known(http: Any, final_set: dict[str, Any]) -> None:
    sets = "/manage/v1/policy-sets/LOGIN"
    expect_status(http.put(f"{sets}/draft", json=ALLOW_ALL), 200)
    expect_status(http.post(f"{sets}/publish"), 201)
    expect_status(http.post("/login/v2", json=login_body("setup1")), 200)
    expect_status(http.put(f"{sets}/draft", json=final_set), 200)
    expect_status(http.post(f"{sets}/publish"), 201)
    check = expect_status(http.post("/login/v2", json=login_body("setup2")), 200)
    if check.get("decision") != "ALLOW":
        raise BenchError(f"the bench login is not ALLOW under {final_set['name']!r}: {check}")


def prepare(base_url: str, default_token: str, policy_token: str) -> None:
    from passgate.policy.schemas import default_document

    with http_client(base_url, default_token) as http:
        make_device_known(http, default_document("LOGIN"))
    progress("client A: default set, device known")
    example = json.loads((EXAMPLES / "policy-set-25.json").read_text())
    # One account and device send every request, so velocity rules would fire within seconds. They are
    # kept, and read (their counters are queried), but with thresholds no load here can reach.
    for policy in example["policies"]:
        for cond in policy.get("conditions", []):
            if cond["field"].startswith("velocity."):
                cond["value"] = 10**9
    lists = json.loads((EXAMPLES / "policy-set-25-lists.json").read_text())
    entries = {
        "blocked-emails": [f"fraud{i}@example.net" for i in range(500)],
        "blocked-domains": ["mailinator.com", "tempmail.dev", "guerrillamail.com"],
        "blocked-ips": ["203.0.113.0/24", "198.51.100.0/24"] + [f"192.0.2.{i}" for i in range(200)],
        "blocked-devices": [f"baddev{i}" for i in range(300)],
        "trusted-accounts": [f"vip{i}" for i in range(100)],
    }
    with http_client(base_url, policy_token) as http:
        for name, kind in lists.items():
            expect_status(http.post("/manage/v1/lists", json={"name": name, "kind": kind}), 201)
            expect_status(http.post(f"/manage/v1/lists/{name}/entries", json={"entries": entries[name]}), 200)
        make_device_known(http, example)
    progress(f"client B: {len(example['policies'])} policies over {len(lists)} lists, device known")


def run(args: argparse.Namespace, ws: Workspace) -> int:
    progress(f"workspace {ws.dir}")
    a_id, a_key = ws.create_client("Default set")
    b_id, b_key = ws.create_client("Twenty-five policies")
    server = ws.start_passgate()
    server.wait_healthy()
    base = server.base_url
    prepare(base, get_token(base, a_id, a_key), get_token(base, b_id, b_key))
    body = template()
    counter = 0
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "25": []}
    # default, then (25-policy, default) per round: each 25-policy run sits between two default runs.
    order = ["default"] + ["25", "default"] * args.rounds
    for i, kind in enumerate(order, 1):
        cid, key = (a_id, a_key) if kind == "default" else (b_id, b_key)
        label = "default set" if kind == "default" else "25-policy set"
        progress(
            f"run {i}/{len(order)}: {label}: {args.warmup:g} s warm-up, then {args.duration:g} s at "
            f"concurrency {args.concurrency}"
        )
        result = run_loadgen(
            base + "/login/v2",
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            method="POST",
            headers=[f"Authorization: Bearer {get_token(base, cid, key)}"],
            body_template=body,
            start=counter,
            expect=ALLOW_MARK,
            workdir=ws.dir,
            cpu_of={"serve": server.proc.pid},
        )
        counter += result["requests_sent"]
        if (
            result["non_2xx"]
            or result["error_count"]
            or result.get("expect_mismatches")
            or not result["requests"]
        ):
            raise BenchError(
                f"{label}: not every answer was 200 and ALLOW: {result['status']} "
                f"{result.get('mismatch_samples', [])[:1]}"
            )
        lat = result["latency_ms"]
        progress(f"    {label}: {result['rps']:,.0f} req/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
        progress(f"    {cpu_line(result.get('cpu', {}), result['rps'])}")
        runs[kind].append(result)
    # Per round: the 25-policy rate against the mean of the default runs either side of it.
    ratios = []
    cpu_ratios = []
    for j, r25 in enumerate(runs["25"]):
        around = runs["default"][j : j + 2]
        mean = sum(r["rps"] for r in around) / len(around)
        ratios.append(r25["rps"] / mean if mean else 0.0)
        per_req = [_server_ms(r) for r in around]
        if all(v is not None for v in per_req) and _server_ms(r25):
            cpu_ratios.append((sum(per_req) / len(per_req)) / _server_ms(r25))  # type: ignore[arg-type,operator]
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(cpu_ratios) if cpu_ratios else None
    verdict = "PASS" if ratio >= TARGET_RATIO else "BELOW"

    def row(name: str, r: dict[str, Any]) -> list[str]:
        ms = _server_ms(r)
        return [
            name,
            f"{r['rps']:,.0f}",
            f"{r['latency_ms']['p50']:.2f}",
            f"{r['latency_ms']['p99']:.2f}",
            f"{ms:.3f}" if ms is not None else "n/a",
        ]

    rows = [row("default set (run 1)", runs["default"][0])]
    for j, r25 in enumerate(runs["25"]):
        rows.append(row(f"25-policy set (run {j + 1})", r25))
        rows.append(row(f"default set (run {j + 2})", runs["default"][j + 1]))
    print(
        f"\nALLOW decisions, default set vs 25-policy set: concurrency {args.concurrency}, "
        f"{args.duration:g} s per run, {args.rounds} round(s)"
    )
    print(table(["", "requests/s", "p50 ms", "p99 ms", "server CPU ms/req"], rows))
    per_round = f"  (per round: {', '.join(f'{r:.3f}' for r in ratios)}; median)" if len(ratios) > 1 else ""
    print(f"\nratio 25-policy/default: {ratio:.3f}   target >= {TARGET_RATIO}   {verdict}{per_round}")
    if cpu_ratio is not None:
        print(
            f"server CPU per request, default/25-policy: {cpu_ratio:.3f}  (the same comparison by the server's "
            "own CPU time, which other jobs on the machine disturb less than rates)"
        )
    write_result(
        NAME,
        {
            "benchmark": NAME,
            "verdict": verdict,
            "ratio": round(ratio, 4),
            "roundRatios": [round(r, 4) for r in ratios],
            "cpuRatio": round(cpu_ratio, 4) if cpu_ratio is not None else None,
            "target": TARGET_RATIO,
            "summary": f"25-policy/default ALLOW ratio {ratio:.3f} (target {TARGET_RATIO}): {verdict}",
            "runs": {"default": runs["default"], "policy25": runs["25"]},
        },
    )
    return 2 if (verdict == "BELOW" and args.fail_below) else 0


def _server_ms(r: dict[str, Any]) -> float | None:
    """The server's CPU milliseconds per request during the measured seconds."""
    share = r.get("cpu", {}).get("serve")
    return share * 1000 / r["rps"] if share and r["rps"] else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/policy.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=32, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="(25-policy, default) pairs after the first default run; the ratio is the median of the rounds",
    )
    p.add_argument("--fail-below", action="store_true", help=f"exit 2 when the ratio is below {TARGET_RATIO}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60 or not 0 < args.concurrency <= 1024:
        raise SystemExit("policy.py: --duration in (0, 600], --warmup in [0, 60], --concurrency 1..1024")
    if not 1 <= args.rounds <= 10:
        raise SystemExit("policy.py: --rounds 1..10")
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
    sys.exit(main())
