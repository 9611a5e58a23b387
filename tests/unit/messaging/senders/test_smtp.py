"""The SMTP sender: the MIME it writes reads back as what EmailMessage would have sent, and its connections
are reused, replaced when the server dropped them, and closed on release. Against a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import copy
import email
import email.policy
import random
import time
from email.message import EmailMessage
from email.utils import formatdate

import pytest

from passgate.messaging.senders import smtp
from passgate.messaging.senders.base import (
    OutgoingEmail,
    PermanentSendError,
    ProviderAuthorizationError,
    TemporarySendError,
)
from passgate.messaging.senders.smtp import SmtpEmailSender
from tests.servers import SmtpSink

HTML = '<!DOCTYPE html>\n<p style="color:#123456">' + "x" * 120 + "</p>\n<a href='https://h/v/t=1'>go</a>\n"


def outgoing(**overrides: object) -> OutgoingEmail:
    values: dict[str, object] = {
        "message_id": "0b7c5d8e-1111-4222-8333-944455556666",
        "to": "jo.smith+mfa@example.com",
        "from_addr": "Acme <no-reply@acme.example>",
        "subject": "Confirm it's you – Acme",
        "text": "Hi Jo,\n\nOpen https://h/v/abc to continue.\n",
        "html": HTML,
        "client_id": "c1",
    }
    values.update(overrides)
    return OutgoingEmail(**values)  # type: ignore[arg-type]


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def reference(sender: SmtpEmailSender, message: OutgoingEmail) -> EmailMessage:
    return parsed(sender.build(message).as_bytes(policy=email.policy.SMTP))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"text": "Grüße, Jo — ваш код 123456\n", "subject": "Ваш код"},
        {"text": "a" * 200 + "\ntrailing space \n\tand tab\n", "html": "<p>é</p>"},
        {"text": "=3D already looks encoded\n.leading dot\nFrom the start\n"},
        {"from_addr": "=?utf-8?q?=C3=87a_Va?= <mail@fjord.example>", "headers": {"X-Passgate-Test": "yes"}},
        {"text": "windows\r\nline\rends\r\n"},
        {"text": "", "html": ""},
        {"text": "no line break at the end", "html": "<p>" + "y" * 300 + "</p>"},
    ],
)
@pytest.mark.parametrize("eight_bit", [False, True], ids=["7bit", "8bitmime"])
def test_composed_message_reads_as_the_email_package_builds_it(
    overrides: dict[str, object], eight_bit: bool
) -> None:
    sender = SmtpEmailSender("smtp://127.0.0.1:25")
    message = outgoing(**overrides)
    envelope = sender.compose(message, eight_bit=eight_bit)
    assert envelope.data is not None and envelope.data.isascii() is not envelope.eight_bit
    assert all(len(line) <= 998 for line in envelope.data.split(b"\r\n"))
    assert b"\n" not in envelope.data.replace(b"\r\n", b"")
    ours, theirs = parsed(envelope.data), reference(sender, message)
    for header in ("From", "To", "Subject", "Message-ID", "Auto-Submitted", "MIME-Version", *message.headers):
        assert str(ours[header]) == str(theirs[header]), header
    assert ours.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        mine, ref = ours.get_body((kind,)), theirs.get_body((kind,))
        assert mine is not None and ref is not None
        assert mine.get_content() == ref.get_content(), kind
        assert mine.get_content_charset() == "utf-8"
    # Short-lined ASCII goes as it is; so does the rest for a server that takes 8bit, or else the text part
    # is quoted-printable and the HTML part base64.
    for kind, encoded in (("plain", "quoted-printable"), ("html", "base64")):
        part = ours.get_body((kind,))
        assert part is not None
        plain = part.get_content().isascii() and all(len(x) <= 78 for x in part.get_content().split("\n"))
        if eight_bit:  # as it is, unless a line is longer than SMTP allows
            ascii_ = part.get_content().isascii()
            assert part["Content-Transfer-Encoding"] == ("7bit" if plain or ascii_ else "8bit"), kind
        else:
            assert part["Content-Transfer-Encoding"] == ("7bit" if plain else encoded), kind
    assert envelope.eight_bit is (
        eight_bit and "8bit" in (p["Content-Transfer-Encoding"] for p in ours.iter_parts())
    )
    assert envelope.sender == str(theirs["From"].addresses[0].addr_spec)
    assert envelope.message_id == str(theirs["Message-ID"])
    assert envelope.message_id.startswith("<0b7c5d8e-1111-4222-8333-944455556666@")


def _generated_text(rng: random.Random) -> str:
    pieces = [
        "a",
        "Z",
        " ",
        "\t",
        ".",
        "=",
        "<p>",
        "é",
        "ü",
        "—",
        "ваш",
        "😀",
        "\n",
        "\r\n",
        "\r",
        "--",
        "=_",
    ]
    words = [rng.choice(pieces) * rng.choice((1, 1, 2, 40, 90)) for _ in range(rng.randrange(0, 60))]
    return "".join(words)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def test_composed_messages_read_as_the_email_package_builds_them_for_generated_bodies() -> None:
    """The composing shortcut (`compose`) against `EmailMessage` (`build`) on many generated bodies and
    subjects: the same headers and the same text and HTML once decoded, whatever their characters, line
    lengths and line ends; and every boundary absent from the parts it separates."""
    rng = random.Random(20261207)
    sender = SmtpEmailSender("smtp://127.0.0.1:25")
    boundaries = set()
    for i in range(600):
        subject = _generated_text(rng).replace("\r", " ").replace("\n", " ")[:200] or "Hi"
        message = outgoing(text=_generated_text(rng), html=_generated_text(rng), subject=subject)
        envelope = sender.compose(message, eight_bit=i % 2 == 1)  # and with 8bit parts (8BITMIME)
        assert envelope.data is not None and envelope.data.isascii() is not envelope.eight_bit
        assert all(len(line) <= 998 for line in envelope.data.split(b"\r\n"))
        assert b"\x00" not in envelope.data
        ours, theirs = parsed(envelope.data), reference(sender, message)
        for header in ("From", "To", "Subject", "Message-ID", "Auto-Submitted", "MIME-Version"):
            assert str(ours[header]) == str(theirs[header]), header
        for kind in ("plain", "html"):
            mine, ref = ours.get_body((kind,)), theirs.get_body((kind,))
            assert mine is not None and ref is not None
            # The same text, its line breaks in either form: a part one side encodes quoted-printable and
            # the other base64 (EmailMessage picks the shorter) decodes to CRLF on one side, LF on the other.
            assert _lf(mine.get_content()) == _lf(ref.get_content()), kind
        boundary = ours.get_boundary()
        assert boundary is not None and boundary not in boundaries
        boundaries.add(boundary)
        assert envelope.data.count(f"--{boundary}".encode()) == 3


def test_a_boundary_found_in_a_part_is_never_used() -> None:
    """Boundaries are a per-process prefix and a counter: a part written to contain the next ones (7bit,
    so as it is) makes `compose` take a later one, absent from both parts."""
    sender = SmtpEmailSender("smtp://127.0.0.1:25")
    upcoming = [smtp._BOUNDARY_PREFIX + b"%016x" % (n + next(copy.copy(smtp._boundaries))) for n in range(3)]
    text = "\n".join(b.decode() for b in upcoming) + "\n"
    envelope = sender.compose(outgoing(text=text, html="<p>" + upcoming[0].decode() + "</p>\n"))
    assert envelope.data is not None
    boundary = parsed(envelope.data).get_boundary()
    assert boundary is not None and boundary.encode() not in upcoming
    assert _lf(parsed(envelope.data).get_body(("plain",)).get_content()) == text  # type: ignore[union-attr]


def test_the_date_header_is_formatdate_of_its_second() -> None:
    """`DateHeader` (made once per second) against `formatdate` at many generated times, fractions of a
    second included, in order and out of it."""
    rng = random.Random(7)
    header = smtp.DateHeader()
    times = sorted(rng.uniform(0, 4_102_444_800) for _ in range(500))
    times += [t + rng.random() for t in times[:200]] + [rng.uniform(0, 4_102_444_800) for _ in range(300)]
    for t in times:
        assert header.at(int(t)) == b"Date: " + formatdate(t, localtime=False).encode() + b"\r\n"
    now = time.time()
    assert header().startswith(b"Date: ") and header() in {
        b"Date: " + formatdate(x, localtime=False).encode() + b"\r\n" for x in (now, now + 1, now + 2)
    }


def test_addresses_out_of_the_ordinary_go_through_the_email_package() -> None:
    sender = SmtpEmailSender("smtp://127.0.0.1:25")
    envelope = sender.compose(outgoing(to="jö@exämple.com"))
    assert envelope.data is None and envelope.message is not None
    assert envelope.message["To"] == "jö@exämple.com"
    with pytest.raises(ValueError):
        sender.compose(outgoing(subject="two\nlines"))


@pytest.fixture
def sink() -> object:
    s = SmtpSink().start()
    yield s
    s.stop()


def test_connections_are_reused_within_a_loop_and_closed_on_release(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, pool_size=2)

    async def scenario() -> list[str]:
        ids = await asyncio.gather(
            *(sender.send_email(outgoing(message_id=f"m{i}", to=f"u{i}@example.com")) for i in range(10))
        )
        await sender.release()
        return list(ids)

    ids = asyncio.run(scenario())
    assert ids == [f"<m{i}@acme.example>" for i in range(10)]
    received = sink.wait_for(10)
    assert sorted(m.rcpt_tos[0] for m in received) == sorted(f"u{i}@example.com" for i in range(10))
    assert {parsed(m.raw)["Message-ID"] for m in received} == set(ids)
    assert all(m.mail_from == "no-reply@acme.example" for m in received)
    assert sender.connections_opened == 2  # ten messages, two connections


def test_a_connection_the_server_dropped_is_replaced_within_the_same_try(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, pool_size=1)

    async def scenario() -> None:
        await sender.send_email(outgoing(message_id="a", to="a@example.com"))
        # The server goes away and comes back: the idle connection is dead, the next send still works.
        sink.stop()
        sink.start()
        await sender.send_email(outgoing(message_id="b", to="b@example.com"))
        await sender.release()

    asyncio.run(scenario())
    assert [m.rcpt_tos for m in sink.wait_for(2)] == [["a@example.com"], ["b@example.com"]]
    assert sender.connections_opened == 2


def test_refusals_and_outages_keep_their_meaning_with_pooled_connections(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, pool_size=1)

    async def scenario() -> None:
        await sender.send_email(outgoing(message_id="ok1"))
        sink.reject_rcpt = True
        with pytest.raises(PermanentSendError, match="550"):
            await sender.send_email(outgoing(message_id="refused"))
        sink.reject_rcpt = False
        sink.defer_data = True
        with pytest.raises(TemporarySendError, match="451"):
            await sender.send_email(outgoing(message_id="deferred"))
        sink.defer_data = False
        await sender.send_email(outgoing(message_id="ok2"))
        sink.stop()
        with pytest.raises(TemporarySendError, match="unavailable"):
            await sender.send_email(outgoing(message_id="down"))
        await sender.release()

    asyncio.run(scenario())
    assert [parsed(m.raw)["Message-ID"] for m in sink.received] == [
        "<ok1@acme.example>",
        "<ok2@acme.example>",
    ]


def test_the_pool_size_comes_from_the_url() -> None:
    assert SmtpEmailSender("smtp://relay.example:587").pool_size == 32
    assert SmtpEmailSender("smtp://u:p@relay.example:587?pool=4").pool_size == 4
    for bad in ("0", "65", "many"):
        with pytest.raises(ValueError, match="pool"):
            SmtpEmailSender(f"smtps://relay.example?pool={bad}")


# -- the mail transaction on a taken-over connection ------------------------------------------------


@pytest.fixture(params=[False, True], ids=["one-at-a-time", "pipelined"])
def any_sink(request: pytest.FixtureRequest) -> object:
    s = SmtpSink(pipelining=request.param).start()
    yield s
    s.stop()


def test_periods_at_line_starts_arrive_as_written(any_sink: SmtpSink) -> None:
    sender = SmtpEmailSender(any_sink.url, pool_size=1)
    text = ".\n..two\n.three\nend.\n.\n"
    html = "<p>x</p>\n.\n"

    async def scenario() -> None:
        await sender.send_email(outgoing(text=text, html=html))
        await sender.send_email(outgoing(message_id="m2", text="plain\n"))
        await sender.release()

    asyncio.run(scenario())
    first, second = any_sink.wait_for(2)
    assert first.part("text/plain").replace("\r\n", "\n") == text
    assert first.part("text/html").replace("\r\n", "\n") == html
    assert second.part("text/plain").replace("\r\n", "\n") == "plain\n"
    assert sender.connections_opened == 1
    assert any("PIPELINING" in line for line in any_sink.ehlo_seen[0]) is any_sink.pipelining


def test_a_refusal_on_a_pipelined_transaction_retires_the_connection(any_sink: SmtpSink) -> None:
    sender = SmtpEmailSender(any_sink.url, pool_size=1)

    async def scenario() -> None:
        any_sink.reject_rcpt = True
        with pytest.raises(PermanentSendError, match="550"):
            await sender.send_email(outgoing(message_id="refused"))
        any_sink.reject_rcpt = False
        await sender.send_email(outgoing(message_id="after"))
        await sender.release()

    asyncio.run(scenario())
    assert [parsed(m.raw)["Message-ID"] for m in any_sink.wait_for(1)] == ["<after@acme.example>"]
    assert sender.connections_opened == 2  # the refused transaction's connection was not reused


class RawServer:
    """An SMTP peer written out by hand, to pin what aiosmtpd cannot show: when the commands arrive, and
    a server that hangs up after taking the message or speaks while the connection is idle."""

    def __init__(
        self, *, answer_mail_after_data: bool = False, hang_up_after_message: bool = False, auth: bool = False
    ) -> None:
        self.answer_mail_after_data = answer_mail_after_data
        self.hang_up_after_message = hang_up_after_message
        self.auth = auth  # announce AUTH PLAIN LOGIN (and no STARTTLS), and take any login
        self.lines: list[bytes] = []  # every command line received, as sent
        self.messages: list[bytes] = []
        self.connections = 0
        self.idle_notice = False  # say 421 on each open connection after its first mail
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 raw ESMTP\r\n")
        try:
            while line := await reader.readline():
                self.lines.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    auth = b"250-AUTH PLAIN LOGIN\r\n" if self.auth else b""
                    writer.write(b"250-raw\r\n" + auth + b"250-PIPELINING\r\n250 SIZE 1000000\r\n")
                elif verb == b"AUTH":
                    writer.write(b"235 2.7.0 Authentication successful\r\n")
                elif verb == b"MAIL":
                    if self.answer_mail_after_data:
                        # Only a client that pipelines gets here: RCPT and DATA must come unanswered.
                        rcpt, data = await reader.readline(), await reader.readline()
                        assert rcpt.startswith(b"RCPT TO:") and data == b"DATA\r\n", (rcpt, data)
                        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
                    else:
                        writer.write(b"250 ok\r\n")
                elif verb == b"RCPT":
                    writer.write(b"250 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                else:
                    writer.write(b"221 bye\r\n" if verb == b"QUIT" else b"500 what\r\n")
                    if verb == b"QUIT":
                        break
                    continue
                if verb in (b"MAIL", b"DATA") and (self.answer_mail_after_data or verb == b"DATA"):
                    self.messages.append(await reader.readuntil(b"\r\n.\r\n"))
                    if self.hang_up_after_message:
                        break
                    writer.write(b"250 queued\r\n")
                    if self.idle_notice:
                        writer.write(b"421 closing idle connection\r\n")
                await writer.drain()
        finally:
            writer.close()


def test_with_pipelining_the_envelope_goes_out_before_any_reply() -> None:
    raw = RawServer(answer_mail_after_data=True)

    async def scenario() -> None:
        server = await raw.start()
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{raw.port}", pool_size=1, timeout=2.0)
        await sender.send_email(outgoing(message_id="p1"))
        await sender.send_email(outgoing(message_id="p2"))
        await sender.release()
        server.close()

    asyncio.run(scenario())
    assert [parsed(m[:-3])["Message-ID"] for m in raw.messages] == ["<p1@acme.example>", "<p2@acme.example>"]
    assert raw.connections == 1


def test_a_hang_up_after_the_message_is_not_resent_in_the_same_try() -> None:
    raw = RawServer(hang_up_after_message=True)

    async def scenario() -> None:
        server = await raw.start()
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{raw.port}", pool_size=1, timeout=2.0)
        with pytest.raises(TemporarySendError, match="unavailable"):
            await sender.send_email(outgoing(message_id="maybe"))
        server.close()

    asyncio.run(scenario())
    # The server may have kept it: a second copy now would be a duplicate. The outbox retries later.
    assert len(raw.messages) == 1


def test_a_server_that_spoke_while_idle_gets_a_new_connection() -> None:
    raw = RawServer()
    raw.idle_notice = True

    async def scenario() -> None:
        server = await raw.start()
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{raw.port}", pool_size=1, timeout=2.0)
        await sender.send_email(outgoing(message_id="i1"))
        await asyncio.sleep(0.05)
        await sender.send_email(outgoing(message_id="i2"))
        await sender.release()
        server.close()

    asyncio.run(scenario())
    assert len(raw.messages) == 2 and raw.connections == 2


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_connections_authenticate_and_are_reused(tls: str, loop: str) -> None:
    import uvloop

    sink = SmtpSink(credentials=("mailer", "s3cret"), pipelining=True, tls=tls).start()  # type: ignore[arg-type]
    try:
        sender = SmtpEmailSender(sink.url, pool_size=1, tls_context=sink.client_context())

        async def scenario() -> None:
            for i in range(3):
                await sender.send_email(outgoing(message_id=f"t{i}", to=f"t{i}@example.com"))
            await sender.release()

        if loop == "uvloop":
            uvloop.run(scenario())
        else:
            asyncio.run(scenario())
        received = sink.wait_for(3)
        assert [m.rcpt_tos for m in received] == [[f"t{i}@example.com"] for i in range(3)]
        assert sink.auth_seen == ["mailer"] and sender.connections_opened == 1
    finally:
        sink.stop()


def test_a_certificate_the_sender_does_not_trust_is_a_temporary_failure() -> None:
    sink = SmtpSink(tls="starttls").start()
    try:
        sender = SmtpEmailSender(sink.url, pool_size=1)  # the system's trust store: not this certificate
        with pytest.raises(TemporarySendError, match="unavailable"):
            asyncio.run(sender.send_email(outgoing()))
        assert sink.received == []
    finally:
        sink.stop()


def test_what_the_server_said_is_kept_without_the_address_it_quoted(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, pool_size=1)
    sink.defer_data = True
    sink.defer_text = "451 4.7.1 <jo.smith+mfa@example.com>: greylisted (jo.smith+mfa@example.com), later"
    with pytest.raises(TemporarySendError) as caught:
        asyncio.run(sender.send_email(outgoing()))
    assert str(caught.value) == "SMTP 451: 4.7.1 <address>: greylisted (<address>), later"


def test_credentials_never_go_to_a_server_without_starttls() -> None:
    # The review's payload: a relay that offers no STARTTLS (or whose offer an attacker removed) used to
    # get AUTH PLAIN with the password in base64, in clear.
    raw = RawServer(auth=True)

    async def scenario() -> None:
        server = await raw.start()
        sender = SmtpEmailSender(f"smtp://mailer:s3cret@127.0.0.1:{raw.port}", pool_size=1, timeout=2.0)
        with pytest.raises(ProviderAuthorizationError, match="offers no STARTTLS") as caught:
            await sender.send_email(outgoing(message_id="clear"))
        assert "s3cret" not in str(caught.value)
        # The address path too (SMTPUTF8, aiosmtplib's own send_message).
        with pytest.raises(ProviderAuthorizationError, match="offers no STARTTLS"):
            await sender.send_email(outgoing(message_id="utf8", to="jösé@example.com"))
        server.close()

    asyncio.run(scenario())
    assert raw.lines and not [line for line in raw.lines if line[:4].upper() in (b"AUTH", b"MAIL")]
    assert not raw.messages


def test_an_aiosmtpd_relay_without_starttls_gets_no_login_and_no_mail() -> None:
    sink = SmtpSink(credentials=("mailer", "s3cret")).start()  # takes AUTH in clear if offered it
    try:
        sender = SmtpEmailSender(sink.url, pool_size=1)
        with pytest.raises(ProviderAuthorizationError, match="127.0.0.1:.* offers no STARTTLS"):
            asyncio.run(sender.send_email(outgoing()))
        assert sink.auth_seen == [] and sink.received == []
    finally:
        sink.stop()


def test_without_credentials_a_local_relay_is_written_to_in_clear(sink: SmtpSink) -> None:
    for host in ("127.0.0.1", "[::1]"):
        if host == "[::1]" and not _ipv6_loopback():
            continue
        local = SmtpSink(host=host.strip("[]")).start() if host != "127.0.0.1" else sink
        try:
            sender = SmtpEmailSender(f"smtp://{host}:{local.port}", pool_size=1)
            asyncio.run(sender.send_email(outgoing(message_id=f"clear-{len(host)}")))
            assert len(local.wait_for(1)) == 1
        finally:
            if local is not sink:
                local.stop()


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_the_envelope_sender_is_the_bounce_address_on_both_paths(sink: SmtpSink) -> None:
    bounce = "bounces+0193a1b20000700080000000000000014f2a9c0e7d1b3a5c6e8f@bounces.acme.example"
    sender = SmtpEmailSender(sink.url)

    async def scenario() -> None:
        await sender.send_email(outgoing(message_id="m1", envelope_from=bounce))
        # A display name in To takes the email package's path; the envelope sender is the same.
        await sender.send_email(outgoing(message_id="m2", to="Jo <jo@example.com>", envelope_from=bounce))
        await sender.send_email(outgoing(message_id="m3"))
        await sender.release()

    asyncio.run(scenario())
    received = sink.wait_for(3)
    assert [m.mail_from for m in received] == [bounce, bounce, "no-reply@acme.example"]
    # The From header never changes.
    assert {parsed(m.raw)["From"] for m in received} == {"Acme <no-reply@acme.example>"}
    # An envelope sender that could inject a command is not used.
    assert sender.compose(outgoing(envelope_from="a@b> SIZE=1")).sender == "no-reply@acme.example"


# -- messages chained on a connection (PIPELINING across mail transactions) ------------------------------


class ChainServer:
    """A pipelining SMTP peer that notes whether each message's MAIL came before the previous message's
    final reply was given (`chained`), and can refuse a message's content, hang up after one, or refuse
    (421) any MAIL past the `per_connection`-th on a connection."""

    def __init__(
        self,
        *,
        refuse_data: tuple[int, ...] = (),
        hang_up_after: tuple[int, ...] = (),
        per_connection: int | None = None,
        wait_for_next: bool = False,
    ) -> None:
        self.refuse_data = refuse_data
        self.hang_up_after = hang_up_after
        self.per_connection = per_connection
        self.wait_for_next = wait_for_next
        self.messages: list[bytes] = []  # every message whose content arrived, refused ones included
        self.accepted: list[str] = []  # the Message-IDs answered 250
        self.connections = 0
        self.chained = 0
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 chain ESMTP\r\n")
        taken = 0
        pending: bytes | None = None
        try:
            while True:
                line = pending if pending is not None else await reader.readline()
                pending = None
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-chain\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
                elif verb == b"MAIL":
                    if self.per_connection is not None and taken >= self.per_connection:
                        writer.write(b"421 4.7.0 too many messages on this connection\r\n")
                        await writer.drain()
                        break
                    writer.write(b"250 ok\r\n")
                elif verb == b"RCPT":
                    writer.write(b"250 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    index = len(self.messages)
                    self.messages.append(data)
                    taken += 1
                    if index in self.hang_up_after:
                        break
                    if self.wait_for_next:
                        try:  # the next message's MAIL, sent before this reply: the transactions are chained
                            pending = await asyncio.wait_for(reader.readline(), 0.5)
                            self.chained += bool(pending)
                        except TimeoutError:
                            pass
                    if index in self.refuse_data:
                        writer.write(b"554 5.6.0 refused\r\n")
                    else:
                        self.accepted.append(str(parsed(data[:-3])["Message-ID"]))
                        writer.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"500 what\r\n")
                await writer.drain()
        finally:
            writer.close()


def _send_together(server: ChainServer, count: int, pool_size: int = 1) -> list[object]:
    """`count` messages sent at once on `pool_size` connections; each one's id, or what it raised."""

    async def scenario() -> list[object]:
        listening = await server.start()
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{server.port}", pool_size=pool_size, timeout=3.0)
        sends = [
            sender.send_email(outgoing(message_id=f"c{i}", to=f"c{i}@example.com")) for i in range(count)
        ]
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        await sender.release()
        listening.close()
        return list(outcomes)

    return asyncio.run(scenario())


