"""Real servers on loopback for tests: an SMTP server (aiosmtpd) and a recording HTTP receiver."""

from __future__ import annotations

import asyncio
import email
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A certificate (its own CA) for a host name or an IP address, and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_tls_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cert.pem").write_bytes(cert_pem)
        (Path(tmp) / "key.pem").write_bytes(key_pem)
        ctx.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    return ctx


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    at: float = field(default_factory=time.monotonic)  # when the server accepted it

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.raw)

    def part(self, content_type: str) -> str:
        for p in self.message.walk():
            if p.get_content_type() == content_type:
                payload = p.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return payload.decode(p.get_content_charset() or "utf-8")
        raise AssertionError(f"no {content_type} part")


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.sink.pipelining:  # aiosmtpd reads pipelined commands fine; it just does not say so
            responses.insert(-1, "250-PIPELINING")
        self.sink.ehlo_seen.append(responses)
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.sink.reject_rcpt:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.data_delay:
            await asyncio.sleep(self.sink.data_delay)
        stall = self.sink.stall_data and (
            not self.sink.stall_rcpt or set(envelope.rcpt_tos) & self.sink.stall_rcpt
        )
        if stall:
            # Hold the sender mid-transaction (to kill it there); what arrives while stalled is not kept.
            self.sink.stalled.set()
            await asyncio.sleep(self.sink.stall_data)
            return "451 4.3.0 Stalled"
        if self.sink.defer_data:
            return self.sink.defer_text
        self.sink.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.sink.arrived.set()
        return "250 Message accepted"


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps what it receives; can refuse, defer or go down.

    `pipelining`: EHLO announces PIPELINING (RFC 2920), as the usual relays do. `tls`: "starttls" (required
    before MAIL) or "implicit" (smtps), with a certificate for 127.0.0.1 that `client_context()` trusts."""

    def __init__(
        self,
        port: int | None = None,
        credentials: tuple[str, str] | None = None,
        pipelining: bool = False,
        tls: Literal["starttls", "implicit"] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.pipelining = pipelining
        self.tls = tls
        self.cert_pem, self._key_pem = self_signed("127.0.0.1") if tls else (b"", b"")
        self.ehlo_seen: list[list[str]] = []
        self.received: list[ReceivedMail] = []
        self.arrived = threading.Event()
        self.reject_rcpt = False
        self.defer_data = False
        self.defer_text = "451 4.3.0 Try again later"
        self.stall_data = 0.0
        self.stall_rcpt: set[str] = set()  # stall only the mail to these (all of them when empty)
        self.stalled = threading.Event()
        self.data_delay = 0.0  # seconds each DATA takes before it is accepted
        self.credentials = credentials
        self.auth_seen: list[str] = []
        self.controller: Controller | None = None

    def _authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self.credentials:
            user, pw = data.login.decode(), data.password.decode()
            if (user, pw) == self.credentials:
                self.auth_seen.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpSink:
        kwargs: dict[str, Any] = {}
        if self.credentials:
            kwargs = {
                "authenticator": self._authenticator,
                # aiosmtpd counts only STARTTLS as TLS; on smtps the whole connection is TLS anyway.
                "auth_require_tls": self.tls == "starttls",
                "auth_required": True,
            }
        if self.tls == "starttls":
            kwargs.update(tls_context=server_tls_context(self.cert_pem, self._key_pem), require_starttls=True)
        elif self.tls == "implicit":
            kwargs["ssl_context"] = server_tls_context(self.cert_pem, self._key_pem)
        self.controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        if self.credentials:
            return f"{scheme}://{self.credentials[0]}:{self.credentials[1]}@127.0.0.1:{self.port}"
        return f"{scheme}://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's certificate (and only it)."""
        return ssl.create_default_context(cadata=self.cert_pem.decode())

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode()))


@dataclass
class HttpReceiver:
    """A real HTTP server recording every request. `responder` decides each answer (status, headers, body)."""

    port: int = field(default_factory=free_port)
    requests: list[Recorded] = field(default_factory=list)
    responder: Callable[[Recorded], tuple[int, dict[str, str], bytes]] | None = None
    server: ThreadingHTTPServer | None = None

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                rec = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                receiver.requests.append(rec)
                status, headers, body = (receiver.responder or _ok)(rec)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = _handle
            do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _ok(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, b'{"ok": true}'


def twilio_responder(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
    """Answers like Twilio's Messages API: 201 with a message sid."""
    if rec.path.endswith("/Messages.json"):
        sid = f"SM{len(rec.body):04d}{abs(hash(rec.body)) % 10**12:012d}"
        return (
            201,
            {"Content-Type": "application/json"},
            json.dumps({"sid": sid, "status": "queued"}).encode(),
        )
    return 404, {}, b""


class TcpProxy:
    """A TCP relay on a loopback port of its own to another address (a database): `stop()` closes the
    port and every relayed connection, as a database host going away would; `start()` opens it again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() first: close() alone would not wake the thread blocked in accept(), which would
            # go on taking connections.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
