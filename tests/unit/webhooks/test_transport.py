"""The delivery transport against real servers on loopback: the target is checked on every try, the
connection goes to the checked address, and Host, SNI and certificate checks keep the endpoint's name."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import pytest

from passgate.webhooks.exceptions import DeliveryError
from passgate.webhooks.transport import HttpxWebhookTransport, PinnedNetworkBackend
from tests.servers import HttpReceiver, self_signed


class TlsServer:
    """An HTTPS server on 127.0.0.1 with a certificate for `name`; records Host headers and SNI names."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.cert_pem, key_pem = self_signed(name)
        (tmp / "cert.pem").write_bytes(self.cert_pem)
        (tmp / "key.pem").write_bytes(key_pem)
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
        ctx.sni_callback = lambda _sock, server_name, _ctx: self.sni.append(server_name)  # type: ignore[assignment]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.hosts.append(self.headers.get("host", ""))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.cert_pem.decode())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsServer]:
    server = TlsServer("hooks.test", tmp_path)
    yield server
    server.stop()


def resolver(table: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError("no such host")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def transport(resolve: Any, allow_private: bool = True, **kw: Any) -> HttpxWebhookTransport:
    return HttpxWebhookTransport(
        allow_private=allow_private, allow_http=allow_private, resolver=resolve, timeout=5, **kw
    )


async def test_https_goes_to_the_checked_address_with_the_names_host_sni_and_certificate(
    tls: TlsServer,
) -> None:
    resolve = resolver({"hooks.test": ["127.0.0.1"]})
    t = transport(resolve, ssl_context=tls.client_context())
    try:
        answer = await t.post(f"https://hooks.test:{tls.port}/in", {"X-Test": "1"}, b"{}")
        await t.post(f"https://hooks.test:{tls.port}/in", {}, b"{}")
    finally:
        await t.aclose()
    assert answer.status_code == 204
    assert tls.hosts == [f"hooks.test:{tls.port}"] * 2
    assert tls.sni[0] == "hooks.test"
    # Resolved by the check once per try, and never again by the HTTP client ("hooks.test" exists nowhere).
    assert resolve.calls == ["hooks.test", "hooks.test"]


async def test_a_certificate_for_another_name_is_refused(tls: TlsServer) -> None:
    t = transport(resolver({"other.test": ["127.0.0.1"]}), ssl_context=tls.client_context())
    try:
        with pytest.raises(DeliveryError, match="(?i)certificate|tls|ssl"):
            await t.post(f"https://other.test:{tls.port}/in", {}, b"{}")
    finally:
        await t.aclose()
    assert tls.hosts == []


async def test_a_name_that_resolves_inside_is_refused_before_connecting() -> None:
    receiver = HttpReceiver().start()
    try:
        # What a rebinding name does: public when registered, loopback now. Checked per try: refused.
        t = transport(resolver({"rebind.test": ["127.0.0.1"]}), allow_private=False)
        with pytest.raises(DeliveryError, match="target refused"):
            await t.post(f"https://rebind.test:{receiver.port}/in", {}, b"{}")
        await t.aclose()
    finally:
        receiver.stop()
    assert receiver.requests == []


async def test_unresolvable_and_forbidden_targets_are_delivery_errors() -> None:
    t = transport(resolver({}))
    with pytest.raises(DeliveryError, match="target not resolved"):
        await t.post("http://nowhere.test/in", {}, b"{}")
    with pytest.raises(DeliveryError, match="target refused"):
        await t.post("ftp://127.0.0.1/in", {}, b"{}")
    await t.aclose()


async def test_plain_http_keeps_the_host_header_of_the_name() -> None:
    receiver = HttpReceiver().start()
    t = transport(resolver({"receiver.test": ["127.0.0.1"]}))
    try:
        answer = await t.post(
            f"http://receiver.test:{receiver.port}/in?x=1", {"webhook-id": "e1"}, b'{"a":1}'
        )
    finally:
        await t.aclose()
        receiver.stop()
    assert answer.status_code == 200 and answer.snippet == '{"ok": true}'
    [rec] = receiver.requests
    assert rec.headers["host"] == f"receiver.test:{receiver.port}"
    assert (rec.path, rec.body, rec.headers["content-type"]) == ("/in?x=1", b'{"a":1}', "application/json")
    assert rec.headers["webhook-id"] == "e1" and rec.headers["user-agent"].startswith("Passgate-Webhooks")


async def test_retry_after_and_status_come_back_redirects_are_not_followed() -> None:
    elsewhere = HttpReceiver().start()
    receiver = HttpReceiver().start()
    receiver.responder = lambda rec: (301, {"Location": f"{elsewhere.url}/x", "Retry-After": "7"}, b"moved")
    t = transport(resolver({}))
    try:
        answer = await t.post(f"{receiver.url}/in", {}, b"{}")
    finally:
        await t.aclose()
        receiver.stop()
        elsewhere.stop()
    assert (answer.status_code, answer.retry_after, answer.snippet) == (301, "7", "moved")
    assert elsewhere.requests == []


async def test_the_backend_never_opens_an_unchecked_connection() -> None:
    backend = PinnedNetworkBackend()
    with pytest.raises(httpcore.ConnectError, match="no checked address"):
        await backend.connect_tcp("hooks.test", 443)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_unix_socket("/tmp/x.sock")