def test_messages_waiting_for_a_connection_go_with_the_previous_message() -> None:
    server = ChainServer(wait_for_next=True)
    outcomes = _send_together(server, 6)
    assert outcomes == [f"<c{i}@acme.example>" for i in range(6)]
    assert server.accepted == outcomes and server.connections == 1
    # Each message after the first was begun before the previous one's final reply.
    assert server.chained == 5


def test_a_refused_message_retires_the_connection_and_the_one_chained_to_it_goes_on_another() -> None:
    server = ChainServer(refuse_data=(1,))
    outcomes = _send_together(server, 4)
    assert outcomes[0] == "<c0@acme.example>" and outcomes[2:] == ["<c2@acme.example>", "<c3@acme.example>"]
    assert isinstance(outcomes[1], PermanentSendError) and "554" in str(outcomes[1])
    assert server.accepted == ["<c0@acme.example>", "<c2@acme.example>", "<c3@acme.example>"]
    assert server.connections == 2  # none of c2 went out on the first: sent once, on the second


def test_a_hang_up_after_a_message_leaves_it_unresent_and_sends_the_next_on_a_new_connection() -> None:
    server = ChainServer(hang_up_after=(1,))
    outcomes = _send_together(server, 4)
    assert outcomes[0] == "<c0@acme.example>" and outcomes[2:] == ["<c2@acme.example>", "<c3@acme.example>"]
    # The server may have kept c1: its fate is unknown, and it is not sent again in this try.
    assert isinstance(outcomes[1], TemporarySendError)
    assert [parsed(m[:-3])["Message-ID"] for m in server.messages].count("<c1@acme.example>") == 1
    assert server.connections == 2


