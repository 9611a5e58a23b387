"""Email over SMTP with aiosmtplib: smtp:// (STARTTLS when offered), smtps:// (implicit TLS), auth.

Credentials are only ever sent over TLS: with a user in the URL, an smtp:// server that offers no
STARTTLS fails the send (`ProviderAuthorizationError`, the reason recorded) before anything is said
about the login. Without credentials, a relay that offers no STARTTLS is written to in clear (a relay on
the same machine, 127.0.0.1 or ::1, is the usual case).

Connections are kept open and reused, up to `pool_size` per event loop (`?pool=N` on the URL, default 32): a
message costs the MAIL, RCPT and DATA exchanges, not a TCP (and TLS) handshake, EHLO and login each. A
connection that failed in any way is closed, never reused; one that the server closed while it sat idle is
replaced at once, within the same try. Each message is still sent, and its outcome reported, on its own: the
caller records one attempt per try.

aiosmtplib opens each connection (TCP or implicit TLS, EHLO, STARTTLS, AUTH: the parts with many cases);
the mail transactions on it are then written by `_Wire`, which takes the connection's transport over.
aiosmtplib has no PIPELINING (RFC 2920) and runs two regular expressions over every message (three when
the server announces SIZE); on this machine that made sending a mail cost about four times the CPU of
writing `MAIL`, `RCPT` and `DATA` in one packet and the message, already CRLF, in the next. A server that
does not announce PIPELINING gets the same commands one at a time.

Messages wait in a queue per event loop; up to `pool_size` tasks each hold a connection and send from it
(`SmtpEmailSender._drive`). With PIPELINING, the next waiting message's `MAIL`, `RCPT` and `DATA` go in
the same write as the previous message's content, and their replies come with its final one
(`_Wire.send_chained`): a write and a read per message instead of two of each. A message none of whose
content went out (the connection died, or the server said 421) is sent on another connection in the
same try; one whose content went out is never sent twice in a try.

The MIME text is composed here directly (headers folded by the `email` package once per distinct value and
remembered); building an `EmailMessage` and flattening it costs more CPU than the rest of a send together.
Anything out of the ordinary (an address that is not plain ASCII) goes through `EmailMessage` as before.
Once a connection has shown that the server takes 8bit content (8BITMIME, RFC 6152), parts that are not
short-lined ASCII go as they are (8bit UTF-8, `BODY=8BITMIME`) instead of base64 or quoted-printable, which
cost the built-in HTML part about 20 µs a message; a connection to a server that does not announce it gets
the message composed again the old way.
"""

from __future__ import annotations

import asyncio
import binascii
import email.policy
import itertools
import re
import secrets
import socket
import ssl
import time
import weakref
from collections import deque
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from typing import Any, NamedTuple

import aiosmtplib

from passgate.messaging.senders.base import (
    OutgoingEmail,
    PermanentSendError,
    ProviderAuthorizationError,
    TemporarySendError,
    provider_said,
)
from passgate.smtp_url import parse_smtp_url

_POLICY = email.policy.SMTP  # CRLF line ends, as the message goes on the wire
# A plain ASCII mailbox (no display name, no quoting): what the fast path writes into To as it is.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_MAX_LINE = 78  # as EmailMessage.set_content: longer lines, or non-ASCII, are encoded
_MAX_8BIT_LINE = 998  # RFC 5321 4.5.3.1.6, less the CRLF
_BASE64_LINE = 76  # RFC 2045 6.8
_BASE64_LINES = re.compile(b".{1,%d}" % _BASE64_LINE)
# What the envelope may carry as it is: printable ASCII without spaces or angle brackets (no command injection).
_ENVELOPE_ADDRESS = re.compile(r"[!-;=?-~]+")
_MAX_REPLY = 64 * 1024  # a reply (with its continuation lines) longer than this is refused
# Messages a connection is given to send one after the other before another connection is used: each
# message after the first on a connection costs one exchange instead of two (`_Wire.send_chained`), so a
# round of 70 on 9 connections costs fewer than on 32. Up to `pool_size` connections still open at once.
CHAINED = 8


