#!/usr/bin/env python3
"""The challenge path: ALLOW decisions, CHALLENGE decisions that send an email, and OTP verifies, in one run.

1. a throw-away workspace, a real SMTP server (aiosmtpd, in this process, on loopback) recording when each
   mail arrives, and `passgate serve` (one process, SQLite, workers in process) sending to it;
2. client A (live): its bench device made known, so a plain login is ALLOW; a CHALLENGE login is a new
   device each time (`deviceSessionId` and email vary per request) naming the `email-link` template;
3. load from bench/loadgen.py, same concurrency and duration: ALLOW -> CHALLENGE -> ALLOW;
4. every mail of the CHALLENGE run must reach the SMTP server; the time from the session's creation (its
   row) to the mail's arrival gives the delivery latency, p50/p99 (target: p99 within 1 s);
5. client B (sandbox: +15005550006, code 000000): N OTP sessions made first, then one verify per session,
   each must answer VERIFIED;
6. prints rates, p50/p99, the ratios CHALLENGE/ALLOW (target >= 0.5) and verify/ALLOW, and writes
   bench/results/challenge-latest.json.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import threading
import time
from datetime import datetime
from typing import Any

from _common import (
    BenchError,
    HelpFormatter,
    Workspace,
    expect_status,
    free_port,
    get_token,
    http_client,
    interrupt_guard,
    progress,
    run_loadgen,
    table,
    write_result,
)

NAME = "challenge"
TARGET_RATIO = 0.5
TARGET_DELIVERY_P99_S = 1.0
ALLOW_MARK = '"decision":"ALLOW"'
CHALLENGE_MARK = '"error":null'
VERIFIED_MARK = '"status":"VERIFIED"'


class Sink:
    """A real SMTP server that notes when each recipient's mail arrived."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                now = time.time()
                with sink.lock:
                    for rcpt in envelope.rcpt_tos:
                        sink.arrivals.setdefault(rcpt.lower(), now)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def login(inquiry: str, device: str, email: str, template: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inquiryId": inquiry,
        "deviceSessionId": device,
        "userIp": "203.0.113.7",
        "person": {"name": {"first": "Jo"}, "emailAddress": email},
        "account": {"id": "bench-acct", "username": "jo"},
    }
    if template:
        body["strategy"] = {"mfaTemplateName": template}
    return body


def as_template(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).replace("__N__", "{n}").encode()