def test_a_server_that_takes_no_more_on_a_connection_gets_the_rest_on_new_ones() -> None:
    server = ChainServer(per_connection=2)
    outcomes = _send_together(server, 5)
    assert outcomes == [f"<c{i}@acme.example>" for i in range(5)]
    assert server.accepted == outcomes and server.connections == 3


def test_a_message_whose_sender_gave_up_before_it_went_out_is_not_sent() -> None:
    server = ChainServer()

    async def scenario() -> None:
        listening = await server.start()
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{server.port}", pool_size=1, timeout=3.0)
        first = asyncio.ensure_future(sender.send_email(outgoing(message_id="kept", to="k@example.com")))
        gone = asyncio.ensure_future(sender.send_email(outgoing(message_id="gone", to="g@example.com")))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        assert await first == "<kept@acme.example>"
        with pytest.raises(asyncio.CancelledError):
            await gone
        await sender.send_email(outgoing(message_id="after", to="a@example.com"))
        await sender.release()
        listening.close()

    asyncio.run(scenario())
    assert server.accepted == ["<kept@acme.example>", "<after@acme.example>"]


# -- 8bit parts for a server that announced 8BITMIME (RFC 6152) -------------------------------------------


def test_parts_go_8bit_once_the_server_has_announced_8bitmime(sink: SmtpSink) -> None:
    sender = SmtpEmailSender(sink.url, pool_size=1)
    text, html = "Grüße — “Jo”\n", "<p>Grüße — “Jo”</p>\n"

    async def scenario() -> None:
        for i in range(2):
            await sender.send_email(
                outgoing(message_id=f"e{i}", to=f"e{i}@example.com", text=text, html=html)
            )
        await sender.release()

    asyncio.run(scenario())
    first, second = sink.wait_for(2)
    # The first was composed before any connection had said what the server takes.
    assert b"Content-Transfer-Encoding: 8bit" not in first.raw and first.raw.isascii()
    assert second.raw.count(b"Content-Transfer-Encoding: 8bit") == 2 and "Grüße".encode() in second.raw
    for mail in (first, second):
        assert mail.part("text/plain").replace("\r\n", "\n") == text
        assert mail.part("text/html").replace("\r\n", "\n") == html