@lru_cache(maxsize=4096)
def _folded(name: str, value: str) -> bytes:
    """`Name: value` folded and encoded (RFC 2047 for non-ASCII) exactly as EmailMessage would write it."""
    header = _POLICY.header_factory(name, value)
    return str(header.fold(policy=_POLICY)).encode("ascii")


@lru_cache(maxsize=1024)
def _from(value: str) -> tuple[bytes, str]:
    """The folded From header and the envelope sender (its address)."""
    header = _POLICY.header_factory("From", value)
    addresses: tuple[Any, ...] = tuple(getattr(header, "addresses", ()))
    if len(addresses) != 1:
        raise ValueError("not a single address")
    addr_spec = str(addresses[0].addr_spec)
    if not _ENVELOPE_ADDRESS.fullmatch(addr_spec) or "@" not in addr_spec:
        raise ValueError("not a plain ASCII address")
    return header.fold(policy=_POLICY).encode("ascii"), addr_spec


def _part(content_type: str, text: str, eight_bit: bool = False) -> tuple[bytes, bool]:
    """One part of the message, and whether it is 8bit. 7bit when it is short-lined ASCII; else, with
    `eight_bit` (the server announced 8BITMIME, RFC 6152), as it is (8bit UTF-8, or 7bit if ASCII) when
    no line is longer than SMTP allows and there is no NUL; otherwise the text part is quoted-printable (readable in the raw
    message) and the HTML part base64: binascii's quoted-printable took 40-55 µs on the built-in 5 KB
    HTML (a tenth of a worker's CPU per mail), base64 and its lines about 20, 8bit about 3."""
    normal = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if not normal.endswith("\n"):
        normal += "\n"  # the body ends with a line break (as EmailMessage writes it)
    eight = False
    if normal.isascii() and max(map(len, normal.split("\n"))) <= _MAX_LINE:
        cte = b"7bit"
        body = normal.replace("\n", "\r\n").encode("ascii")
    elif (
        eight_bit
        and "\x00" not in normal
        and max(map(len, (raw := normal.encode("utf-8")).split(b"\n"))) <= _MAX_8BIT_LINE
    ):
        # ASCII with lines longer than 78 is 7bit too (RFC 2045 2.7: lines up to 998 octets).
        eight = not normal.isascii()
        cte = b"8bit" if eight else b"7bit"
        body = raw.replace(b"\n", b"\r\n")
    elif content_type == "text/html":
        cte = b"base64"
        # Encoded in canonical form, CRLF line ends (RFC 2045 6.8), as it reads back from the other paths.
        raw = binascii.b2a_base64(normal.replace("\n", "\r\n").encode("utf-8"), newline=False)
        body = b"\r\n".join(_BASE64_LINES.findall(raw)) + b"\r\n"
    else:
        cte = b"quoted-printable"
        qp = binascii.b2a_qp(normal.encode("utf-8"), quotetabs=False, istext=True, header=False)
        body = qp.replace(b"\n", b"\r\n")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
    return (
        b"Content-Type: " + content_type.encode() + b'; charset="utf-8"\r\n'
        # The CRLF after the body is the boundary's.
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body + b"\r\n"
    ), eight


class Envelope(NamedTuple):
    sender: str
    recipient: str
    message_id: str  # the Message-ID header's value
    data: bytes | None  # the message as sent, or None: send `message` (the out-of-the-ordinary path)
    message: EmailMessage | None = None
    eight_bit: bool = False  # `data` has an 8bit part: only for a server that announced 8BITMIME


class DateHeader:
    """The Date header of a message composed now: `formatdate` of this second (it writes whole seconds),
    made once per second instead of once per message."""

    def __init__(self) -> None:
        self._second = -1
        self._header = b""

    def __call__(self) -> bytes:
        return self.at(int(time.time()))

    def at(self, second: int) -> bytes:
        if second != self._second:
            self._header = b"Date: " + formatdate(second, localtime=False).encode() + b"\r\n"
            self._second = second
        return self._header


