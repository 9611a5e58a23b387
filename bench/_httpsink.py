#!/usr/bin/env python3
"""A lean HTTP SMS gateway for the benchmarks: it takes every POST, answers 200 at once, keeps nothing,
and writes one line per accepted message (`<unix time> <messageId>`) to a file.

It is what `PASSGATE_SMS_PROVIDER=http` posts to (`{"to", "from", "body", "messageId"}`, docs/mfa.md),
without the CPU of a framework: HTTP/1.1 with keep-alive, Content-Length bodies (chunked bodies are
refused with 411), parsed on uvloop in a process of its own, so the benchmark charges Passgate only for
Passgate's work, as bench/_smtpsink.py does for mail. A message has "arrived" when its whole body was read;
that time is written at once (the file is flushed every 20 ms). GET /healthz answers 200.

Bounded: it listens on 127.0.0.1 only, exits by itself after --max-seconds, and exits when the process
that started it goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import IO, Any

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
NO_LENGTH = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class GatewaySink(asyncio.Protocol):
    out: IO[str]

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        replies: list[bytes] = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(self.buf[:end]).split(b"\r\n")
            length = -1
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            method = head[0].split(b" ", 1)[0]
            if method != b"POST":
                length = max(length, 0)
            elif length < 0:
                self.transport.write(b"".join(replies) + NO_LENGTH)
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                break
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            if method != b"POST":
                replies.append(OK)
                continue
            try:
                message_id = json.loads(body)["messageId"]
            except (ValueError, KeyError, TypeError):
                replies.append(BAD)
                continue
            self.out.write(f"{time.time():.6f} {message_id}\n")
            replies.append(OK)
        if replies:
            self.transport.write(b"".join(replies))


async def serve(port: int, out: IO[str], max_seconds: float) -> None:
    parent = os.getppid()
    GatewaySink.out = out
    loop = asyncio.get_running_loop()
    server = await loop.create_server(GatewaySink, "127.0.0.1", port, backlog=512)
    deadline = time.monotonic() + max_seconds
    async with server:
        while time.monotonic() < deadline and os.getppid() == parent:
            out.flush()
            await asyncio.sleep(0.02)
        out.flush()


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/_httpsink.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--out", required=True, help="file to append `<time> <messageId>` lines to")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    args = p.parse_args()
    if not 0 < args.max_seconds <= 4 * 3600:
        raise SystemExit("--max-seconds in (0, 14400]")
    with open(args.out, "a", buffering=1 << 16) as out:
        try:
            import uvloop

            uvloop.run(serve(args.port, out, args.max_seconds))
        except ImportError:
            asyncio.run(serve(args.port, out, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
