"""The Verify API's pure parts: its channel names and the start as `mfa.challenge` reads it."""

from __future__ import annotations

import pytest

from passgate.mfa.verify import CHANNELS, VerifyStart, _kount_body, channel_name


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_channel_names_round_trip(name: str) -> None:
    channel, kind = CHANNELS[name]
    assert channel_name(channel, "OTP" if kind == "OTP" else "NONCE_OTH") == name


def test_a_start_reads_as_an_account_opening_request() -> None:
    body = _kount_body(
        VerifyStart(
            to="+12015550123",
            channel="sms-link",
            purpose="password_reset",
            locale="es",
            redirect_url="https://shop.example/reset",
            custom_values={"shop": "Acme"},
        )
    )
    assert body == {
        "person": {"phoneNumber": "+12015550123"},
        "strategy": {
            "verificationTemplateName": "sms-link",
            "verificationTemplateValues": {"shop": "Acme"},
            "verificationTargetUrl": "https://shop.example/reset",
        },
        "preferredLanguageCode": "es",
    }
    plain = _kount_body(VerifyStart(to="jo@example.com", channel="email-code", template_name="mine"))
    assert plain == {
        "person": {"emailAddress": "jo@example.com"},
        "strategy": {"verificationTemplateName": "mine", "verificationTemplateValues": {}},
    }