_date_header = DateHeader()
# Multipart boundaries: a random prefix per process and a counter. A boundary only has to be absent from the
# parts it separates (`compose` checks, and takes the next one if not); it need not be unpredictable.
_BOUNDARY_PREFIX = b"=_" + secrets.token_hex(8).encode()
_boundaries = itertools.count()


def _boundary() -> bytes:
    return _BOUNDARY_PREFIX + b"%016x" % next(_boundaries)


class CleartextRefused(Exception):
    """The connection is not encrypted, and the sender has credentials to send: they are not sent."""


class _NotSent(Exception):
    """The connection was found closed before any of the message was written: try a new one, same try."""


class _Wire(asyncio.Protocol):
    """A connection aiosmtplib opened, taken over for its mail transactions (see the module docstring).

    Replies are parsed as they come (multiline replies joined, as aiosmtplib does) and queued in order,
    so pipelined commands get theirs back in the order they were written. Errors are aiosmtplib's own
    exception types, so the sender maps them one way whichever path a message took. A transaction that
    did not end cleanly leaves the wire broken: it is closed, never reused."""

    def __init__(self, transport: asyncio.BaseTransport, extensions: dict[str, str], timeout: float) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport subclasses
        self.pipelining = "pipelining" in extensions
        self.eight_bit = "8bitmime" in extensions
        self.size = "size" in extensions
        self.timeout = timeout
        self.broken = False
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._replies: deque[tuple[int, str]] = deque()
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        transport.set_protocol(self)

    @property
    def usable(self) -> bool:
        # Anything the server said unasked while idle (a 421 before it hangs up) retires the connection.
        return not (self.broken or self._lost or self._replies or self._buffer or self.transport.is_closing())

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                self._fail(aiosmtplib.SMTPResponseException(-1, "malformed SMTP reply"))
                return
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._replies.append((int(line[:3]), "\n".join(self._lines)))
                self._lines = []
        if len(self._buffer) + sum(map(len, self._lines)) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "SMTP reply too long"))
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)

    def _fail(self, exc: Exception) -> None:
        self.broken = True
        if self._lost is None:
            self._lost = exc
        self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (len(self._replies) >= self._wanted or self._lost):
            waiter.set_result(None)

    # -- the exchange --------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        if self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def _read(self, count: int) -> list[tuple[int, str]]:
        while len(self._replies) < count:
            if self._lost is not None:
                raise self._lost
            self._wanted = count
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # The timeout as a timer that ends the wait (not asyncio.wait_for, whose wrapping costs more
            # than parsing the replies: two waits per message).
            timer = loop.call_later(self.timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return [self._replies.popleft() for _ in range(count)]

    def transaction(self, envelope: Envelope) -> tuple[bytes, bytes, bytes]:
        """MAIL, RCPT and DATA of a mail transaction, and the message as it follows 354 (dot-stuffed, with
        its final period). `envelope.data` is the message with CRLF line ends and nothing else."""
        data = envelope.data
        assert data is not None
        if data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")  # RFC 5321 4.5.2: a line's leading period doubled
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        size = b" SIZE=%d" % len(data) if self.size else b""
        if envelope.eight_bit:
            if not self.eight_bit:
                raise ValueError("an 8bit message for a server without 8BITMIME")  # see _Job.fit
            size += b" BODY=8BITMIME"
        mail = b"MAIL FROM:<" + envelope.sender.encode("ascii") + b">" + size + b"\r\n"
        rcpt = b"RCPT TO:<" + envelope.recipient.encode("ascii") + b">\r\n"
        return mail, rcpt, data + b".\r\n"

    async def send(self, envelope: Envelope) -> None:
        """One mail transaction, its commands one at a time (a server without PIPELINING)."""
        self.broken = True  # until the transaction has ended cleanly
        sender, recipient = envelope.sender, envelope.recipient
        mail, rcpt, payload = self.transaction(envelope)
        try:
            self._write(mail)
            replies = await self._read(1)
            if replies[0][0] == 250:
                self._write(rcpt)
                replies += await self._read(1)
                if replies[1][0] in (250, 251):
                    self._write(b"DATA\r\n")
                    replies += await self._read(1)
        except aiosmtplib.SMTPServerDisconnected as exc:
            # Nothing of the message went out: a connection that died while idle, to be replaced.
            raise _NotSent() from exc
        _check_envelope(replies, sender, recipient)
        self._write(payload)
        [(code, text)] = await self._read(1)
        if code != 250:
            raise aiosmtplib.SMTPDataError(code, text)
        self.broken = False

    async def send_chained(self, first: _Job, queue: deque[_Job]) -> None:
        """Mail transactions with PIPELINING (RFC 2920), each message's MAIL, RCPT and DATA written with
        the previous message's content: `first`, then as many of `queue`'s messages as are waiting when
        the previous one's 354 has come. One write and one read per message instead of two of each.

        Each message's outcome is set on its job as soon as its final reply comes. A message whose
        commands went out but none of whose content did (the connection died, the server refused to
        start it with a 421, or the previous message failed and the connection was closed before it)
        goes back to the front of `queue` to be sent on another connection in the same try (`_Job.again`).
        The connection is left broken (to be closed) by any failure."""
        self.broken = True
        job = first
        try:
            mail, rcpt, payload = self.transaction(job.fit(self))
        except Exception as exc:
            job.fail(exc)
            self.broken = False
            return
        try:
            self._write(mail + rcpt + b"DATA\r\n")
        except Exception as exc:
            job.again(queue, exc)  # nothing of it went out
            return
        while True:
            try:
                replies = await self._read(3)
            except aiosmtplib.SMTPServerDisconnected as exc:
                job.again(queue, exc)  # nothing of it went out
                return
            except Exception as exc:  # a timeout, a reply that is not SMTP
                job.fail(exc)
                return
            except BaseException as exc:
                job.fail(exc)
                raise
            if replies[0][0] == 421:  # the server will not take another message on this connection
                job.again(queue, aiosmtplib.SMTPSenderRefused(*replies[0], job.envelope.sender))
                return
            try:
                _check_envelope(replies, job.envelope.sender, job.envelope.recipient)
            except aiosmtplib.SMTPException as exc:
                job.fail(exc)
                return
            following = _next_job(queue)
            if following is not None:
                try:
                    mail, rcpt, next_payload = self.transaction(following.fit(self))
                except BaseException as exc:
                    following.fail(exc)
                    following = None
            try:
                if following is None:
                    self._write(payload)
                else:
                    self._write(payload + mail + rcpt + b"DATA\r\n")
                [(code, text)] = await self._read(1)
            except BaseException as exc:
                # The message went out, and its fate is unknown: not sent again in this try.
                job.fail(exc)
                if following is not None:
                    following.again(queue, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            if code != 250:
                job.fail(aiosmtplib.SMTPDataError(code, text))
                if following is not None:
                    following.again(queue, aiosmtplib.SMTPDataError(code, text))
                return
            job.done()
            if following is None:
                self.broken = False
                return
            job, payload = following, next_payload

    async def quit(self) -> None:
        try:
            if self.usable:
                self._write(b"QUIT\r\n")
                self.timeout = min(self.timeout, 2.0)
                await self._read(1)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.broken = True
        if not self.transport.is_closing():
            self.transport.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))


