#!/usr/bin/env python3
"""A small closed-loop HTTP/1.1 load generator for the benchmarks in bench/.

Run it as a process of its own, never inside the server under test:

    python bench/loadgen.py --url http://127.0.0.1:8001/login/v2 --concurrency 32 --duration 10 \
        --warmup 2 --method POST --body-template-file login.json --header 'Authorization: Bearer …'

It prints ONE JSON line on stdout (requests/s, latency percentiles in ms, status-code counts, errors);
progress and problems go to stderr.

Why not httpx (or aiohttp)? On the 2-core machine the benchmarks run on, a client built on httpx spends
more CPU per request than a uvicorn server does to answer it, so it measures itself, not the server.
This client is the minimum a closed loop needs: `concurrency` keep-alive connections, each sending one
request and waiting for its answer before sending the next; request bytes encoded once up front (in
template mode only the counter and Content-Length are formatted per request); responses framed by
Content-Length (chunked transfer coding is understood too) with nothing else parsed but the status
code. It runs on uvloop when installed.

Closed loop means: the rate reported is what the server sustains at that concurrency, and latency is
service time plus queueing at that concurrency (no coordinated-omission correction: there is no
target rate to omit against).

Safety bounds: traffic goes only to 127.0.0.1 (localhost is accepted and mapped to it); every loop is
bounded in time (warmup + duration, both capped, plus a per-request timeout enforced by a watchdog)
and in count (--max-requests in total).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_DURATION_S = 600.0
MAX_WARMUP_S = 60.0
MAX_CONCURRENCY = 1024
DEFAULT_MAX_REQUESTS = 5_000_000
ALLOWED_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults only where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return action.help or ""
        if "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


class BadResponse(Exception):
    """The server answered something this client cannot frame."""


class PerRequestTimeout(Exception):
    """One request took longer than --timeout (raised by the watchdog's abort)."""


# ----------------------------------------------------------------------------------------------------
# Requests: encoded once


@dataclass
class RequestFactory:
    """Produces the bytes of the next request. With a template, `{n}` (or the chosen placeholder)
    is replaced by a counter that increases with every request sent on any connection."""

    head_prefix: bytes  # request line and headers, ending with "Content-Length: " when there is a body
    fixed: bytes | None  # the whole request when there is nothing to vary
    parts: list[bytes]  # the body template split on the placeholder (template mode)
    counter: int = 0
    # With --targets-file: one request head per path, used in turn (each session's own verify URL).
    heads: list[bytes] | None = None

    @classmethod
    def build(
        cls,
        method: str,
        host_header: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        template: bytes | None,
        placeholder: bytes,
        start: int,
    ) -> RequestFactory:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
        names = {name.lower() for name, _ in headers}
        lines += [f"{name}: {value}" for name, value in headers]
        if (body is not None or template is not None) and "content-type" not in names:
            lines.append("Content-Type: application/json")
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        if template is not None:
            parts = template.split(placeholder)
            if len(parts) < 2:
                raise SystemExit(f"loadgen: the body template has no {placeholder.decode()!r} placeholder")
            return cls(head + b"Content-Length: ", None, parts, start)
        if body is not None:
            fixed = head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        else:
            fixed = head + b"\r\n"
        return cls(head, fixed, [], start)

    def next(self) -> bytes:
        if self.heads is not None:
            head = self.heads[self.counter % len(self.heads)]
            self.counter += 1
            return head + (self.fixed or b"")
        if self.fixed is not None:
            return self.fixed
        n = str(self.counter).encode()
        self.counter += 1
        body = n.join(self.parts)
        return b"".join((self.head_prefix, str(len(body)).encode(), b"\r\n\r\n", body))


# ----------------------------------------------------------------------------------------------------
# Responses: status code and framing only


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One response: (status, body, server_wants_close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    # "HTTP/1.1 200 OK\r\n..."
    try:
        status = int(head[9:12])
    except ValueError:
        raise BadResponse(f"bad status line {head[:40]!r}") from None
    lower = head.lower()
    close = b"\r\nconnection: close\r\n" in lower
    idx = lower.find(b"\r\ncontent-length:")
    if idx >= 0:
        end = lower.index(b"\r\n", idx + 2)
        length = int(lower[idx + 17 : end])
        body = await reader.readexactly(length) if length else b""
        return status, body, close
    if b"\r\ntransfer-encoding: chunked\r\n" in lower:
        chunks: list[bytes] = []
        for _ in range(1_000_000):  # bounded: a body of a million chunks is a broken server
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers until an empty line
                for _ in range(1000):
                    if await reader.readuntil(b"\r\n") == b"\r\n":
                        break
                return status, b"".join(chunks), close
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        raise BadResponse("too many chunks")
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", close
    # No framing: the body runs until the server closes the connection.
    return status, await reader.read(64 * 1024 * 1024), True


# ----------------------------------------------------------------------------------------------------
# The closed loop


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, measured requests only
    last_end: float = 0.0  # when the last measured answer arrived (a run cut short by --max-requests)
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    warmup_requests: int = 0
    warmup_status: dict[int, int] = field(default_factory=dict)
    warmup_mismatches: int = 0
    sent: int = 0
    connects: int = 0
    samples: list[str] = field(default_factory=list)

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


@dataclass
class Run:
    host: str
    port: int
    factory: RequestFactory
    concurrency: int
    warmup_s: float
    duration_s: float
    max_requests: int
    timeout_s: float
    expect: bytes | None
    keep_samples: int
    stats: Stats = field(default_factory=Stats)
    measure_start: float = 0.0
    measure_end: float = 0.0
    # connection slot -> (writer, start of the in-flight request or 0.0)
    inflight: dict[int, tuple[asyncio.StreamWriter, float]] = field(default_factory=dict)
    timed_out: set[int] = field(default_factory=set)


async def worker(run: Run, slot: int) -> None:
    stats = run.stats
    factory = run.factory
    expect = run.expect
    perf = time.perf_counter
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    backoff = 0.01
    while True:  # bounded by the deadline and by max_requests
        now = perf()
        if now >= run.measure_end or stats.sent >= run.max_requests:
            break
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(run.host, run.port)
                stats.connects += 1
                backoff = 0.01
            data = factory.next()
            stats.sent += 1
            start = perf()
            run.inflight[slot] = (writer, start)
            writer.write(data)
            status, body, close = await read_response(reader)
            end = perf()
            run.inflight.pop(slot, None)
            if start >= run.measure_start and end <= run.measure_end:
                stats.latencies.append(end - start)
                stats.last_end = max(stats.last_end, end)
                stats.status[status] = stats.status.get(status, 0) + 1
                if expect is not None and expect not in body:
                    stats.mismatches += 1
                    if len(stats.samples) < run.keep_samples:
                        stats.samples.append(body[:500].decode("utf-8", "replace"))
            elif end < run.measure_start:  # warm-up answers are checked too, just not timed
                stats.warmup_requests += 1
                stats.warmup_status[status] = stats.warmup_status.get(status, 0) + 1
                if expect is not None and expect not in body:
                    stats.warmup_mismatches += 1
            if close:
                writer.close()
                reader = writer = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken connection, a timeout abort, a bad response
            run.inflight.pop(slot, None)
            timed_out = slot in run.timed_out
            run.timed_out.discard(slot)
            if perf() < run.measure_end:  # errors caused by the end of the run itself do not count
                stats.error(PerRequestTimeout() if timed_out else exc)
            if writer is not None:
                writer.transport.abort()
            reader = writer = None
            await asyncio.sleep(backoff)  # do not spin on a refused connection
            backoff = min(backoff * 2, 0.5)
    if writer is not None:
        writer.transport.abort()


async def watchdog(run: Run) -> None:
    """Aborts the connection of any request older than --timeout, so no read waits forever."""
    perf = time.perf_counter
    while perf() < run.measure_end:
        await asyncio.sleep(min(0.1, run.timeout_s / 4))
        now = perf()
        for slot, (writer, start) in list(run.inflight.items()):
            if now - start > run.timeout_s:
                run.timed_out.add(slot)
                run.inflight.pop(slot, None)
                writer.transport.abort()


async def main_async(run: Run, quiet: bool) -> None:
    begin = time.perf_counter()
    run.measure_start = begin + run.warmup_s
    run.measure_end = run.measure_start + run.duration_s
    if not quiet:
        print(
            f"loadgen: {run.concurrency} connections to {run.host}:{run.port}, "
            f"{run.warmup_s:g} s warm-up + {run.duration_s:g} s measured",
            file=sys.stderr,
            flush=True,
        )
    tasks = [asyncio.create_task(worker(run, i)) for i in range(run.concurrency)]
    dog = asyncio.create_task(watchdog(run))
    # Stop at the deadline: a request still in flight then could not be counted anyway.
    remaining = run.measure_end - time.perf_counter()
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, remaining))
    for t in pending:
        t.cancel()
    dog.cancel()
    await asyncio.gather(*pending, dog, return_exceptions=True)
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            run.stats.error(t.exception())  # type: ignore[arg-type]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    # nearest rank
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]