def test_a_part_with_a_nul_or_a_line_too_long_for_smtp_is_never_8bit() -> None:
    sender = SmtpEmailSender("smtp://127.0.0.1:25")
    for text in ("é\x00\n", "é" + "x" * 998 + "\n"):
        envelope = sender.compose(outgoing(text=text, html="<p>é</p>"), eight_bit=True)
        assert envelope.data is not None
        plain = parsed(envelope.data).get_body(("plain",))
        assert plain is not None and plain["Content-Transfer-Encoding"] == "quoted-printable"
        assert _lf(plain.get_content()) == text


def test_a_server_without_8bitmime_gets_the_message_composed_again_without_8bit_parts() -> None:
    raw = RawServer()  # announces PIPELINING and SIZE only

    async def scenario() -> None:
        server = await raw.start()
        sender = SmtpEmailSender(f"smtp://127.0.0.1:{raw.port}", pool_size=1, timeout=2.0)
        sender.eight_bit_seen = True  # as if another server behind the same name had announced it
        await sender.send_email(outgoing(message_id="n1", text="Grüße\n", html="<p>Grüße</p>"))
        await sender.release()
        server.close()

    asyncio.run(scenario())
    [message] = raw.messages
    assert message.isascii() and b"8bit" not in message
    assert not [line for line in raw.lines if b"BODY=8BITMIME" in line]
    assert _lf(parsed(message[:-3]).get_body(("plain",)).get_content()) == "Grüße\n"  # type: ignore[union-attr]
