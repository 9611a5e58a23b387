#!/usr/bin/env python3
"""Policy cost: ALLOW decisions under the default set against ALLOW decisions under the 25-policy example
set (docs/examples/policy-set-25.json: lists, velocities, email/phone/IP signals), in the same run.

1. a throw-away workspace and `passgate serve` (one process, SQLite), two clients made by the CLI;
2. client A keeps the default set; client B gets the example's five lists (with entries) and the
   25-policy set; for both the bench device is made known, so the measured path answers ALLOW;
3. load from bench/loadgen.py at the same concurrency and duration: A -> B -> A (the two A runs are
   averaged); every answer must be 200 and ALLOW;
4. prints requests/s, p50, p99 and the ratio 25-policy/default (target >= 0.7), and writes
   bench/results/policy-latest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from _common import (
    REPO_DIR,
    BenchError,
    HelpFormatter,
    Workspace,
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
    for i, kind in enumerate(["default", "25", "default"], 1):
        cid, key = (a_id, a_key) if kind == "default" else (b_id, b_key)
        label = "default set" if kind == "default" else "25-policy set"
        progress(
            f"run {i}/3: {label}: {args.warmup:g} s warm-up, then {args.duration:g} s at "
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
        runs[kind].append(result)
    base_rps = sum(r["rps"] for r in runs["default"]) / len(runs["default"])
    ratio = runs["25"][0]["rps"] / base_rps if base_rps else 0.0
    verdict = "PASS" if ratio >= TARGET_RATIO else "BELOW"
    rows = [
        [
            "default set (run 1)",
            f"{runs['default'][0]['rps']:,.0f}",
            f"{runs['default'][0]['latency_ms']['p50']:.2f}",
            f"{runs['default'][0]['latency_ms']['p99']:.2f}",
        ],
        [
            "25-policy set",
            f"{runs['25'][0]['rps']:,.0f}",
            f"{runs['25'][0]['latency_ms']['p50']:.2f}",
            f"{runs['25'][0]['latency_ms']['p99']:.2f}",
        ],
        [
            "default set (run 2)",
            f"{runs['default'][1]['rps']:,.0f}",
            f"{runs['default'][1]['latency_ms']['p50']:.2f}",
            f"{runs['default'][1]['latency_ms']['p99']:.2f}",
        ],
    ]
    print(
        f"\nALLOW decisions, default set vs 25-policy set: concurrency {args.concurrency}, {args.duration:g} s per run"
    )
    print(table(["", "requests/s", "p50 ms", "p99 ms"], rows))
    print(f"\nratio 25-policy/default: {ratio:.3f}   target >= {TARGET_RATIO}   {verdict}")
    write_result(
        NAME,
        {
            "benchmark": NAME,
            "verdict": verdict,
            "ratio": round(ratio, 4),
            "target": TARGET_RATIO,
            "summary": f"25-policy/default ALLOW ratio {ratio:.3f} (target {TARGET_RATIO}): {verdict}",
            "runs": {"default": runs["default"], "policy25": runs["25"]},
        },
    )
    return 2 if (verdict == "BELOW" and args.fail_below) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/policy.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=32, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    p.add_argument("--fail-below", action="store_true", help=f"exit 2 when the ratio is below {TARGET_RATIO}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60 or not 0 < args.concurrency <= 1024:
        raise SystemExit("policy.py: --duration in (0, 600], --warmup in [0, 60], --concurrency 1..1024")
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
