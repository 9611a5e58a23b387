#!/usr/bin/env python3
"""Decision throughput: POST /login/v2 against a bare endpoint of the same stack, in the same run.

What it does, in one command:

1. a throw-away workspace (temp folder, SQLite file, random secret keys, workers in process) with a
   client and an admin API key made by the `passgate` CLI;
2. `passgate serve` (one process, as production runs it) and bench/bare_app.py (the same FastAPI +
   middleware + error handlers, a constant answer), both under uvicorn with uvloop and httptools;
3. the device `benchdev1` made known for account `bench-acct` (an ALLOW under a temporary allow-all
   set marks it seen), the default set published again (v3), one login checked to be ALLOW under v3;
4. load from bench/loadgen.py, a separate process, at the same concurrency and duration:
   bare -> decisions -> bare (the two bare runs are averaged to cancel drift on a shared machine);
   every login has its own inquiryId (`inq<n>`) and must answer 200 with decision ALLOW;
   with `--retries`, each round also has a run where every login repeats one inquiry already decided
   (a client's retry: answered from the stored answer, docs/idempotency.md), between bare runs too;
5. a table with requests/s, p50 and p99 of each, the ratio decisions/bare against the target;
   the full result in bench/results/decisions-latest.json.

Everything started is stopped, and the temp folder removed, on success, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from _common import (
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

NAME = "decisions"
TARGET_RATIO = 0.5
ACCOUNT_ID = "bench-acct"
DEVICE = "benchdev1"
EXPECTED_VERSION = "v3"  # v1 from `client create`, v2 the allow-all set, v3 the default again
ALLOW_MARK = '"decision":"ALLOW"'  # as Starlette's JSONResponse serialises it
ALLOW_ALL = {"name": "allow-all", "segments": [{"name": "default", "policies": []}], "policies": []}


def login_body(inquiry_id: str) -> dict[str, Any]:
    """A realistic login: person with name and email, account, device, IP, a few custom fields."""
    return {
        "inquiryId": inquiry_id,
        "channel": "WEB",
        "deviceSessionId": DEVICE,
        "userIp": "203.0.113.7",
        "loginUrl": "https://shop.example.com/login",
        "person": {"name": {"first": "Jo", "last": "Doe"}, "emailAddress": "jo@example.com"},
        "account": {"id": ACCOUNT_ID, "username": "jo", "type": "PRO"},
        "strategy": {"mfaTemplateName": "email-link"},
        "customFields": {"loyaltyTier": "gold", "cartValue": 120.5, "returningCustomer": True, "visits": 42},
    }


def login_template() -> bytes:
    """The same body as bytes with `{n}` where the per-request counter goes."""
    raw = json.dumps(login_body("inq__N__"), separators=(",", ":"))
    return raw.replace("__N__", "{n}").encode()


def prepare_known_device(base_url: str, token: str) -> dict[str, Any]:
    """Makes the bench device known under the default set; returns the checked ALLOW decision."""
    from passgate.policy.schemas import default_document

    with http_client(base_url, token) as http:
        sets = "/manage/v1/policy-sets/LOGIN"
        progress("policy: publishing a temporary allow-all LOGIN set")
        expect_status(http.put(f"{sets}/draft", json=ALLOW_ALL), 200)
        expect_status(http.post(f"{sets}/publish"), 201)
        first = expect_status(http.post("/login/v2", json=login_body("setup1")), 200)
        if first.get("decision") != "ALLOW":
            raise BenchError(f"under the allow-all set the first login answered {first}")
        progress("policy: device seen; publishing the default set again")
        expect_status(http.put(f"{sets}/draft", json=default_document("LOGIN")), 200)
        published = expect_status(http.post(f"{sets}/publish"), 201)
        check = expect_status(http.post("/login/v2", json=login_body("setup2")), 200)
    version = check.get("set", {}).get("versionName")
    if check.get("decision") != "ALLOW" or version != EXPECTED_VERSION:
        raise BenchError(
            f"expected decision ALLOW under the default set {EXPECTED_VERSION}, got decision "
            f"{check.get('decision')!r} under {version!r} "
            f"(published {published.get('versionName')!r}): {check}"
        )
    progress(f"policy: login answers ALLOW under the default set {version}")
    return dict(check)


def sample_decisions(base_url: str, token: str, count: int = 5) -> list[dict[str, Any]]:
    """A few logins sent one by one after the load, each checked for 200 and ALLOW."""
    out = []
    with http_client(base_url, token) as http:
        for i in range(count):
            answer = expect_status(http.post("/login/v2", json=login_body(f"sample{i}")), 200)
            if answer.get("decision") != "ALLOW":
                raise BenchError(f"sampled login {i} answered {answer}")
            out.append(answer)
    return out


def check_run(label: str, result: dict[str, Any], problems: list[str]) -> None:
    if result["requests"] == 0:
        problems.append(f"{label}: no request completed in the measured window")
    if result["non_2xx"]:
        problems.append(f"{label}: {result['non_2xx']} non-2xx answers {result['status']}")
    if result.get("warmup_non_2xx"):
        problems.append(f"{label}: {result['warmup_non_2xx']} non-2xx answers in the warm-up")
    if result["error_count"]:
        problems.append(f"{label}: {result['error_count']} errors {result['errors']}")
    if result.get("expect_mismatches"):
        samples = result.get("mismatch_samples", [])
        problems.append(f"{label}: {result['expect_mismatches']} answers were not ALLOW, e.g. {samples[:1]}")
    if result.get("warmup_expect_mismatches"):
        problems.append(f"{label}: {result['warmup_expect_mismatches']} warm-up answers were not ALLOW")


def fmt_rps(v: float) -> str:
    return f"{v:,.0f}"


def fmt_ms(v: float) -> str:
    return f"{v:.2f}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/decisions.py",
        description="Measure POST /login/v2 throughput and latency against a bare endpoint of the same "
        "stack (FastAPI + Passgate's middleware and error handlers, uvicorn/uvloop/httptools), in the "
        f"same run, and report the ratio decisions/bare (target >= {TARGET_RATIO}).",
        formatter_class=HelpFormatter,
        epilog="The machine is shared and noisy: compare the ratio, not the absolute rates, between runs.",
    )
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=32, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    p.add_argument(
        "-r",
        "--rounds",
        type=int,
        default=1,
        help="decision runs, each between two bare runs (bare, decisions, bare, ...); the ratio is the "
        "median of the per-round ratios",
    )
    p.add_argument(
        "--retries",
        action="store_true",
        help="add to each round a run in which every login repeats one inquiry already decided (a retry, "
        "answered from the stored answer), with its own ratio against the bare runs either side",
    )
    p.add_argument(
        "--fail-below",
        action="store_true",
        help=f"exit with status 2 when the ratio is below {TARGET_RATIO} (by default BELOW is reported, "
        "exit status 0)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60 or not 0 < args.concurrency <= 1024:
        raise SystemExit("decisions.py: --duration in (0, 600], --warmup in [0, 60], --concurrency 1..1024")
    if not 1 <= args.rounds <= 10:
        raise SystemExit("decisions.py: --rounds 1..10")
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


def run(args: argparse.Namespace, ws: Workspace) -> int:
    progress(f"workspace {ws.dir}")
    progress("creating a client and an admin API key (passgate CLI)")
    client_id, api_key = ws.create_client("Bench")

    progress("starting passgate serve and the bare app")
    passgate = ws.start_passgate()
    bare = ws.start_bare()
    passgate.wait_healthy()
    bare.wait_healthy()
    progress(f"passgate on {passgate.base_url}, bare app on {bare.base_url}")

    # Tokens live 20 minutes; each phase asks for a fresh one so long runs stay valid.
    prepare_known_device(passgate.base_url, get_token(passgate.base_url, client_id, api_key))

    template = login_template()
    counter = 0  # the inquiryId counter carries on across runs: every inquiry is distinct

    def drive(label: str, url: str, headers: list[str], expect: str | None) -> dict[str, Any]:
        nonlocal counter
        result = run_loadgen(
            url,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            method="POST",
            headers=headers,
            body_template=template,
            start=counter,
            expect=expect,
            workdir=ws.dir,
        )
        counter += result["requests_sent"]
        lat = result["latency_ms"]
        progress(
            f"    {label}: {fmt_rps(result['rps'])} req/s, p50 {fmt_ms(lat['p50'])} ms, "
            f"p99 {fmt_ms(lat['p99'])} ms, status {result['status']}, errors {result['error_count']}"
        )
        return result

    # bare, decisions, bare[, retries, bare][, decisions, bare ...]: each measured run sits between two
    # bare runs.
    plan = ["bare"] + (["decisions", "bare"] + (["retries", "bare"] if args.retries else [])) * args.rounds
    bares: list[dict[str, Any]] = []
    decs: list[dict[str, Any]] = []
    dec_bares: list[int] = []  # the index of the bare run before each decision run
    retries: list[dict[str, Any]] = []
    retry_bares: list[int] = []
    retry_body = json.dumps(login_body("retried1"), separators=(",", ":")).encode()
    if args.retries:
        with http_client(passgate.base_url, get_token(passgate.base_url, client_id, api_key)) as http:
            first = expect_status(http.post("/login/v2", content=retry_body), 200)
        if first.get("decision") != "ALLOW":
            raise BenchError(f"the retried inquiry answered {first}")
    labels = {"bare": "bare endpoint", "decisions": "POST /login/v2", "retries": "POST /login/v2 (retries)"}
    for i, kind in enumerate(plan, 1):
        label = labels[kind]
        progress(
            f"run {i}/{len(plan)}: {label}: {args.warmup:g} s warm-up, then {args.duration:g} s "
            f"at concurrency {args.concurrency}"
        )
        # Both endpoints get the same bytes: body and Authorization header (which /bare ignores).
        headers = [f"Authorization: Bearer {get_token(passgate.base_url, client_id, api_key)}"]
        if kind == "decisions":
            dec_bares.append(len(bares) - 1)
            decs.append(drive(label, passgate.base_url + "/login/v2", headers, ALLOW_MARK))
        elif kind == "retries":
            retry_bares.append(len(bares) - 1)
            retries.append(
                run_loadgen(
                    passgate.base_url + "/login/v2",
                    concurrency=args.concurrency,
                    duration=args.duration,
                    warmup=args.warmup,
                    method="POST",
                    headers=headers,
                    body=retry_body,
                    expect=ALLOW_MARK,
                    workdir=ws.dir,
                )
            )
            r = retries[-1]
            progress(
                f"    {label}: {fmt_rps(r['rps'])} req/s, p50 {fmt_ms(r['latency_ms']['p50'])} ms, "
                f"p99 {fmt_ms(r['latency_ms']['p99'])} ms, status {r['status']}, errors {r['error_count']}"
            )
        else:
            bares.append(drive(label, bare.base_url + "/bare", headers, None))

    progress("sampling 5 logins one by one (each must be 200 and ALLOW)")
    samples = sample_decisions(passgate.base_url, get_token(passgate.base_url, client_id, api_key))

    problems: list[str] = []
    for n, r in enumerate(bares, 1):
        check_run(f"bare run {n}", r, problems)
    for n, r in enumerate(decs, 1):
        check_run(f"decision run {n}", r, problems)
    for n, r in enumerate(retries, 1):
        check_run(f"retry run {n}", r, problems)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    # One ratio per decision run, against the mean of the bare runs either side; the median of them.
    def ratios(runs: list[dict[str, Any]], before: list[int]) -> list[float]:
        out = []
        for run, b in zip(runs, before, strict=True):
            neighbours = (bares[b]["rps"] + bares[b + 1]["rps"]) / 2
            out.append(run["rps"] / neighbours if neighbours else 0.0)
        return out

    round_ratios = ratios(decs, dec_bares)
    ratio = statistics.median(round_ratios)
    retry_ratios = ratios(retries, retry_bares)
    bare_rps = mean([b["rps"] for b in bares])
    dec_rps = mean([d["rps"] for d in decs])
    bare_rates = [b["rps"] for b in bares]
    drift = (max(bare_rates) - min(bare_rates)) / bare_rps if bare_rps else 0.0
    verdict = "FAIL" if problems else ("PASS" if ratio >= TARGET_RATIO else "BELOW")

    def row(label: str, rps: float, p50: float, p99: float) -> list[str]:
        return [label, fmt_rps(rps), fmt_ms(p50), fmt_ms(p99)]

    def row_of(label: str, r: dict[str, Any]) -> list[str]:
        return row(label, r["rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"])

    def mean_row(label: str, rs: list[dict[str, Any]]) -> list[str]:
        lat = [r["latency_ms"] for r in rs]
        return row(
            label, mean([r["rps"] for r in rs]), mean([x["p50"] for x in lat]), mean([x["p99"] for x in lat])
        )

    rows = []
    for n, b in enumerate(bares):
        rows.append(row_of(f"bare endpoint (run {n + 1})", b))
        if n in dec_bares:
            k = dec_bares.index(n)
            rows.append(row_of(f"POST /login/v2 (run {k + 1})", decs[k]))
        if n in retry_bares:
            k = retry_bares.index(n)
            rows.append(row_of(f"POST /login/v2 retries (run {k + 1})", retries[k]))
    rows.append(mean_row("bare endpoint (mean)", bares))
    if len(decs) > 1:
        rows.append(mean_row("POST /login/v2 (mean)", decs))
    print()
    print(
        f"Decisions vs bare endpoint: concurrency {args.concurrency}, {args.duration:g} s per run, "
        f"{args.rounds} round(s)"
    )
    print(table(["", "requests/s", "p50 ms", "p99 ms"], rows))
    print()
    per_round = (
        f"  (per round: {', '.join(f'{r:.3f}' for r in round_ratios)}; median)" if len(decs) > 1 else ""
    )
    print(f"ratio decisions/bare: {ratio:.3f}   target >= {TARGET_RATIO}   {verdict}{per_round}")
    noisy = "  (noisy machine: rerun, or use --rounds 3)" if drift > 0.15 else ""
    if retries:
        print(
            f"ratio retries/bare: {statistics.median(retry_ratios):.3f}   (per round: "
            f"{', '.join(f'{r:.3f}' for r in retry_ratios)}; each answered from the stored answer)"
        )
    print(f"bare drift across its runs: {drift:.1%}{noisy}")
    for p in problems:
        print(f"problem: {p}")

    dec_lat = (
        decs[0]["latency_ms"]
        if len(decs) == 1
        else {k: mean([d["latency_ms"][k] for d in decs]) for k in ("p50", "p99")}
    )
    summary = (
        f"{verdict}: decisions {dec_rps:.0f} req/s vs bare {bare_rps:.0f} req/s, ratio {ratio:.3f} "
        f"(target >= {TARGET_RATIO}); decision p50 {dec_lat['p50']:.1f} ms, p99 {dec_lat['p99']:.1f} ms"
    )
    path = write_result(
        NAME,
        {
            "benchmark": NAME,
            "verdict": verdict,
            "summary": summary,
            "ratio": round(ratio, 4),
            "round_ratios": [round(r, 4) for r in round_ratios],
            "retry_ratios": [round(r, 4) for r in retry_ratios],
            "target_ratio": TARGET_RATIO,
            "decisions_rps_mean": round(dec_rps, 1),
            "bare_rps_mean": round(bare_rps, 1),
            "bare_drift": round(drift, 4),
            "settings": {
                "concurrency": args.concurrency,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "rounds": args.rounds,
                "retries": args.retries,
            },
            "runs": {"bare": bares, "decisions": decs, "retries": retries},
            "problems": problems,
            "sampled_decisions": samples,
            "python": sys.version.split()[0],
        },
    )
    progress(f"result written to {path}")
    if problems:
        return 1
    if verdict == "BELOW" and args.fail_below:
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
