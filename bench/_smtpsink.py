#!/usr/bin/env python3
"""A lean SMTP server for the benchmarks: it speaks the protocol, takes every mail, keeps none, and
writes one line per accepted recipient (`<unix time> <address>`) to a file.

Why not aiosmtpd, which the tests use: on this machine aiosmtpd costs about 0.7 ms of CPU per mail, as
much as Passgate's own worker spends sending it, and in a one-machine benchmark that CPU is taken from
Passgate (the SMTP server of a real installation runs elsewhere). This one parses what it must (command
lines, the DATA terminator) on uvloop in a process of its own, so the benchmark charges Passgate only
for Passgate's work. `bench/challenge.py --sink aiosmtpd` measures with aiosmtpd instead.

What it speaks: EHLO (PIPELINING, 8BITMIME, SIZE), HELO, MAIL, RCPT, DATA (to the line holding a lone
period), RSET, NOOP, QUIT; anything else gets 500. A mail is "arrived" when its final period has been
read; that time is written at once (the file is flushed every 20 ms).

Bounded: it listens on 127.0.0.1 only, exits by itself after --max-seconds, and exits when the process
that started it goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import IO

EHLO = b"250-sink.local\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"
END = b"\r\n.\r\n"


class SmtpSink(asyncio.Protocol):
    out: IO[str]

    def __init__(self) -> None:
        self.buf = b""
        self.in_data = False
        self.rcpts: list[str] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        transport.write(b"220 sink.local ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        replies: list[bytes] = []
        while True:
            if self.in_data:
                # The data began right after the DATA line: a message may be empty (".\r\n" first).
                if self.buf.startswith(b".\r\n"):
                    end, skip = 0, 3
                else:
                    end = self.buf.find(END)
                    if end < 0:
                        break
                    skip = len(END)
                self.buf = self.buf[end + skip :]
                self.in_data = False
                now = f"{time.time():.6f}"
                for rcpt in self.rcpts:
                    self.out.write(f"{now} {rcpt}\n")
                self.rcpts = []
                replies.append(b"250 2.0.0 OK queued\r\n")
                continue
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                break
            line, self.buf = self.buf[:eol], self.buf[eol + 2 :]
            reply = self.command(line)
            if reply is None:  # QUIT
                replies.append(b"221 2.0.0 Bye\r\n")
                assert self.transport is not None
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
            replies.append(reply)
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))

    def command(self, line: bytes) -> bytes | None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            return EHLO
        if verb == b"HELO":
            return b"250 sink.local\r\n"
        if verb == b"MAIL":
            self.rcpts = []
            return b"250 2.1.0 OK\r\n"
        if verb == b"RCPT":
            addr = line.partition(b":")[2].strip().split(b" ", 1)[0].strip(b"<>")
            self.rcpts.append(addr.decode("utf-8", "replace").lower())
            return b"250 2.1.5 OK\r\n"
        if verb == b"DATA":
            if not self.rcpts:
                return b"503 5.5.1 RCPT first\r\n"
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"RSET":
            self.rcpts = []
            return b"250 2.0.0 OK\r\n"
        if verb == b"NOOP":
            return b"250 2.0.0 OK\r\n"
        if verb == b"QUIT":
            return None
        return b"500 5.5.2 unknown command\r\n"


async def serve(port: int, out: IO[str], max_seconds: float) -> None:
    parent = os.getppid()
    SmtpSink.out = out
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SmtpSink, "127.0.0.1", port, backlog=512)
    deadline = time.monotonic() + max_seconds
    async with server:
        while time.monotonic() < deadline and os.getppid() == parent:
            out.flush()
            await asyncio.sleep(0.02)
        out.flush()


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/_smtpsink.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--out", required=True, help="file to append `<time> <recipient>` lines to")
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
