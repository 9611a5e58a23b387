from __future__ import annotations

from datetime import UTC, datetime

import pytest

from passgate.policy.lists import Membership, normalise, parse_csv
from passgate.policy.signals import account_age_days, email_facts, ip_facts, phone_facts


def test_email_signals() -> None:
    assert email_facts("Jo@Mailinator.com") == {
        "domain": "mailinator.com",
        "disposable": True,
        "freeProvider": False,
        "valid": True,
    }
    assert email_facts("jo@gmail.com")["freeProvider"] is True
    assert email_facts("jo@acme-corp.example")["disposable"] is False
    assert email_facts(None) == {"domain": None, "disposable": False, "freeProvider": False, "valid": False}


@pytest.mark.parametrize(
    ("number", "country", "line_type", "valid"),
    [
        ("+12015550123", "US", "FIXED_LINE_OR_MOBILE", True),
        ("+447400123456", "GB", "MOBILE", True),
        ("+442079460000", "GB", "FIXED_LINE", True),
        ("+19005550123", "US", "PREMIUM_RATE", True),
        ("+15551234567", None, None, False),
    ],
)
def test_phone_signals(number: str, country: str | None, line_type: str | None, valid: bool) -> None:
    assert phone_facts(number) == {"country": country, "lineType": line_type, "valid": valid}


@pytest.mark.parametrize(
    ("ip", "country", "private", "version"),
    [
        ("8.8.8.8", "US", False, 4),
        ("81.2.69.160", "GB", False, 4),
        ("10.1.2.3", None, True, 4),
        ("127.0.0.1", None, True, 4),
        ("2a00:1450:4001:800::200e", "DE", False, 6),
        ("fd00::1", None, True, 6),
    ],
)
def test_ip_signals(ip: str, country: str | None, private: bool, version: int) -> None:
    assert ip_facts(ip) == {"country": country, "private": private, "version": version}


def test_account_age() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    assert account_age_days("2026-11-19T00:00:00Z", now) == 10.0
    assert account_age_days("2026-11-28T12:00:00", now) == 0.5
    assert account_age_days(None, now) is None
    assert account_age_days("yesterday", now) is None


@pytest.mark.parametrize(
    ("kind", "raw", "normal"),
    [
        ("email", " Jo@Example.COM ", "jo@example.com"),
        ("emailDomain", "@Mailinator.COM.", "mailinator.com"),
        ("phone", "+1 201 555 0123", "+12015550123"),
        ("ip", "10.0.0.0/8", "10.0.0.0/8"),
        ("ip", "10.1.2.3/8", "10.0.0.0/8"),
        ("ip", "203.0.113.7", "203.0.113.7"),
        ("ip", "2001:db8::/32", "2001:db8::/32"),
        ("deviceId", "dev-1", "dev-1"),
        ("country", " gb ", "GB"),
    ],
)
def test_normalise(kind: str, raw: str, normal: str) -> None:
    assert normalise(kind, raw) == normal


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("email", "nope"),
        ("ip", "10.0.0.300"),
        ("phone", "abc"),
        ("emailDomain", "no spaces.com x"),
        ("ip", ""),
        ("email", 5),
        ("country", "GBR"),
        ("country", "G1"),
    ],
)
def test_normalise_refuses(kind: str, raw: object) -> None:
    with pytest.raises(ValueError):
        normalise(kind, raw)


def test_membership_exact_and_cidr() -> None:
    m = Membership.build("ip", ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "192.168.1.0/24"])
    assert m.contains("203.0.113.7")
    assert m.contains("10.200.3.4")
    assert m.contains("192.168.1.77")
    assert not m.contains("192.168.2.1")
    assert m.contains("2001:db8:1::5")
    assert not m.contains("2001:db9::1")
    assert not m.contains(None) and not m.contains("garbage")
    # A range read from a custom field: in the list when a listed range holds all of it.
    assert m.contains("10.1.2.0/24") and m.contains("10.0.0.0/8") and m.contains("192.168.1.128/25")
    assert not m.contains("10.0.0.0/7") and not m.contains("192.168.0.0/16")
    assert not m.contains("203.0.113.0/24")  # holds the one listed address, but is not held by it
    assert not Membership.build("ip", ["203.0.113.7"]).contains("203.0.113.0/30")
    e = Membership.build("email", ["jo@example.com"])
    assert e.contains("JO@example.com") and not e.contains("ann@example.com")


def test_membership_cost_does_not_grow_with_the_list() -> None:
    import time

    small = Membership.build("ip", [f"10.{i}.0.0/16" for i in range(10)] + ["1.2.3.4"])
    big = Membership.build("ip", [f"10.{i // 256}.{i % 256}.0/24" for i in range(60_000)] + ["1.2.3.4"])

    def cost(m: Membership) -> float:
        start = time.perf_counter()
        for _ in range(2000):
            m.contains("172.16.0.1")
        return time.perf_counter() - start

    assert cost(big) < cost(small) * 5 + 0.05


def test_parse_csv_skips_header_and_blank_lines() -> None:
    assert parse_csv('value\na@example.com\n\n"b@example.com",note\n') == [
        (2, "a@example.com"),
        (4, "b@example.com"),
    ]
