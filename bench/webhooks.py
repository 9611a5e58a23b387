#!/usr/bin/env python3
"""Webhook throughput and latency: Passgate's delivery pipeline against posting the same payloads straight.

What it does, in one command:

1. a throw-away workspace (temp folder, SQLite file, random secret keys) with a client and an admin API key
   made by the `passgate` CLI, and a receiver: this script in `--receiver` mode, a minimal asyncio HTTP
   server in a process of its own that answers 200 at once and notes when each request arrived;
2. for each signature scheme (standard-webhooks, then kount-rsa-pss), throughput:
   - `passgate serve` without workers takes N logins (each a decision: one `Decision.Created` event),
     so N events wait in the outbox for an endpoint of that scheme;
   - `passgate worker` (a process of its own, as deployments scale out) delivers them, at
     PASSGATE_WEBHOOK_ENDPOINT_CONCURRENCY = --concurrency; rate = events / (last arrival - first);
   - the same N bodies (read from the outbox) posted straight with httpx at the same concurrency, before
     and after the Passgate run (averaged, to cancel drift), rate measured the same way at the receiver;
3. latency from status change to receipt: `passgate serve` with its workers in process (the embedded
   default) takes paced challenges (--rate per second for --duration seconds, email link, dev inbox) with
   both endpoints subscribed to everything: each challenge makes a decision, a session (UNKNOWN) and, once
   the dev inbox "sent" the mail, MESSAGE_SENT. Latency = arrival time - the event's `occurredAt`;
4. a table with both rates, the ratio (target: standard-webhooks >= 0.5 of straight; the RSA-PSS ratio is
   reported beside it) and p50/p99 latency per scheme; the full result in bench/results/webhooks-latest.json.

Everything started is stopped, and the temp folder removed, on success, error or Ctrl-C. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from _common import (
    BenchError,
    HelpFormatter,
    Server,
    Workspace,
    expect_status,
    free_port,
    get_token,
    http_client,
    interrupt_guard,
    progress,
    table,
    venv_bin,
    write_result,
)

NAME = "webhooks"
TARGET_RATIO = 0.5
SCHEMES = ("standard-webhooks", "kount-rsa-pss")
ALL_EVENTS = ["MFA.StatusUpdate", "Verification.StatusUpdate", "Decision.Created"]


# ----------------------------------------------------------------------------------------------------
# The receiver (runs as `webhooks.py --receiver --port P` in a process of its own)


class _Receiver(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only (what both clients send); answers 200 at once."""

    store: dict[str, list[tuple[float, bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport subclasses
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            method, target = head[0].split(" ")[:2]
            self._answer(method, target, body)

    def _answer(self, method: str, target: str, body: bytes) -> None:
        at = time.time()
        out = b""
        if method == "POST" and target != "/reset":
            self.store.setdefault(urlsplit(target).path, []).append((at, body))
        elif target == "/reset":
            self.store.clear()
        elif target.startswith("/stats"):
            query = parse_qs(urlsplit(target).query)
            path = query.get("path", [""])[0]
            got = self.store.get(path, [])
            stats: dict[str, Any] = {
                "count": len(got),
                "first": got[0][0] if got else None,
                "last": got[-1][0] if got else None,
            }
            if query.get("detail"):
                stats["receipts"] = [[t, b.decode()] for t, b in got]
            out = json.dumps(stats).encode()
        elif target != "/healthz":
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(out)).encode()
            + b"\r\n\r\n"
            + out
        )


def serve_receiver(port: int) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Receiver, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


# ----------------------------------------------------------------------------------------------------
# Helpers


def receiver_stats(base: str, path: str, detail: bool = False) -> dict[str, Any]:
    params = {"path": path, **({"detail": "1"} if detail else {})}
    with httpx.Client(timeout=30, trust_env=False) as http:
        return dict(http.get(f"{base}/stats", params=params).json())


def wait_for(base: str, path: str, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    stats = receiver_stats(base, path)
    while stats["count"] < count and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = receiver_stats(base, path)
    if stats["count"] < count:
        raise BenchError(f"{path}: {stats['count']} of {count} events arrived within {timeout:.0f} s")
    return stats


def outbox_bodies(ws: Workspace, endpoint_id: str) -> list[bytes]:
    """The exact bodies waiting for this endpoint, read from the workspace's SQLite file."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(ws.dir / "bench.db", timeout=30)) as db:
        rows = db.execute(
            "SELECT e.body FROM webhook_events e JOIN webhook_deliveries d ON d.event_id = e.id "
            "WHERE d.endpoint_id = ? AND d.status = 'PENDING'",
            (endpoint_id,),
        ).fetchall()
    return [r[0].encode() for r in rows]


def straight_run(receiver: str, path: str, bodies: list[bytes], concurrency: int) -> float:
    codes = post_all(receiver + path, bodies, concurrency)
    if set(codes) != {200}:
        raise BenchError(f"straight posts answered {sorted(set(codes))}")
    return span_rate(receiver_stats(receiver, path))


def span_rate(stats: dict[str, Any]) -> float:
    """Events per second between the first and the last arrival."""
    span = (stats["last"] or 0) - (stats["first"] or 0)
    return (stats["count"] - 1) / span if span > 0 and stats["count"] > 1 else 0.0


async def _post_all(url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str]) -> list[int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:

        async def worker() -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                r = await client.post(url, content=body, headers=headers)
                statuses.append(r.status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def post_all(
    url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str] | None = None
) -> list[int]:
    return asyncio.run(_post_all(url, bodies, concurrency, headers or {"Content-Type": "application/json"}))


def login_bodies(prefix: str, count: int, challenge: bool = False) -> list[bytes]:
    out = []
    for i in range(count):
        body: dict[str, Any] = {
            "inquiryId": f"{prefix}{i}",
            "deviceSessionId": f"{prefix}d{i}",
            "userIp": "203.0.113.7",
            "account": {"id": f"{prefix}acct{i}", "username": f"u{i}"},
        }
        if challenge:
            body["person"] = {"emailAddress": f"{prefix}{i}@example.com"}  # dev inbox: nothing leaves
            body["strategy"] = {"mfaTemplateName": "email-link"}
        out.append(json.dumps(body).encode())
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------------------------------------------------------
# The run


def throughput(
    ws: Workspace,
    args: argparse.Namespace,
    api: Server,
    token: str,
    receiver: str,
    scheme: str,
    endpoints: dict[str, str],
) -> dict[str, Any]:
    path = f"/{scheme}"
    with http_client(api.base_url, token) as http:
        for other in endpoints.values():
            expect_status(http.post(f"/manage/v1/webhooks/{other}/disable"), 200)
        created = expect_status(
            http.post(
                "/manage/v1/webhooks",
                json={"url": receiver + path, "events": ["Decision.Created"], "signatureScheme": scheme},
            ),
            201,
        )
        endpoints[scheme] = created["id"]
    progress(f"{scheme}: {args.events} logins into the outbox (API only, no workers)")
    statuses = post_all(
        f"{api.base_url}/login/v2",
        login_bodies(f"t{scheme[:3]}", args.events),
        8,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    if set(statuses) != {200}:
        raise BenchError(f"logins answered {sorted(set(statuses))}")

    bodies = outbox_bodies(ws, endpoints[scheme])
    if len(bodies) != args.events:
        raise BenchError(f"{scheme}: {len(bodies)} events in the outbox, expected {args.events}")
    straight = [straight_run(receiver, f"/straight-{scheme}-1", bodies, args.concurrency)]
    progress(f"{scheme}: straight httpx run 1: {straight[-1]:,.0f}/s")
    progress(f"{scheme}: `passgate worker` delivers them (endpoint concurrency {args.concurrency})")
    worker = ws.start(f"worker-{scheme}", [str(venv_bin("passgate")), "worker", "--poll", "0.05"], port=0)
    try:
        stats = wait_for(receiver, path, args.events, timeout=60 + args.events / 20)
    finally:
        worker.stop()
    passgate_rate = span_rate(stats)
    progress(f"{scheme}: passgate delivered {stats['count']} events at {passgate_rate:,.0f}/s")
    received = [b.encode() for _, b in receiver_stats(receiver, path, detail=True)["receipts"]]
    if len({json.loads(b)["id"] for b in received}) != args.events or sorted(received) != sorted(bodies):
        raise BenchError(f"{scheme}: the receiver did not get exactly the outbox's events, once each")
    straight.append(straight_run(receiver, f"/straight-{scheme}-2", bodies, args.concurrency))
    progress(f"{scheme}: straight httpx run 2: {straight[-1]:,.0f}/s")
    straight_rate = statistics.mean(straight)
    return {
        "scheme": scheme,
        "events": args.events,
        "passgate_rate": round(passgate_rate, 1),
        "straight_rates": [round(r, 1) for r in straight],
        "straight_rate": round(straight_rate, 1),
        "ratio": round(passgate_rate / straight_rate, 4) if straight_rate else 0.0,
        "straight_drift": round(abs(straight[0] - straight[1]) / straight_rate, 4) if straight_rate else 0.0,
    }


def latency(
    ws: Workspace,
    args: argparse.Namespace,
    client_id: str,
    api_key: str,
    receiver: str,
    endpoints: dict[str, str],
) -> dict[str, Any]:
    ws.env["PASSGATE_WORKERS_IN_PROCESS"] = "true"
    server = ws.start_passgate()
    server.wait_healthy()
    token = get_token(server.base_url, client_id, api_key)
    paths = {scheme: f"/latency-{scheme}" for scheme in SCHEMES}
    with http_client(server.base_url, token) as http:
        for scheme, eid in endpoints.items():
            expect_status(
                http.patch(
                    f"/manage/v1/webhooks/{eid}",
                    json={"url": receiver + paths[scheme], "events": ALL_EVENTS, "enabled": True},
                ),
                200,
            )
        count = max(1, int(args.rate * args.duration))
        progress(f"latency: {count} challenges at {args.rate:g}/s into `passgate serve` (workers in process)")
        bodies = login_bodies("lat", count, challenge=True)
        answered: list[float] = []
        start = time.monotonic()
        for i, body in enumerate(bodies):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            answer = expect_status(
                http.post("/login/v2", content=body, headers={"Content-Type": "application/json"}), 200
            )
            answered.append((time.perf_counter() - sent) * 1000)
            if not (answer.get("mfa") or {}).get("ID"):
                raise BenchError(f"challenge {i} started no session: {answer}")
    # occurredAt is taken as the decision starts, so the request's own time is part of every latency.
    out: dict[str, Any] = {
        "challenges": count,
        "login_p50_ms": round(percentile(answered, 0.5), 1),
        "login_p99_ms": round(percentile(answered, 0.99), 1),
    }
    for scheme, path in paths.items():
        wait_for(receiver, path, 3 * count, timeout=60)
        receipts = receiver_stats(receiver, path, detail=True)["receipts"]
        by_kind: dict[str, list[float]] = {}
        lat = []
        for t, b in receipts:
            payload = json.loads(b)
            ms = (t - parse_time(payload["occurredAt"])) * 1000
            lat.append(ms)
            by_kind.setdefault(payload.get("mfaStatus") or payload["eventType"], []).append(ms)
        out[scheme] = {
            "events": len(lat),
            "p50_ms": round(percentile(lat, 0.5), 1),
            "p99_ms": round(percentile(lat, 0.99), 1),
            "max_ms": round(max(lat), 1),
            "by_kind": {
                k: {
                    "count": len(v),
                    "p50_ms": round(percentile(v, 0.5), 1),
                    "p99_ms": round(percentile(v, 0.99), 1),
                }
                for k, v in sorted(by_kind.items())
            },
        }
        progress(f"latency {scheme}: p50 {out[scheme]['p50_ms']} ms, p99 {out[scheme]['p99_ms']} ms")
    return out


def run(args: argparse.Namespace, ws: Workspace) -> int:
    progress(f"workspace {ws.dir}")
    ws.env.update(
        {
            "PASSGATE_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
            "PASSGATE_WEBHOOK_ENDPOINT_CONCURRENCY": str(args.concurrency),
            "PASSGATE_WEBHOOK_MAX_IN_FLIGHT": str(max(64, args.concurrency)),
            "PASSGATE_WORKERS_IN_PROCESS": "false",
        }
    )
    client_id, api_key = ws.create_client("Bench")
    port = free_port()
    recv = ws.start("receiver", [sys.executable, __file__, "--receiver", "--port", str(port)], port)
    recv.wait_healthy()
    api = ws.start_passgate()
    api.wait_healthy()
    token = get_token(api.base_url, client_id, api_key)

    endpoints: dict[str, str] = {}
    results = [throughput(ws, args, api, token, recv.base_url, scheme, endpoints) for scheme in SCHEMES]
    api.stop()
    lat = latency(ws, args, client_id, api_key, recv.base_url, endpoints)

    std = results[0]
    verdict = "PASS" if std["ratio"] >= TARGET_RATIO else "BELOW"
    rows = []
    for r in results:
        lr = lat[r["scheme"]]
        rows.append(
            [
                r["scheme"],
                f"{r['passgate_rate']:,.0f}",
                f"{r['straight_rate']:,.0f}",
                f"{r['ratio']:.3f}",
                f"{lr['p50_ms']:.1f}",
                f"{lr['p99_ms']:.1f}",
            ]
        )
    print()
    print(
        f"Webhooks: {args.events} events per scheme, concurrency {args.concurrency}; "
        f"latency over {lat['challenges']} challenges at {args.rate:g}/s"
    )
    print(table(["scheme", "passgate ev/s", "straight ev/s", "ratio", "p50 ms", "p99 ms"], rows))
    print()
    print(
        f"ratio standard-webhooks/straight: {std['ratio']:.3f}   target >= {TARGET_RATIO}   {verdict}"
        f"   (kount-rsa-pss: {results[1]['ratio']:.3f}, reported)"
    )
    print(
        "latency: status change (occurredAt) to arrival at the receiver, workers in `passgate serve`; "
        f"the challenge requests themselves took p50 {lat['login_p50_ms']:.1f} ms, p99 {lat['login_p99_ms']:.1f} ms"
    )
    for r in results:
        noisy = "  (noisy machine: rerun)" if r["straight_drift"] > 0.15 else ""
        print(
            f"{r['scheme']}: straight runs before/after {r['straight_rates']}, drift {r['straight_drift']:.1%}{noisy}"
        )
    summary = (
        f"{verdict}: standard-webhooks {std['passgate_rate']:.0f} ev/s vs straight {std['straight_rate']:.0f}, "
        f"ratio {std['ratio']:.3f} (target >= {TARGET_RATIO}); kount-rsa-pss ratio {results[1]['ratio']:.3f}; "
        f"p50/p99 {lat['standard-webhooks']['p50_ms']:.0f}/{lat['standard-webhooks']['p99_ms']:.0f} ms"
    )
    path = write_result(
        NAME,
        {
            "benchmark": NAME,
            "verdict": verdict,
            "summary": summary,
            "ratio": std["ratio"],
            "target_ratio": TARGET_RATIO,
            "throughput": results,
            "latency": lat,
            "settings": {
                "events": args.events,
                "concurrency": args.concurrency,
                "rate": args.rate,
                "duration_s": args.duration,
            },
            "python": sys.version.split()[0],
        },
    )
    progress(f"result written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/webhooks.py",
        description="Deliver N events through Passgate to a local receiver and post the same N payloads "
        "straight with httpx at the same concurrency; print both rates, the ratio (target: "
        f"standard-webhooks >= {TARGET_RATIO}; kount-rsa-pss reported beside it) and p50/p99 latency from "
        "status change to receipt.",
        formatter_class=HelpFormatter,
        epilog="The machine is shared and noisy: compare the ratio, not the absolute rates, between runs.",
    )
    p.add_argument("-n", "--events", type=int, default=2000, help="events per scheme in the throughput runs")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="requests in flight, both clients")
    p.add_argument("-d", "--duration", type=float, default=5.0, help="seconds of paced challenges (latency)")
    p.add_argument("-r", "--rate", type=float, default=10.0, help="challenges per second (latency)")
    p.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.receiver:
        return serve_receiver(args.port)
    if not 10 <= args.events <= 100_000 or not 1 <= args.concurrency <= 256:
        raise SystemExit("webhooks.py: --events 10..100000, --concurrency 1..256")
    if not 0 < args.duration <= 120 or not 0 < args.rate <= 200:
        raise SystemExit("webhooks.py: --duration in (0, 120], --rate in (0, 200]")
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