def run(args: argparse.Namespace, ws: Workspace, sink: Sink) -> int:
    ws.env["PASSGATE_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
    ws.env["PASSGATE_MAIL_FROM"] = "Bench <bench@passgate.example>"
    a_id, a_key = ws.create_client("Live")
    b_id, b_key = ws.create_client("Sandbox", sandbox=True)
    server = ws.start_passgate()
    server.wait_healthy()
    base = server.base_url
    with http_client(base, get_token(base, a_id, a_key)) as http:
        sets = "/manage/v1/policy-sets/LOGIN"
        from passgate.policy.schemas import default_document

        expect_status(http.put(f"{sets}/draft", json={"name": "all", "segments": [{"name": "d"}]}), 200)
        expect_status(http.post(f"{sets}/publish"), 201)
        expect_status(http.post("/login/v2", json=login("setup1", "benchdev1", "jo@acme.example")), 200)
        expect_status(http.put(f"{sets}/draft", json=default_document("LOGIN")), 200)
        expect_status(http.post(f"{sets}/publish"), 201)
        check = expect_status(
            http.post("/login/v2", json=login("setup2", "benchdev1", "jo@acme.example")), 200
        )
        if check["decision"] != "ALLOW":
            raise BenchError(f"the known device is not ALLOW: {check}")
    progress("client A: known device ALLOW; new devices are challenged by email")

    allow_body = as_template(login("inq__N__", "benchdev1", "jo@acme.example"))
    challenge_body = as_template(login("ch__N__", "d__N__", "u__N__@bench.example", "email-link"))
    counter = 0
    results: dict[str, list[dict[str, Any]]] = {"allow": [], "challenge": []}

    def drive(kind: str) -> dict[str, Any]:
        nonlocal counter
        body, mark = (allow_body, ALLOW_MARK) if kind == "allow" else (challenge_body, CHALLENGE_MARK)
        progress(
            f"{kind}: {args.warmup:g} s warm-up, then {args.duration:g} s at concurrency {args.concurrency}"
        )
        r = run_loadgen(
            base + "/login/v2",
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            method="POST",
            headers=[f"Authorization: Bearer {get_token(base, a_id, a_key)}"],
            body_template=body,
            start=counter,
            expect=mark,
            workdir=ws.dir,
        )
        counter += r["requests_sent"]
        if r["non_2xx"] or r["error_count"] or r.get("expect_mismatches") or not r["requests"]:
            raise BenchError(
                f"{kind}: not every answer was right: {r['status']} {r.get('mismatch_samples', [])[:1]}"
            )
        progress(
            f"    {kind}: {r['rps']:,.0f} req/s, p50 {r['latency_ms']['p50']:.2f} ms, "
            f"p99 {r['latency_ms']['p99']:.2f} ms"
        )
        results[kind].append(r)
        return r

    drive("allow")
    drive("challenge")
    delivery = delivery_latency(ws, sink, a_id, args.drain)
    drive("allow")

    verify = otp_run(args, ws, base, b_id, b_key)

    allow_rps = statistics.mean(r["rps"] for r in results["allow"])
    ch = results["challenge"][0]
    ratio = ch["rps"] / allow_rps if allow_rps else 0.0
    verify_ratio = verify["rps"] / allow_rps if allow_rps else 0.0
    ok_ratio = ratio >= TARGET_RATIO
    ok_delivery = delivery["p99_s"] <= TARGET_DELIVERY_P99_S
    verdict = "PASS" if ok_ratio and ok_delivery else "BELOW"
    rows = [
        [
            "ALLOW (run 1)",
            f"{results['allow'][0]['rps']:,.0f}",
            f"{results['allow'][0]['latency_ms']['p50']:.2f}",
            f"{results['allow'][0]['latency_ms']['p99']:.2f}",
        ],
        [
            "CHALLENGE (email)",
            f"{ch['rps']:,.0f}",
            f"{ch['latency_ms']['p50']:.2f}",
            f"{ch['latency_ms']['p99']:.2f}",
        ],
        [
            "ALLOW (run 2)",
            f"{results['allow'][1]['rps']:,.0f}",
            f"{results['allow'][1]['latency_ms']['p50']:.2f}",
            f"{results['allow'][1]['latency_ms']['p99']:.2f}",
        ],
        [
            "OTP verify",
            f"{verify['rps']:,.0f}",
            f"{verify['latency_ms']['p50']:.2f}",
            f"{verify['latency_ms']['p99']:.2f}",
        ],
    ]
    print(f"\nChallenge path: concurrency {args.concurrency}, {args.duration:g} s per run")
    print(table(["", "requests/s", "p50 ms", "p99 ms"], rows))
    print(
        f"\nratio CHALLENGE/ALLOW: {ratio:.3f}   target >= {TARGET_RATIO}   {'PASS' if ok_ratio else 'BELOW'}"
    )
    print(f"ratio OTP verify/ALLOW: {verify_ratio:.3f}")
    print(
        f"mail delivery (session created -> SMTP server has it), {delivery['count']} mails: "
        f"p50 {delivery['p50_s'] * 1000:.0f} ms, p99 {delivery['p99_s'] * 1000:.0f} ms, "
        f"within 1 s {delivery['within_1s'] * 100:.1f}%   target p99 <= 1 s   {'PASS' if ok_delivery else 'BELOW'}"
    )
    write_result(
        NAME,
        {
            "benchmark": NAME,
            "verdict": verdict,
            "summary": f"CHALLENGE/ALLOW {ratio:.3f} (target {TARGET_RATIO}), delivery p99 "
            f"{delivery['p99_s'] * 1000:.0f} ms (target 1000), verify/ALLOW {verify_ratio:.3f}: {verdict}",
            "ratio": round(ratio, 4),
            "verifyRatio": round(verify_ratio, 4),
            "delivery": delivery,
            "runs": {"allow": results["allow"], "challenge": results["challenge"], "verify": verify},
        },
    )
    return 2 if (verdict == "BELOW" and args.fail_below) else 0


def delivery_latency(ws: Workspace, sink: Sink, client_id: str, drain_s: float) -> dict[str, Any]:
    db = ws.dir / "bench.db"

    def sessions() -> dict[str, float]:
        with sqlite3.connect(db, timeout=30) as conn:
            rows = conn.execute(
                "SELECT destination, created_at FROM mfa_sessions WHERE client_id = ?", (client_id,)
            ).fetchall()
        # Stored as naive UTC (see passgate.db.UTCDateTime).
        return {d.lower(): _utc_ts(c) for d, c in rows}

    created = sessions()
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        with sink.lock:
            missing = [d for d in created if d not in sink.arrivals]
        if not missing:
            break
        time.sleep(0.2)
    with sink.lock:
        arrivals = dict(sink.arrivals)
    missing = [d for d in created if d not in arrivals]
    if missing:
        raise BenchError(f"{len(missing)} of {len(created)} challenge mails never reached the SMTP server")
    lat = sorted(max(0.0, arrivals[d] - t) for d, t in created.items())
    progress(f"all {len(lat)} challenge mails reached the SMTP server")
    return {
        "count": len(lat),
        "p50_s": round(lat[len(lat) // 2], 4),
        "p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4),
        "max_s": round(lat[-1], 4),
        "within_1s": round(sum(1 for v in lat if v <= 1.0) / len(lat), 4),
    }


def _utc_ts(stored: str) -> float:
    from datetime import UTC

    return datetime.fromisoformat(stored).replace(tzinfo=UTC).timestamp()


def otp_run(args: argparse.Namespace, ws: Workspace, base: str, client_id: str, key: str) -> dict[str, Any]:
    n = args.otp_sessions
    progress(f"OTP: making {n} sandbox sessions (sms-code to +15005550006, code 000000)")
    body = as_template(
        {
            "inquiryId": "otp__N__",
            "deviceSessionId": "o__N__",
            "person": {"phoneNumber": "+15005550006"},
            "account": {"id": "otp-acct", "username": "o"},
            "strategy": {"mfaTemplateName": "sms-code"},
        }
    )
    made = run_loadgen(
        base + "/login/v2",
        concurrency=args.concurrency,
        duration=60,
        warmup=0,
        method="POST",
        headers=[f"Authorization: Bearer {get_token(base, client_id, key)}"],
        body_template=body,
        expect=CHALLENGE_MARK,
        workdir=ws.dir,
        extra=["--max-requests", str(n)],
    )
    if made["non_2xx"] or made.get("expect_mismatches"):
        raise BenchError(f"making OTP sessions failed: {made['status']}")
    with sqlite3.connect(ws.dir / "bench.db", timeout=30) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM mfa_sessions WHERE client_id = ?", (client_id,))]
    # A code becomes valid once its message was accepted: wait until the worker sent them all.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sqlite3.connect(ws.dir / "bench.db", timeout=30) as conn:
            pending = conn.execute(
                "SELECT count(*) FROM messages WHERE client_id = ? AND status != 'SENT'", (client_id,)
            ).fetchone()[0]
        if not pending:
            break
        time.sleep(0.2)
    else:
        raise BenchError(f"{pending} OTP messages were still not sent after 60 s")
    targets = ws.dir / "verify-targets.txt"
    targets.write_text("".join(f"/mfa/v2/{i}/verify\n" for i in ids))
    progress(f"OTP verify: one verify per session ({len(ids)}), concurrency {args.concurrency}")
    r = run_loadgen(
        base + "/mfa/v2/x/verify",
        concurrency=args.concurrency,
        duration=120,
        warmup=0,
        method="POST",
        headers=[f"Authorization: Bearer {get_token(base, client_id, key)}"],
        body=b'{"code":"000000"}',
        expect=VERIFIED_MARK,
        workdir=ws.dir,
        extra=["--targets-file", str(targets), "--max-requests", str(len(ids))],
    )
    if r["non_2xx"] or r.get("expect_mismatches") or r["requests"] != len(ids):
        raise BenchError(f"OTP verify: {r['status']} {r.get('mismatch_samples', [])[:1]}")
    progress(f"    verify: {r['rps']:,.0f} req/s, p50 {r['latency_ms']['p50']:.2f} ms")
    return r


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/challenge.py", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds per load run")
    p.add_argument("-c", "--concurrency", type=int, default=32, help="connections kept busy by the loadgen")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    p.add_argument("--otp-sessions", type=int, default=2000, help="sessions made, then verified once each")
    p.add_argument("--drain", type=float, default=60.0, help="seconds to wait for every challenge mail")
    p.add_argument("--fail-below", action="store_true", help="exit 2 when a target is missed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60 or not 0 < args.concurrency <= 1024:
        raise SystemExit("challenge.py: --duration in (0, 600], --warmup in [0, 60], --concurrency 1..1024")
    if not 1 <= args.otp_sessions <= 50_000:
        raise SystemExit("challenge.py: --otp-sessions 1..50000")
    try:
        with interrupt_guard(), Workspace(NAME) as ws, Sink() as sink:
            return run(args, ws, sink)
    except KeyboardInterrupt:
        progress("interrupted; servers stopped, workspace removed")
        return 130
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        write_result(NAME, {"benchmark": NAME, "verdict": "FAIL", "summary": f"FAIL: {exc}"[:300]})
        return 1


if __name__ == "__main__":
    sys.exit(main())
