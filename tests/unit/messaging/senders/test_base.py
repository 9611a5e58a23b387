"""What a provider said about a failed send is kept (outbox row, timeline, logs) without the destination it
quoted: against a real HTTP server acting as Twilio, and on the texts relays and gateways write."""

from __future__ import annotations

import asyncio
import json

import pytest

from passgate.messaging.senders.base import OutgoingSms, PermanentSendError, provider_said
from passgate.messaging.senders.http import TwilioSmsSender
from tests.servers import HttpReceiver, Recorded


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        (
            "5.1.1 <jo.smith+mfa@example.com>: Recipient address rejected",
            "5.1.1 <address>: Recipient address rejected",
        ),
        ("greylisted (jo@example.com), try later", "greylisted (<address>), try later"),
        (
            "The 'To' number +15551234567 is not a valid phone number.",
            "The 'To' number <number> is not a valid phone number.",
        ),
        ("blocked: +44 20 7946 0958", "blocked: <number>"),
        ("4.7.1 Service unavailable, code 21211", "4.7.1 Service unavailable, code 21211"),
    ],
)
def test_destinations_are_taken_out_and_codes_kept(said: str, kept: str) -> None:
    assert provider_said(said) == kept


def test_what_is_kept_is_bounded() -> None:
    assert len(provider_said("x" * 10_000)) == 200


def test_a_twilio_refusal_keeps_its_words_without_the_number() -> None:
    def refuse(_: Recorded) -> tuple[int, dict[str, str], bytes]:
        body = {
            "code": 21211,
            "message": "The 'To' number +15005550001 is not a valid phone number.",
            "status": 400,
        }
        return 400, {"Content-Type": "application/json"}, json.dumps(body).encode()

    receiver = HttpReceiver(responder=refuse).start()
    try:
        sender = TwilioSmsSender("AC1", "token", "+15005550006", receiver.url, None)
        sms = OutgoingSms(message_id="m1", to="+15005550001", body="code 123456", client_id="c1")
        with pytest.raises(PermanentSendError) as caught:
            asyncio.run(sender.send_sms(sms))
    finally:
        receiver.stop()
    assert "21211" in str(caught.value) and "is not a valid phone number" in str(caught.value)
    assert "+15005550001" not in str(caught.value) and "<number>" in str(caught.value)
