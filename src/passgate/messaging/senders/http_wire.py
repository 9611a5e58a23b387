"""HTTP/1.1 POSTs to one provider's origin over kept-alive connections, on the event loop's own streams.

The SMS senders (`senders.http`) post one small request per message and read a small answer. Through
httpx, that cost the worker about 2 ms of CPU per SMS on the development machine, twice what sending a
mail costs, and SMS reached the gateway at a third of the rate mail reached the SMTP server: httpcore's
pool matches every queued request against every connection each time a request starts or ends (with a
round's 200 sends in flight, quadratic), and it keeps 20 connections alive, so a round opened and closed
dozens more. Here a request is its bytes written at once and an answer read by its Content-Length (or
chunks); connections are kept open and reused, up to `pool_size` per event loop (as `SmtpEmailSender` keeps
its SMTP connections), and the TLS context is made once per origin.

What it does not do, and where that goes instead: proxies (a URL that a proxy setting of the environment
covers is sent through httpx, `proxied`), redirects (never followed, as before), HTTP/2, compression (none
is asked for). A connection that failed in any way is closed, never reused; one that the server closed
while it sat idle, found when nothing at all came back on it, is replaced at once, within the same try
(the message id travels as the idempotency key). Answers longer than `MAX_ANSWER` are refused.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
import weakref
from typing import NamedTuple
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

MAX_ANSWER = 1 << 20
# Connections per event loop to one origin: a round's sends beyond that wait for a free one.
POOL_SIZE = 64
# An idle connection older than this is closed rather than reused (servers drop idle ones after 5-60 s).
MAX_IDLE_SECONDS = 4.0
_STALE = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)


class WireError(Exception):
    """The exchange failed: unreachable, timed out, closed early, or an answer that is not HTTP/1.x."""


class Answer(NamedTuple):
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def proxied(url: str) -> bool:
    """Whether the environment sends `url` through a proxy (HTTPS_PROXY, ALL_PROXY, ... less NO_PROXY)."""
    parts = urlsplit(url)
    proxies = getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass(parts.hostname or "")


def _tls_context() -> ssl.SSLContext:
    """As httpx makes it: SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's bundle."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # the system's store
            pass
    context = ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Connection:
    __slots__ = ("reader", "writer", "since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.since = time.monotonic()

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class _Pool:
    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []

    def take(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.usable and now - conn.since <= MAX_IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def give_back(self, conn: _Connection) -> None:
        conn.since = time.monotonic()
        self.idle.append(conn)


class HttpPoster:
    """POSTs to paths of one origin (`url`'s scheme, host and port)."""

    def __init__(
        self, url: str, timeout: float = 15.0, pool_size: int = POOL_SIZE, user_agent: str = "passgate"
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if default else f"{host}:{self.port}"
        self._head = f"\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n".encode("ascii")
        self.timeout = timeout
        self.pool_size = pool_size
        self._context: ssl.SSLContext | None = None
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()

    def request(self, target: str, headers: dict[str, str], body: bytes) -> bytes:
        """The request's bytes. `target` and `headers` come from the configuration and from Passgate's
        own ids and signatures; a line break in any would split the request, and is refused."""
        given = target + "".join(headers) + "".join(headers.values())
        if "\r" in given or "\n" in given or " " in target:
            raise ValueError("a line break in a header, or a space or line break in the request target")
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return b"".join(
            (
                b"POST ",
                target.encode("ascii"),
                b" HTTP/1.1",
                self._head,
                lines.encode("latin-1"),
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )

    async def post(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        data = self.request(target, headers, body)
        pool = self._pool()
        try:
            async with asyncio.timeout(self.timeout):
                async with pool.slots:
                    return await self._exchange(pool, data)
        except TimeoutError:
            raise WireError("timed out") from None

    async def _exchange(self, pool: _Pool, data: bytes) -> Answer:
        for _ in range(2):
            conn = pool.take()
            reused = conn is not None
            if conn is None:
                conn = await self._open()
            try:
                conn.writer.write(data)
                status, body, keep = await _read_answer(conn.reader)
            except _STALE as exc:
                conn.close()
                # Closed by the server while it sat idle: nothing came back, so nothing was taken.
                partial = getattr(exc, "partial", b"")
                if reused and not partial:
                    continue
                raise WireError(f"connection closed: {type(exc).__name__}") from exc
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                conn.close()
                raise WireError(type(exc).__name__) from exc
            except BaseException:
                conn.close()
                raise
            if keep:
                pool.give_back(conn)
            else:
                conn.close()
            return Answer(status, body)
        raise WireError("connection closed")  # pragma: no cover (a fresh connection is not retried)

    async def _open(self) -> _Connection:
        try:
            if self.tls:
                if self._context is None:
                    self._context = _tls_context()
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._context, server_hostname=self.host
                )
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect: {type(exc).__name__}") from exc
        return _Connection(reader, writer)

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(self.pool_size)
        return pool

    async def release(self) -> None:
        """Close this event loop's idle connections."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is None:
            return
        for conn in pool.idle:
            conn.close()
        pool.idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be reused): interim 1xx answers skipped."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise ValueError("not an HTTP/1.x answer")
        status = int(rest[:3])
        length: int | None = None
        chunked = False
        keep = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
                if not 0 <= length <= MAX_ANSWER:
                    raise ValueError("answer too long")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                tokens = value.lower()
                keep = b"keep-alive" in tokens if version == b"HTTP/1.0" else b"close" not in tokens
        if 100 <= status < 200:
            if status == 101:
                raise ValueError("the server switched protocols")
            continue
        if chunked:
            return status, await _read_chunks(reader), keep
        if length is not None:
            return status, await reader.readexactly(length), keep
        if status in (204, 304):
            return status, b"", keep
        # Neither length nor chunks: the body runs to the end of the connection.
        body = await reader.read(MAX_ANSWER + 1)
        while len(body) <= MAX_ANSWER and not reader.at_eof():
            more = await reader.read(MAX_ANSWER + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > MAX_ANSWER:
            raise ValueError("answer too long")
        return status, body, False


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size_read = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        size_read += size
        if size_read > MAX_ANSWER:
            raise ValueError("answer too long")
        chunk = await reader.readexactly(size + 2)
        parts.append(chunk[:-2])
