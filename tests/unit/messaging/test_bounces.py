"""The bounce address (VERP token) and the bounce parser, on real-world bounces.

The samples in dsn/ are the examples of RFC 3464 (appendix: simple, multi-recipient, delayed) and bounces
as Postfix and Exim write them, each addressed to a bounce address (`{verp}`, filled in per test).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate.ids import new_uuid
from passgate.keyring import KeyRing
from passgate.messaging.bounces import MAX_BOUNCE_BYTES, BounceAddresses, parse_bounce

SAMPLES = Path(__file__).parent / "dsn"
KEYS = KeyRing([b"bounce-test-key-0123456789abcdefghijklmnopqrstuvwxyz"])
ADDRESSES = BounceAddresses(KEYS, "bounces.acme.example")


def sample(name: str, verp: str, crlf: bool = True) -> bytes:
    text = (SAMPLES / name).read_text().replace("{verp}", verp)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def new_verp() -> tuple[str, str]:
    message_id = new_uuid()
    address = ADDRESSES.for_message(message_id, "Acme <no-reply@acme.example>")
    assert address is not None
    return message_id, address


# -- the address -------------------------------------------------------------------------------------


def test_a_bounce_address_names_its_message_and_only_we_can_make_one() -> None:
    message_id, address = new_verp()
    local, _, domain = address.partition("@")
    assert domain == "bounces.acme.example"
    assert local.startswith("bounces+") and len(local) <= 64  # RFC 5321 4.5.3.1.1
    assert ADDRESSES.message_of(address) == message_id
    # Relays may change the case of a local part, and add angle brackets.
    assert ADDRESSES.message_of(f"<{address.upper()}>") == message_id
    # Another message's id with this message's tag, or any changed character: not ours.
    token = local.partition("+")[2]
    for i in range(len(token)):
        for other in "ab7":
            if other != token[i]:
                changed = token[:i] + other + token[i + 1 :]
                assert ADDRESSES.message_of(f"bounces+{changed}@{domain}") is None, (i, other)
    # Made with another secret: not ours.
    other = BounceAddresses(KeyRing([b"another-key-0123456789abcdefghijklmnopqrstuvwxyz"]), domain)
    assert other.message_of(address) is None
    assert other.looks_like_ours(address)
    for junk in (
        "",
        "bounces@x",
        "bounces+@x",
        "bounces+abc@x",
        "no-reply@acme.example",
        f"other+{token}@x",
        f"bounces+{token}0@x",
        f"bounces+{token[:-1]}g@x",
    ):
        assert ADDRESSES.message_of(junk) is None


def test_after_a_key_rotation_the_older_key_still_reads_its_addresses() -> None:
    message_id, address = new_verp()
    rotated = BounceAddresses(
        KeyRing(
            [
                b"the-new-key-0123456789abcdefghijklmnopqrstuvwxyz",
                *[b"bounce-test-key-0123456789abcdefghijklmnopqrstuvwxyz"],
            ]
        ),
        "b.example",
    )
    assert rotated.message_of(address) == message_id
    newer = rotated.for_message(message_id, "x@acme.example")
    assert newer is not None and newer != address.replace("bounces.acme.example", "b.example")
    assert ADDRESSES.message_of(newer) is None  # made with a key the old ring does not have


def test_per_sending_domain_and_fallbacks() -> None:
    per_domain = BounceAddresses(KEYS, "bounce.{domain}", local_part="rt")
    message_id = new_uuid()
    address = per_domain.for_message(message_id, '"Acme, Inc." <login@Mail.Acme.Example>')
    assert address is not None and address.endswith("@bounce.mail.acme.example")
    assert address.startswith("rt+")
    assert per_domain.message_of(address) == message_id
    assert ADDRESSES.message_of(address) is None  # another local part
    # No domain to put it on, or an id that is not one of ours: the From address stays the sender.
    assert per_domain.for_message(message_id, "Acme") is None
    assert ADDRESSES.for_message("not-a-uuid", "a@b.example") is None


# -- the bounce --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "status", "action"),
    [
        # Action failed wins over a 4.x.x status: the MTA gave up.
        ("rfc3464_simple.eml", "hard", "4.0.0", "failed"),
        ("rfc3464_multi_recipient.eml", "hard", "5.0.0", "failed"),
        ("rfc3464_delayed.eml", "soft", "4.0.0", "delayed"),
        ("postfix_user_unknown.eml", "hard", "5.1.1", "failed"),
        ("postfix_mailbox_full_delayed.eml", "soft", "4.2.2", "delayed"),
        ("exim_dsn_failed.eml", "hard", "5.0.0", "failed"),
    ],
)
def test_delivery_status_notifications(name: str, kind: str, status: str, action: str) -> None:
    message_id, verp = new_verp()
    bounce = parse_bounce(sample(name, verp))
    assert (bounce.kind, bounce.status, bounce.action, bounce.dsn) == (kind, status, action, True)
    assert ADDRESSES.message_of(bounce.addresses[0]) == message_id
    # LF line ends (a relay that stored it unix-style) read the same.
    assert parse_bounce(sample(name, verp, crlf=False)).kind == kind


def test_the_diagnostic_is_kept_without_the_address() -> None:
    _, verp = new_verp()
    bounce = parse_bounce(sample("postfix_user_unknown.eml", verp))
    assert bounce.diagnostic is not None and "User unknown in local recipient table" in bounce.diagnostic
    assert "jo@example.org" not in bounce.diagnostic
    multi = parse_bounce(sample("rfc3464_multi_recipient.eml", verp))
    assert multi.diagnostic is not None and "registered gateway user" in multi.diagnostic
    assert "vnet" not in multi.diagnostic
    assert bounce.detail() == {
        "bounce": "hard",
        "dsn": True,
        "action": "failed",
        "status": "5.1.1",
        "diagnostic": bounce.diagnostic,
    }


@pytest.mark.parametrize(
    ("name", "kind", "status"),
    [("exim_classic_failed.eml", "hard", "5.1.1"), ("exim_classic_delayed.eml", "soft", "4.7.1")],
)
def test_plain_text_bounces_of_older_mtas(name: str, kind: str, status: str) -> None:
    message_id, verp = new_verp()
    bounce = parse_bounce(sample(name, verp))
    assert (bounce.kind, bounce.status, bounce.dsn) == (kind, status, False)
    assert ADDRESSES.message_of(bounce.addresses[0]) == message_id


def test_success_notices_and_auto_replies_are_not_bounces() -> None:
    _, verp = new_verp()
    assert parse_bounce(sample("delivered.eml", verp)).kind is None
    assert parse_bounce(sample("out_of_office.eml", verp)).kind is None
    chat = f"From: jo@example.org\r\nTo: {verp}\r\nSubject: Re: hello\r\n\r\nThanks!\r\n".encode()
    assert parse_bounce(chat).kind is None


def test_a_bounce_with_only_the_bounce_address() -> None:
    # No DSN part, no copy of the original, nothing in its headers: the envelope recipient says which.
    message_id, verp = new_verp()
    raw = (
        b"From: MAILER-DAEMON@relay.example\r\nSubject: failure notice\r\n\r\nSorry, it did not work out.\r\n"
    )
    bounce = parse_bounce(raw, [verp])
    assert (bounce.kind, bounce.addresses) == ("hard", (verp,))
    assert ADDRESSES.message_of(bounce.addresses[0]) == message_id


def test_the_envelope_comes_first_and_the_returned_original_last() -> None:
    _, verp = new_verp()
    _, other = new_verp()
    bounce = parse_bounce(sample("postfix_user_unknown.eml", verp), [other])
    assert bounce.addresses[0] == other
    assert verp in bounce.addresses
    # Only the returned headers' Return-Path names it: still found.
    raw = sample("postfix_user_unknown.eml", verp).replace(
        f"To: {verp}".encode(), b"To: postmaster@acme.example"
    )
    raw = raw.replace(f"Delivered-To: {verp}".encode(), b"X-Other: 1")
    assert parse_bounce(raw).addresses[-1] == verp


def test_the_same_bounce_has_the_same_key() -> None:
    _, verp = new_verp()
    a = parse_bounce(sample("postfix_user_unknown.eml", verp))
    b = parse_bounce(sample("postfix_user_unknown.eml", verp, crlf=False))
    c = parse_bounce(sample("postfix_mailbox_full_delayed.eml", verp))
    assert a.key == b.key != c.key
    no_id = b"From: MAILER-DAEMON@x\r\n\r\n550 5.1.1\r\n"
    assert parse_bounce(no_id).key != parse_bounce(no_id + b"x").key


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff" * 1000,
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n\r\n--x\r\n',
        b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b'Content-Type: multipart/report; boundary="x"\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n'
        b"Action: failed\r\nStatus: 5.1.1\r\n--x--",
        b"To: " + b"a" * 100_000 + b"\r\n\r\n",
        b"Subject: =?utf-8?q?=FF=FE?=\r\nFrom: <<<@@@>>>\r\n\r\n",
        os.urandom(MAX_BOUNCE_BYTES + 10),
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    bounce = parse_bounce(raw)
    assert bounce.kind in (None, "hard", "soft")
    assert all(ADDRESSES.message_of(a) is None for a in bounce.addresses)


def test_a_base64_delivery_status_part_is_read() -> None:
    import base64

    _, verp = new_verp()
    report = base64.encodebytes(
        b"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; j@x\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
    )
    raw = (
        (
            f"From: MAILER-DAEMON@x\r\nTo: {verp}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + report
        + b"--b--\r\n"
    )
    bounce = parse_bounce(raw)
    assert (bounce.kind, bounce.status) == ("soft", "4.4.1")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.text(max_size=80), max_size=3))
def test_any_bytes_any_recipients(raw: bytes, recipients: list[str]) -> None:
    bounce = parse_bounce(raw, recipients)
    assert bounce.kind in (None, "hard", "soft")