def summarise(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    stats = run.stats
    window = run.duration_s
    if stats.sent >= run.max_requests and stats.last_end > run.measure_start:
        window = min(window, stats.last_end - run.measure_start)
    lat = sorted(stats.latencies)
    measured = len(lat)
    ms = 1000.0
    result: dict[str, Any] = {
        "url": args.url,
        "method": args.method,
        "concurrency": run.concurrency,
        "warmup_s": run.warmup_s,
        "duration_s": run.duration_s,
        "requests": measured,
        # Over the measured window; a run cut short by --max-requests is measured up to its last answer.
        "rps": round(measured / window, 1) if window > 0 else 0.0,
        "latency_ms": {
            "mean": round(sum(lat) / measured * ms, 3) if measured else 0.0,
            "p50": round(percentile(lat, 0.50) * ms, 3),
            "p90": round(percentile(lat, 0.90) * ms, 3),
            "p99": round(percentile(lat, 0.99) * ms, 3),
            "max": round((lat[-1] if lat else 0.0) * ms, 3),
        },
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "non_2xx": sum(v for k, v in stats.status.items() if not 200 <= k < 300),
        "errors": dict(sorted(stats.errors.items())),
        "error_count": sum(stats.errors.values()),
        "warmup_requests": stats.warmup_requests,
        "warmup_status": {str(k): v for k, v in sorted(stats.warmup_status.items())},
        "warmup_non_2xx": sum(v for k, v in stats.warmup_status.items() if not 200 <= k < 300),
        "requests_sent": stats.sent,
        "connections_opened": stats.connects,
        "hit_max_requests": stats.sent >= run.max_requests,
    }
    if run.expect is not None:
        result["expect"] = run.expect.decode("utf-8", "replace")
        result["expect_mismatches"] = stats.mismatches
        result["warmup_expect_mismatches"] = stats.warmup_mismatches
        if stats.samples:
            result["mismatch_samples"] = stats.samples
    return result


# ----------------------------------------------------------------------------------------------------
# Command line


def parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {raw!r}")
    if any(c in raw for c in "\r\n"):
        raise argparse.ArgumentTypeError("a header must not contain a line break")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loadgen.py",
        description="Closed-loop HTTP/1.1 load generator (keep-alive, raw asyncio streams) for 127.0.0.1. "
        "Prints one JSON object with requests/s, latency percentiles (ms), status counts and errors.",
        formatter_class=HelpFormatter,
        epilog="example: loadgen.py --url http://127.0.0.1:8000/healthz -c 16 -d 5 -w 1",
    )
    p.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path (only 127.0.0.1/localhost)")
    p.add_argument(
        "-c", "--concurrency", type=int, default=32, help="connections, one request in flight each"
    )
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("-m", "--method", default="GET", help="HTTP method")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        type=parse_header,
        help="extra request header 'Name: value' (repeatable)",
    )
    p.add_argument(
        "--headers-file",
        default=None,
        help="more headers, one 'Name: value' per line (keeps secrets such as tokens out of `ps`)",
    )
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", default=None, help="request body (a string)")
    body.add_argument("--body-file", default=None, help="request body read from this file")
    body.add_argument(
        "--body-template",
        default=None,
        help="request body in which the placeholder is replaced by a per-request counter",
    )
    body.add_argument("--body-template-file", default=None, help="like --body-template, read from a file")
    p.add_argument(
        "--targets-file",
        default=None,
        help="paths to request in turn, one per line (the host and port come from --url); a fixed body",
    )
    p.add_argument("--placeholder", default="{n}", help="what the counter replaces in a body template")
    p.add_argument("--start", type=int, default=0, help="first counter value in template mode")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help="stop after sending this many requests in total (warm-up included)",
    )
    p.add_argument(
        "--expect",
        default=None,
        help="bytes every response body must contain; misses are counted (expect_mismatches, "
        "warmup_expect_mismatches)",
    )
    p.add_argument("--keep-samples", type=int, default=3, help="mismatching bodies to include in the result")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio event loop")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    return p


