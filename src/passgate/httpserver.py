"""The HTTP server limits of `passgate serve`: request-head size, head and body read timeouts.

uvicorn with httptools (its parser when installed, and ours) has an idle keep-alive timeout and nothing
else: no cap on the request head (the parser keeps a header it has not finished in memory, however long)
and no deadline for a head or a body, so a client that sends a few bytes now and then holds its
connection open for ever. h11, its other parser, caps the head, but parses at a fraction of httptools'
speed and still has no timeouts. ASGI middleware cannot help: the app is called only once the head is
complete. So the limits live in a subclass of uvicorn's httptools protocol (`limited_protocol`), where
each connection's bytes arrive:

- the head (request line and headers) may hold at most `max_header_bytes`: past it the answer is 431 and
  the connection is closed, whether the head arrived whole or one piece at a time (what is received is
  counted as it comes, before the parser keeps it, and a head that ends close to the cap is measured
  from its parsed line and headers);
- the head must arrive within `header_timeout` seconds of the connection opening, or of the first byte of
  the next request on a kept-alive connection: else 408, and closed;
- the body must arrive within `body_timeout` seconds of the end of the head: else the connection is
  closed (408 if the app has not answered yet), and the app sees the client gone;
- an idle kept-alive connection is closed after uvicorn's `timeout_keep_alive`.

After a 431 or a 408 the connection is half-closed and what the client still sends is read and dropped
for a moment (2 s) before it is closed: closing a socket with unread data in it resets the connection,
and the client would lose the answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The head is fed to the parser in pieces of at most this many bytes, so that a head that began inside a
# piece is counted from the next one: the cap is exceeded by less than a piece before it is refused.
_HEAD_PIECE = 16 * 1024
# How long a refused connection is drained before it is closed.
_LINGER_SECONDS = 2.0
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0


class _HeadTooLarge(Exception):
    pass


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `limits` (see the module docstring).

    Every request has a deadline (its head's, then its body's), but timers are not set and cancelled
    per request: the connection keeps one timer, which looks at the current deadline when it fires and
    sets itself again for it if it has moved on. Per request that is a few attribute writes (timers set
    and cancelled twice per request added a tenth to uvicorn's own time per request, measured
    in-process); the timer is set again about once per head timeout."""

    limits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0  # received of the current head (before the piece being parsed)
        self._piece = 0  # the size of the piece being parsed
        self._heads_begun = 0
        self._too_large = False
        self._refused = False
        self._deadline: float | None = None  # loop time the current head or body must be in by
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a whole head is closed, even one that sends nothing at all.
        self._set_deadline(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining before the close
        if not self._in_head:  # a body, or the rest of one
            super().data_received(data)
            return
        offset = 0
        while True:
            piece = data if offset == 0 and len(data) <= _HEAD_PIECE else data[offset : offset + _HEAD_PIECE]
            offset += len(piece)
            self._piece = len(piece)
            begun = self._heads_begun
            super().data_received(piece)
            if self._in_head and not self._refused:
                if self._heads_begun == begun:
                    self._head_bytes += len(piece)
                if self._head_bytes > self.limits.max_header_bytes:
                    self._refuse(431)
                    return
            if offset >= len(data) or self._refused or self.transport.is_closing():
                return
            if not self._in_head:
                super().data_received(data[offset:])
                return

    # -- parser callbacks --------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._heads_begun += 1
        self._in_head = True
        self._head_bytes = 0
        if self._deadline is None:  # the first request's deadline runs from the connection's opening
            self._set_deadline(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._in_head = False
        # What is counted as it arrives leaves out the piece the head began in and the one it ends in:
        # the head is measured now whenever those could take it past the cap.
        cap = self.limits.max_header_bytes
        if self._head_bytes + self._piece + _HEAD_PIECE > cap and self._head_size() > cap:
            self._too_large = True
            raise _HeadTooLarge()  # httptools reports it as a parse error: `send_400_response`
        # Until the message is complete (at once for a request without a body), its body is awaited.
        self._set_deadline(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._deadline = None
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse(431)
            return
        super().send_400_response(msg)

    # -- limits ------------------------------------------------------------------------------------------

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _set_deadline(self, seconds: float) -> None:
        at = self.loop.time() + seconds
        self._deadline = at
        if self._timer is not None and self._timer_at <= at:
            return  # it fires first, and then waits for this deadline
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self.loop.call_at(at, self._on_timer), at

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._refused or self.transport.is_closing():
            return
        if self.loop.time() < deadline:
            self._timer, self._timer_at = self.loop.call_at(deadline, self._on_timer), deadline
            return
        self._deadline = None
        if self._in_head:
            self._refuse(408)
        else:
            self._body_timed_out()

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None:
            return
        answered = cycle.response_started
        # The app waiting for the rest of the body is told the client is gone; what it answers is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        if answered:
            self.transport.close()
        else:
            self._refuse(408, answering=True)

    def _refuse(self, status: int, answering: bool = False) -> None:
        """Answer `status`, stop reading requests, and close. With a response under way (a request before
        this one, pipelined), the connection is only closed: nothing may be written into that response."""
        self._refused = True
        self._deadline = None
        cycle = self.cycle
        if not (answering or cycle is None or cycle.response_complete):
            self.transport.close()
            return
        reason = _REASONS[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(reason), reason)
        )
        # The client may still be sending (the rest of a large head, a slow one): let it read the answer
        # first, as a close with its bytes unread would reset the connection and lose the answer.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def limited_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn (`http=`) for these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class _LimitsFromSettings:
    """The limits of this process's settings, read once (see SettingsLimitedProtocol)."""

    _limits: HttpLimits | None = None

    def __get__(self, obj: object, owner: type | None = None) -> HttpLimits:
        if self._limits is None:
            from passgate.config import load_settings

            settings = load_settings()
            self._limits = HttpLimits(
                max_header_bytes=settings.http_max_header_bytes,
                header_timeout=settings.http_header_timeout_seconds,
                body_timeout=settings.http_body_timeout_seconds,
            )
        return self._limits


class SettingsLimitedProtocol(LimitedHttpToolsProtocol):
    """The protocol of `passgate serve --workers N`: uvicorn hands its configuration to each API process
    by pickling it, and a class made by `limited_protocol` cannot be; this one is named by its import path
    and reads the limits from the process's own settings (the same environment as the parent's)."""

    limits = _LimitsFromSettings()

