"""The SMS senders' two ways out, side by side: `http_wire.HttpPoster` (the default) and httpx (a given
client, or a proxied URL). Every case runs through both against the same real HTTP server on loopback:
the provider must receive the same request (method, path, body, and the headers the contract names) and
the sender must come back with the same result, or raise the same error with the same words."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from passgate.messaging.senders.base import (
    OutgoingSms,
    PermanentSendError,
    ProviderAuthorizationError,
    SendError,
    TemporarySendError,
)
from passgate.messaging.senders.http import FailoverSmsSender, HttpGatewaySmsSender, TwilioSmsSender
from passgate.webhooks.signing import standard_verify
from tests.servers import HttpReceiver, Recorded, free_port, twilio_responder

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SMS = OutgoingSms(
    message_id="0b7c5d8e-1111-4222-8333-944455556666",
    to="+15551234567",
    body="Your Acme code: 123456 – don't share it. Ünïcode & ampersands = ok",
    client_id="c1",
)
# What each way adds of its own (httpx's User-Agent, Accept, Accept-Encoding, Connection) is not compared;
# the signature headers (over each send's own timestamp) are verified instead.
COMPARED = (
    "content-type",
    "content-length",
    "idempotency-key",
    "authorization",
    "host",
    "webhook-id",
)


def _gateway(url: str, way: str, secret: str | None = SECRET) -> HttpGatewaySmsSender:
    client = httpx.AsyncClient(timeout=15.0, follow_redirects=False) if way == "httpx" else None
    sender = HttpGatewaySmsSender(url, "Acme", secret, client=client)
    assert (sender._post.poster is None) == (way == "httpx")
    return sender


def _twilio(url: str, way: str) -> TwilioSmsSender:
    client = httpx.AsyncClient(timeout=15.0, follow_redirects=False) if way == "httpx" else None
    return TwilioSmsSender("AC123", "tok:en", "+15005550006", url, "https://pg.example/cb", client=client)


def _send(sender: Any, message: OutgoingSms = SMS) -> str | SendError:
    async def scenario() -> str | SendError:
        try:
            return str(await sender.send_sms(message))
        except SendError as exc:
            return exc
        finally:
            await sender.release()
            if sender.client is not None:
                await sender.client.aclose()

    return asyncio.run(scenario())


def _both(
    make: Callable[[str, str], Any], responder: Callable[[Recorded], tuple[int, dict[str, str], bytes]]
) -> dict[str, tuple[str | SendError, Recorded | None]]:
    out: dict[str, tuple[str | SendError, Recorded | None]] = {}
    receiver = HttpReceiver(responder=responder).start()
    try:
        for way in ("wire", "httpx"):
            seen = len(receiver.requests)
            result = _send(make(receiver.url + "/sms/send?acct=7", way))
            out[way] = (result, receiver.requests[seen] if len(receiver.requests) > seen else None)
    finally:
        receiver.stop()
    return out


def _same_request(a: Recorded | None, b: Recorded | None) -> Recorded:
    assert a is not None and b is not None
    assert (a.method, a.path, a.body) == (b.method, b.path, b.body)
    assert {k: a.headers.get(k) for k in COMPARED} == {k: b.headers.get(k) for k in COMPARED}
    return a


def _same_outcome(a: str | SendError, b: str | SendError) -> None:
    assert type(a) is type(b)
    assert str(a) == str(b)


def test_a_gateway_send_is_the_same_request_signed_the_same_way() -> None:
    got = _both(_gateway, lambda rec: (200, {"Content-Type": "application/json"}, b'{"ok":true}'))
    _same_outcome(got["wire"][0], got["httpx"][0])
    assert got["wire"][0] == SMS.message_id
    rec = _same_request(got["wire"][1], got["httpx"][1])
    assert rec.method == "POST" and rec.path == "/sms/send?acct=7"
    assert rec.json() == {"to": SMS.to, "from": "Acme", "body": SMS.body, "messageId": SMS.message_id}
    assert rec.headers["content-type"] == "application/json"
    assert rec.headers["idempotency-key"] == SMS.message_id
    assert rec.headers["webhook-id"] == SMS.message_id
    for _, recorded in got.values():
        assert recorded is not None
        assert standard_verify(SECRET, recorded.headers, recorded.body, datetime.now(UTC))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, b"", ProviderAuthorizationError),
        (403, b"forbidden", ProviderAuthorizationError),
        (429, b"slow down", TemporarySendError),
        (500, b"oops", TemporarySendError),
        (503, b"", TemporarySendError),
        (400, b'{"error":"number +15551234567 is not valid"}', PermanentSendError),
        (422, "ungültig: +15551234567".encode(), PermanentSendError),
    ],
)
def test_a_gateway_refusal_is_the_same_error(status: int, body: bytes, error: type[SendError]) -> None:
    got = _both(_gateway, lambda rec: (status, {"Content-Type": "text/plain"}, body))
    _same_outcome(got["wire"][0], got["httpx"][0])
    assert isinstance(got["wire"][0], error)
    assert "+15551234567" not in str(got["wire"][0])
    _same_request(got["wire"][1], got["httpx"][1])


def test_an_unsigned_gateway_send_carries_no_signature() -> None:
    got = _both(lambda url, way: _gateway(url, way, None), lambda rec: (202, {}, b""))
    _same_outcome(got["wire"][0], got["httpx"][0])
    rec = _same_request(got["wire"][1], got["httpx"][1])
    assert "webhook-signature" not in rec.headers


def test_a_twilio_send_is_the_same_form_and_credentials() -> None:
    got = _both(lambda url, way: _twilio(url, way), twilio_responder)
    _same_outcome(got["wire"][0], got["httpx"][0])
    assert str(got["wire"][0]).startswith("SM")
    rec = _same_request(got["wire"][1], got["httpx"][1])
    assert rec.path.endswith("/2010-04-01/Accounts/AC123/Messages.json")
    assert rec.form() == {
        "To": SMS.to,
        "From": "+15005550006",
        "Body": SMS.body,
        "StatusCallback": "https://pg.example/cb",
    }
    assert rec.headers["authorization"] == "Basic QUMxMjM6dG9rOmVu"  # AC123:tok:en


@pytest.mark.parametrize(
    "answer",
    [
        (201, b'{"status":"queued"}'),
        (201, b"not json"),
        (201, b"[]"),
        (400, b'{"code":21211,"message":"no"}'),
    ],
)
def test_a_twilio_answer_without_a_sid_is_the_same_error(answer: tuple[int, bytes]) -> None:
    got = _both(lambda url, way: _twilio(url, way), lambda rec: (answer[0], {}, answer[1]))
    _same_outcome(got["wire"][0], got["httpx"][0])
    assert isinstance(got["wire"][0], SendError)


def test_an_unreachable_gateway_is_a_temporary_failure_both_ways() -> None:
    url = f"http://127.0.0.1:{free_port()}/sms"
    for way in ("wire", "httpx"):
        result = _send(_gateway(url, way))
        assert isinstance(result, TemporarySendError)
        assert str(result).startswith("SMS gateway unreachable")


def test_failover_moves_on_through_both_ways_and_releases_them() -> None:
    down = f"http://127.0.0.1:{free_port()}/sms"
    receiver = HttpReceiver().start()
    try:
        sender = FailoverSmsSender([_gateway(down, "wire"), _gateway(receiver.url + "/sms", "wire")])

        async def scenario() -> str:
            try:
                return await sender.send_sms(SMS)
            finally:
                await sender.release()

        assert asyncio.run(scenario()) == SMS.message_id
    finally:
        receiver.stop()
    assert (
        len(receiver.requests) == 1 and json.loads(receiver.requests[0].body)["messageId"] == SMS.message_id
    )


def test_a_proxied_url_goes_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert HttpGatewaySmsSender("https://sms.example/send", "Acme")._post.poster is None
    assert HttpGatewaySmsSender("https://internal.example/send", "Acme")._post.poster is not None
    assert HttpGatewaySmsSender("http://sms.example/send", "Acme")._post.poster is not None
