#!/usr/bin/env python3
"""What `passgate serve`'s HTTP limits cost: the bare endpoint served with them against the same endpoint
served by plain uvicorn/httptools, in the same run.

1. In-process, no sockets: a request of the size loadgen sends, fed again and again to each protocol on a
   transport that only counts writes, with a minimal ASGI app; CPU time per request (median of rounds,
   the two protocols alternating). This is the protocol's own cost, steady on a busy machine.
2. Over loopback: bench/bare_app.py twice (one process each, uvloop), plain httptools and `--limited`;
   load from bench/loadgen.py at the same concurrency and duration, plain -> limited -> plain [-> ...];
   the ratio limited/plain is the median of each limited run against the mean of the plain runs either
   side. Noisy on a shared machine: read it with the first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
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


async def _asgi(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


REQUEST = (
    b"POST /bare HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nUser-Agent: loadgen\r\nAccept: */*\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


def protocol_cost(requests: int = 10_000, rounds: int = 7) -> dict[str, float]:
    """CPU microseconds per request of each protocol, in-process (see the module docstring)."""
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from passgate.httpserver import HttpLimits, limited_protocol

    async def once(cls: Any) -> float:
        config = Config(app=_asgi, log_config=None, access_log=False, lifespan="off")
        config.load()
        proto = cls(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
        transport = _CountingTransport()
        proto.connection_made(transport)
        started = time.process_time()
        for _ in range(requests):
            proto.data_received(REQUEST)
            await asyncio.sleep(0)  # the app's task runs
            await asyncio.sleep(0)
        spent = time.process_time() - started
        proto.connection_lost(None)  # its timers go with it
        if transport.writes < requests:
            raise BenchError(f"{cls.__name__} answered {transport.writes} of {requests} requests")
        return spent / requests * 1e6

    async def measure() -> dict[str, float]:
        kinds = {"plain": HttpToolsProtocol, "limited": limited_protocol(HttpLimits())}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind, cls in kinds.items():
                times[kind].append(await once(cls))
        return {k: statistics.median(v) for k, v in times.items()}

    return uvloop.run(measure())


def run(args: argparse.Namespace, ws: Workspace) -> int:
    progress("in-process: each protocol fed the same request, CPU time per request")
    cost = protocol_cost()
    progress(f"    plain {cost['plain']:.1f} us, limited {cost['limited']:.1f} us per request")
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
    extra = cost["limited"] - cost["plain"]
    print(
        f"in-process, CPU per request: plain {cost['plain']:.1f} us, limited {cost['limited']:.1f} us "
        f"(+{extra:.1f} us, x{cost['limited'] / cost['plain']:.2f})"
    )
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
            "in_process_us_per_request": cost,
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
