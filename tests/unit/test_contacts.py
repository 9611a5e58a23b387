"""The contact checks (pure): email and phone checks, masking and sandbox destinations; remembered email
verdicts answer exactly as email-validator does, for every shape of address."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email

from passgate import contacts
from passgate.contacts import (
    DestinationCheck,
    check_email,
    check_phone,
    email_verdict,
    is_sandbox_destination,
    mask,
    normalise_destination,
    phone_prefix,
)

LOCALS = [
    "jo", "Jo.Smith", "a+tag", "x_y-z", "o'neil", "a.b.c", "POSTMASTER", "Abuse", "hostmaster", "admin",
    ".lead", "trail.", "two..dots", "has space", '"quoted"', '"q@x"', "ünïcode", "日本", "e\u0301", "a" * 64,
    "b" * 65, "c" * 200, "{curly}|~", "", "x", "a@b", "<angle>", "Jo <jo", "tab\there",
]
DOMAINS = [
    "example.com", "EXAMPLE.com", "sub.example.co.uk", "bücher.example", "xn--bcher-kva.example",
    "localhost", "no-tld", "-bad.example", "bad-.example", "a..b.example", "[127.0.0.1]", "example.test",
    "ex_ample.com", "d" * 63 + ".example", "e" * 64 + ".example", ("f" * 60 + ".") * 4 + "example",
    "xn--ls8h.example", "ＥＸＡＭＰＬＥ.com", "example.com.", "",
]


def reference(value: str) -> tuple[str, str | None]:
    try:
        return (
            validate_email(value, check_deliverability=False, allow_smtputf8=True, test_environment=True).normalized,
            None,
        )
    except EmailNotValidError as exc:
        return value, str(exc)


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "_VERDICTS", {})
    monkeypatch.setattr(contacts, "_DOMAINS", {})


def test_every_local_part_at_every_domain_matches_email_validator() -> None:
    # Every domain is first seen with a plain address, so the later ones take the remembered-domain path.
    for domain in DOMAINS:
        assert email_verdict(f"first@{domain}") == reference(f"first@{domain}")
        for local in LOCALS:
            value = f"{local}@{domain}"
            assert email_verdict(value) == reference(value), value


def test_generated_addresses_match_email_validator() -> None:
    rng = random.Random(20261206)
    alphabet = "abcXYZ019.+-_'!#$%&*/=?^`{|}~ @\"<>()[]\\,;:ü日\u0301"
    for _ in range(4000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 3, 8, 30, 70])))
        domain = rng.choice(DOMAINS)
        value = f"{local}@{domain}"
        assert email_verdict(value) == reference(value), value


def test_length_limit_is_checked_on_the_remembered_path() -> None:
    domain = ("f" * 60 + ".") * 3 + "example"  # 190 characters
    assert email_verdict(f"a@{domain}")[1] is None
    long_local = "l" * 64  # 64 + 1 + 190 = 255 octets, one too many
    assert email_verdict(f"{long_local}@{domain}") == reference(f"{long_local}@{domain}")
    assert email_verdict(f"{long_local}@{domain}")[1] is not None


def test_a_known_domain_skips_the_domain_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert email_verdict("one@bench.example") == ("one@bench.example", None)
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return validate_email(*args, **kwargs)

    monkeypatch.setattr(contacts, "validate_email", counted)
    assert email_verdict("two.x+y@bench.example") == ("two.x+y@bench.example", None)
    assert calls == []
    # A shape outside the certain one still goes to email-validator.
    email_verdict("Postmaster@bench.example")
    assert len(calls) == 1


def test_masking_shows_the_ends_only() -> None:
    assert mask("SMS", "+15551234567") == "+15•••••••67"
    assert mask("EMAIL", "jo@example.com") == "j•@example.com"
    assert mask("EMAIL", "jonathan@example.com") == "jo••••••@example.com"


def test_sandbox_destinations() -> None:
    assert is_sandbox_destination("SMS", "+15005550006")
    assert not is_sandbox_destination("SMS", "+15005550007")
    assert is_sandbox_destination("EMAIL", "Anyone@EXAMPLE.test")
    assert not is_sandbox_destination("EMAIL", "anyone@example.com")


def _example(region: str) -> str:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_phone_checks_name_the_reason() -> None:
    us, gb = (_example("US"), _example("GB"))
    assert check_phone(us, ["US"], reject_voip=False) == DestinationCheck(True, us, country="US")
    assert check_phone(gb, ["US"], reject_voip=False).reason == "SMS to GB is not allowed for this client"
    assert check_phone("not a number", ["US"], reject_voip=False).reason == "not a phone number"
    assert not check_phone(None, ["US"], reject_voip=False).ok


def test_destinations_are_normalised_for_their_counters() -> None:
    assert check_email("Jo@Example.com").value == normalise_destination("EMAIL", "Jo@Example.com").value
    assert normalise_destination("SMS", "+1 415 555 0123").value == "+14155550123"
    assert not normalise_destination("SMS", "call me").ok
    assert phone_prefix("+14155550123") == "+1415555"