def _check_envelope(replies: list[tuple[int, str]], sender: str, recipient: str) -> None:
    """The replies to MAIL, RCPT and DATA (as many as came: a refused command ends the exchange)."""
    (code, text) = replies[0]
    if code != 250:
        raise aiosmtplib.SMTPSenderRefused(code, text, sender)
    (code, text) = replies[1]
    if code not in (250, 251):
        refused = aiosmtplib.SMTPRecipientRefused(code, text, recipient)
        raise aiosmtplib.SMTPRecipientsRefused([refused])
    (code, text) = replies[2]
    if code != 354:
        raise aiosmtplib.SMTPDataError(code, text)


class _Job:
    """A message waiting for a connection, and the future its sender waits on."""

    __slots__ = ("compose", "envelope", "future", "message", "tried_again")

    def __init__(
        self,
        envelope: Envelope,
        future: asyncio.Future[None],
        message: OutgoingEmail | None = None,
        compose: Callable[..., Envelope] | None = None,
    ) -> None:
        self.envelope = envelope
        self.future = future
        self.message = message
        self.compose = compose
        self.tried_again = False

    def fit(self, wire: _Wire) -> Envelope:
        """The envelope as `wire`'s server takes it: composed again without 8bit parts for a server that
        did not announce 8BITMIME."""
        if self.envelope.eight_bit and not wire.eight_bit and self.message and self.compose:
            self.envelope = self.compose(self.message, eight_bit=False)
        return self.envelope

    def done(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            if isinstance(exc, Exception):
                self.future.set_exception(exc)
            else:  # cancelled: its sender is too
                self.future.cancel()

    def again(self, queue: deque[_Job], exc: BaseException) -> None:
        """Nothing of the message went out: first in line for another connection, once per try."""
        if self.tried_again:
            if isinstance(exc, aiosmtplib.SMTPException):
                self.fail(exc)  # what the server said, or that it hung up
            else:
                lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
                lost.__cause__ = exc
                self.fail(lost)
            return
        self.tried_again = True
        queue.appendleft(self)


def _next_job(queue: deque[_Job]) -> _Job | None:
    """The next message waiting whose sender still waits for it."""
    while queue:
        job = queue.popleft()
        if not job.future.done():  # else its sender was cancelled
            return job
    return None


class _Pool:
    """The open connections of one event loop, the messages waiting for one, and the tasks that send them
    (one per connection in use, at most `size`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: list[tuple[_Wire, float]] = []
        self.queue: deque[_Job] = deque()
        self.drivers: set[asyncio.Task[None]] = set()
        # Drivers that have not yet decided to stop: counted down in the same step as a driver finds the
        # queue empty, so that a message queued after that step starts a driver of its own.
        self.active = 0

    def take(self, max_idle: float) -> _Wire | None:
        now = time.monotonic()
        while self.idle:
            wire, since = self.idle.pop()
            if wire.usable and now - since <= max_idle:
                return wire
            wire.close()
        return None

    def give_back(self, wire: _Wire) -> None:
        self.idle.append((wire, time.monotonic()))


class SmtpEmailSender:
    name = "smtp"

    def __init__(
        self,
        url: str,
        timeout: float = 15.0,
        tls_context: ssl.SSLContext | None = None,
        pool_size: int | None = None,
        max_idle_seconds: float = 30.0,
    ) -> None:
        target = parse_smtp_url(url)
        self.hostname = target.hostname
        self.implicit_tls = target.implicit_tls
        self.port = target.port
        self.username = target.username
        self.password = target.password
        self.timeout = timeout
        self.tls_context = tls_context
        self.domain = "passgate.local"
        # Connections per event loop: `?pool=N` on the URL (1 to 64), else 32. Under load a send waits on
        # the event loop between SMTP replies more than on the server, so more connections send more.
        if pool_size is not None and not 1 <= pool_size <= 64:
            raise ValueError("the pool parameter of PASSGATE_SMTP_URL must be 1 to 64")
        self.pool_size = target.pool_size if pool_size is None else pool_size
        # Servers drop idle sessions (RFC 5321 asks them to wait 5 minutes; some wait less): an older
        # connection is closed rather than tried.
        self.max_idle_seconds = max_idle_seconds
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()
        self._local_hostname: str | None = None
        self.connections_opened = 0
        # Whether the last connection opened announced 8BITMIME (then messages are composed with 8bit parts).
        self.eight_bit_seen = False
        self.pipelining_seen = False  # and PIPELINING (then each connection is given several messages)

    # -- the message -------------------------------------------------------------------------------

    def _message_id(self, message: OutgoingEmail) -> str:
        # The outbox id doubles as Message-ID so a resent duplicate is recognisable downstream.
        domain = message.from_addr.rsplit("@", 1)[-1].strip("> ") or self.domain
        return f"<{message.message_id}@{domain}>"

    def build(self, message: OutgoingEmail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = message.from_addr
        msg["To"] = message.to
        msg["Subject"] = message.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = self._message_id(message)
        msg["Auto-Submitted"] = "auto-generated"
        for k, v in message.headers.items():
            msg[k] = v
        msg.set_content(message.text)
        msg.add_alternative(message.html, subtype="html")
        return msg

    def compose(self, message: OutgoingEmail, eight_bit: bool = False) -> Envelope:
        """The message as it goes on the wire: multipart/alternative, text then HTML, both UTF-8; with
        `eight_bit`, parts that are not 7bit may be 8bit (for a server that announced 8BITMIME)."""
        message_id = self._message_id(message)
        try:
            if not _PLAIN_ADDRESS.fullmatch(message.to) or not message_id.isascii():
                raise ValueError("not a plain address")
            values = (message.from_addr, message.subject, *message.headers.keys(), *message.headers.values())
            if any("\r" in v or "\n" in v for v in values):
                raise ValueError("a line break in a header")  # EmailMessage refuses it with its own words
            from_header, sender = _from(message.from_addr)
            extra = b"".join(_folded(k, v) for k, v in message.headers.items())
            subject = _folded("Subject", message.subject)
        except (ValueError, UnicodeError, IndexError, TypeError):
            msg = self.build(message)
            return Envelope(message.envelope_from or "", message.to, str(msg["Message-ID"]), None, msg)
        text, text_8bit = _part("text/plain", message.text, eight_bit)
        html, html_8bit = _part("text/html", message.html, eight_bit)
        boundary = _boundary()
        while boundary in text or boundary in html:  # only a 7bit or 8bit part could hold it
            boundary = _boundary()
        data = b"".join(
            (
                from_header,
                b"To: " + message.to.encode() + b"\r\n",
                subject,
                _date_header(),
                b"Message-ID: " + message_id.encode() + b"\r\n",
                b"Auto-Submitted: auto-generated\r\n",
                extra,
                b"MIME-Version: 1.0\r\n",
                b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
                b"--" + boundary + b"\r\n",
                text,
                b"--" + boundary + b"\r\n",
                html,
                b"--" + boundary + b"--\r\n",
            )
        )
        if message.envelope_from is not None and _ENVELOPE_ADDRESS.fullmatch(message.envelope_from):
            sender = message.envelope_from  # its bounce address (messaging.bounces)
        return Envelope(sender, message.to, message_id, data, eight_bit=text_8bit or html_8bit)

    # -- sending -----------------------------------------------------------------------------------

    async def send_email(self, message: OutgoingEmail) -> str:
        # 8bit parts once a connection has shown that the server takes them (a connection to a server
        # that does not, behind the same name, gets the message composed again: `_Job.fit`).
        envelope = self.compose(message, eight_bit=self.eight_bit_seen)
        try:
            await self._deliver(envelope, message)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise ProviderAuthorizationError(f"SMTP authentication failed ({exc.code})") from exc
        except CleartextRefused as exc:
            # An operator must act (the relay's TLS, or the URL): failed at once, the reason recorded.
            raise ProviderAuthorizationError(str(exc)) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(c >= 500 for c in codes):
                raise PermanentSendError(f"recipient refused ({codes[0]})") from exc
            raise TemporarySendError(f"recipient deferred ({codes[:1]})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(f"SMTP {exc.code}: {provider_said(exc.message)}") from exc
            raise TemporarySendError(f"SMTP {exc.code}: {provider_said(exc.message)}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporarySendError(f"SMTP unavailable: {type(exc).__name__}") from exc
        return envelope.message_id

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(self.pool_size)
        return pool

    async def _deliver(self, envelope: Envelope, message: OutgoingEmail | None = None) -> None:
        """Queues the message for the connections of this event loop and waits for its outcome. Up to
        `pool_size` tasks each hold a connection and send what is queued (`_drive`)."""
        if envelope.data is None:
            await self._deliver_unusual(envelope)
            return
        pool = self._pool()
        loop = asyncio.get_running_loop()
        job = _Job(envelope, loop.create_future(), message, self.compose)
        pool.queue.append(job)
        # Another connection when there are more messages waiting than the ones in use would send
        # `CHAINED` each (see `CHAINED`).
        chained = CHAINED if self.pipelining_seen else 1  # without PIPELINING nothing is chained
        if pool.active < pool.size and len(pool.queue) > pool.active * chained:
            pool.active += 1
            driver = loop.create_task(self._drive(pool))
            pool.drivers.add(driver)
            driver.add_done_callback(pool.drivers.discard)
        await job.future

    async def _drive(self, pool: _Pool) -> None:
        """Sends queued messages on one connection (an idle one, else a new one) until none is left; a
        connection that ended anything uncleanly is closed and the next message gets another."""
        wire: _Wire | None = None
        job: _Job | None = None
        try:
            while (job := _next_job(pool.queue)) is not None:
                if wire is None and not job.tried_again:  # a second try goes on a new connection
                    wire = pool.take(self.max_idle_seconds)
                if wire is None:
                    try:
                        wire = await self._open()
                    except Exception as exc:
                        job.fail(exc)
                        continue
                if wire.pipelining:
                    await wire.send_chained(job, pool.queue)
                else:
                    try:
                        await wire.send(job.fit(wire))
                    except _NotSent as exc:
                        job.again(pool.queue, exc)
                    except Exception as exc:
                        job.fail(exc)
                    else:
                        job.done()
                if not wire.usable:
                    wire.close()
                    wire = None
            job = None
        except BaseException as exc:  # cancelled (the loop is closing), or a bug: no sender waits forever
            for waiting in [job, *pool.queue] if job is not None else list(pool.queue):
                waiting.fail(exc)
            pool.queue.clear()
            if wire is not None:
                wire.close()
                wire = None
            raise
        finally:
            pool.active -= 1
            if wire is not None:
                pool.give_back(wire)

    async def _deliver_unusual(self, envelope: Envelope) -> None:
        """A message for the email package to write (an address that is not plain ASCII): aiosmtplib sends
        it, SMTPUTF8 and all, on a connection of its own. Rare enough that the handshake does not count."""
        assert envelope.message is not None
        smtp = await self._connect()
        try:
            await smtp.send_message(envelope.message, sender=envelope.sender or None)
            await smtp.quit()
        finally:
            smtp.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._local_hostname is None:
            # What aiosmtplib would say in EHLO, looked up once (it can take a DNS round trip).
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        # No credentials here: aiosmtplib would log in whether or not the connection is encrypted. On
        # smtp:// it upgrades with STARTTLS when the server offers it; the login below checks that it did.
        smtp = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            use_tls=self.implicit_tls,
            start_tls=None if not self.implicit_tls else False,
            timeout=self.timeout,
            tls_context=self.tls_context,
            local_hostname=self._local_hostname,
        )
        await smtp.connect()
        self.connections_opened += 1
        if self.username is not None:
            if smtp.get_transport_info("sslcontext") is None:
                # No STARTTLS offered (or an attacker on the path took it out of the EHLO reply).
                smtp.close()
                raise CleartextRefused(
                    f"the SMTP server {self.hostname}:{self.port} offers no STARTTLS, and the SMTP password is "
                    "never sent in clear: use a relay with STARTTLS, or smtps:// for TLS from the start"
                )
            try:
                await smtp.login(self.username, self.password or "")
            except BaseException:
                smtp.close()
                raise
        return smtp

    async def _open(self) -> _Wire:
        smtp = await self._connect()
        try:
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()  # no extensions: the commands go one at a time
            transport = smtp.transport
            if transport is None or transport.is_closing():
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        except BaseException:
            smtp.close()
            raise
        wire = _Wire(transport, dict(smtp.esmtp_extensions), self.timeout)
        self.eight_bit_seen = wire.eight_bit
        self.pipelining_seen = wire.pipelining
        return wire

    async def release(self) -> None:
        """Close this event loop's idle connections (QUIT, then close)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is None:
            return
        for driver in list(pool.drivers):  # none, unless a send is still going: it ends unsent
            driver.cancel()
        await asyncio.gather(*pool.drivers, return_exceptions=True)
        for wire, _ in pool.idle:
            await wire.quit()
        pool.idle.clear()