def make_run(args: argparse.Namespace) -> Run:
    parts = urlsplit(args.url)
    if parts.scheme != "http":
        raise SystemExit("loadgen: only http:// URLs (plain HTTP/1.1 on the loopback)")
    host = (parts.hostname or "").lower()
    if host not in ALLOWED_HOSTS:
        raise SystemExit(f"loadgen: refusing to send traffic to {host!r}; only 127.0.0.1 is allowed")
    port = parts.port or 80
    if not 0 < args.concurrency <= MAX_CONCURRENCY:
        raise SystemExit(f"loadgen: --concurrency must be 1..{MAX_CONCURRENCY}")
    if not 0 < args.duration <= MAX_DURATION_S:
        raise SystemExit(f"loadgen: --duration must be in (0, {MAX_DURATION_S:g}] seconds")
    if not 0 <= args.warmup <= MAX_WARMUP_S:
        raise SystemExit(f"loadgen: --warmup must be in [0, {MAX_WARMUP_S:g}] seconds")
    if not 0 < args.timeout <= 120:
        raise SystemExit("loadgen: --timeout must be in (0, 120] seconds")
    if args.max_requests <= 0:
        raise SystemExit("loadgen: --max-requests must be positive")
    body: bytes | None = None
    template: bytes | None = None
    if args.body is not None:
        body = args.body.encode()
    elif args.body_file:
        with open(args.body_file, "rb") as f:
            body = f.read()
    elif args.body_template is not None:
        template = args.body_template.encode()
    elif args.body_template_file:
        with open(args.body_template_file, "rb") as f:
            template = f.read()
    headers = list(args.header)
    if args.headers_file:
        with open(args.headers_file, encoding="utf-8") as f:
            try:
                headers += [parse_header(line.rstrip("\r\n")) for line in f if line.strip()]
            except argparse.ArgumentTypeError as exc:
                raise SystemExit(f"loadgen: {args.headers_file}: {exc}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if args.targets_file:
        if template is not None:
            raise SystemExit("loadgen: --targets-file goes with a fixed body, not a body template")
        with open(args.targets_file, encoding="utf-8") as f:
            paths = [line.strip() for line in f if line.strip()]
        if not paths or any(not p.startswith("/") for p in paths):
            raise SystemExit("loadgen: --targets-file needs one path per line, each starting with /")
        payload = body or b""
        tail = b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        heads = [
            RequestFactory.build(
                args.method.upper(),
                f"127.0.0.1:{port}",
                path,
                headers,
                payload,
                None,
                args.placeholder.encode(),
                0,
            ).head_prefix
            + tail
            for path in paths
        ]
        factory = RequestFactory(b"", b"", [], args.start, heads)
        return Run(
            host=ALLOWED_HOSTS[host],
            port=port,
            factory=factory,
            concurrency=args.concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            max_requests=args.max_requests,
            timeout_s=args.timeout,
            expect=args.expect.encode() if args.expect is not None else None,
            keep_samples=max(0, args.keep_samples),
        )
    factory = RequestFactory.build(
        args.method.upper(),
        f"127.0.0.1:{port}",
        target,
        headers,
        body,
        template,
        args.placeholder.encode(),
        args.start,
    )
    return Run(
        host=ALLOWED_HOSTS[host],
        port=port,
        factory=factory,
        concurrency=args.concurrency,
        warmup_s=args.warmup,
        duration_s=args.duration,
        max_requests=args.max_requests,
        timeout_s=args.timeout,
        expect=args.expect.encode() if args.expect is not None else None,
        keep_samples=max(0, args.keep_samples),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = make_run(args)
    loop_factory = None
    if not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main_async(run, args.quiet))
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130
    result = summarise(run, args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
