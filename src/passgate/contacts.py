"""Contacts (pure): email and phone checks, the SMS pumping rules, masking, sandbox destinations."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT
from phonenumbers import PhoneNumberType

SANDBOX_PHONE = "+15005550006"
SANDBOX_EMAIL_DOMAIN = "example.test"

_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate numbers are refused",
    PhoneNumberType.SHARED_COST: "shared-cost numbers are refused",
}


@dataclass(frozen=True)
class DestinationCheck:
    ok: bool
    value: str = ""
    reason: str = ""
    country: str | None = None


def is_sandbox_destination(channel: str, value: str) -> bool:
    if channel == "SMS":
        return value == SANDBOX_PHONE
    return value.lower().endswith("@" + SANDBOX_EMAIL_DOMAIN)


def check_email(value: str | None) -> DestinationCheck:
    if not value:
        return DestinationCheck(False, reason="no email address")
    normalised, error = email_verdict(value)
    if error is not None:
        return DestinationCheck(False, reason=f"invalid email address: {error}")
    return DestinationCheck(True, normalised)


_VERDICTS: dict[str, tuple[str, str | None]] = {}
_VERDICTS_MAX = 20_000
# Domains (as given) that email-validator accepted, with the normalised and the IDNA ASCII forms it gave.
_DOMAINS: dict[str, tuple[str, str]] = {}
_DOMAINS_MAX = 20_000
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_MAX_ADDRESS_OCTETS = 254  # RFC 3696 errata 1690, as email-validator checks it


def email_verdict(value: str) -> tuple[str, str | None]:
    """(normalised address, None), or (value, why it is not an address). email-validator's check is the
    costliest step of reading a login body and of starting an email challenge, and the same people come
    back again and again, so the verdict is remembered — for the address as given and for its normalised
    form (which the request body hands on to the challenge), so one check serves both.

    A new address at a domain already accepted skips the domain check (about 70 % of email-validator's
    time), when its local part is plain ASCII dot-atom text (email-validator's own pattern), the only
    local part that email-validator hands back unchanged; see `_known_domain_verdict`."""
    verdict = _VERDICTS.get(value)
    if verdict is None:
        verdict = _known_domain_verdict(value)
        if verdict is None:
            verdict = _validate(value)
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[value] = verdict
        if verdict[1] is None:
            _VERDICTS.setdefault(verdict[0], (verdict[0], None))
    return verdict


def _validate(value: str) -> tuple[str, str | None]:
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=True, test_environment=True)
    except EmailNotValidError as exc:
        return value, str(exc)
    local, _, domain = value.rpartition("@")
    if value.count("@") == 1 and DOT_ATOM_TEXT.match(local) and result.domain and result.ascii_domain:
        if len(_DOMAINS) >= _DOMAINS_MAX:
            _DOMAINS.clear()
        _DOMAINS[domain] = (result.domain, result.ascii_domain)
    return result.normalized, None


def _known_domain_verdict(value: str) -> tuple[str, None] | None:
    """The verdict email-validator would give, without asking it again about the domain; None when this
    address is not of the one shape where that is certain: one `@`, a local part matching email-validator's
    ASCII dot-atom pattern (returned as is: no quoting, no Unicode normalisation) that is not one of the
    case-insensitive mailbox names (which it lowercases), a domain string it accepted before (domain checks
    depend on the domain alone), and every form of the address within its length limit. Anything else is
    checked in full (tests/unit/test_contacts.py compares both on generated addresses)."""
    local, at, domain = value.rpartition("@")
    if not at or "@" in local:
        return None
    known = _DOMAINS.get(domain)
    if known is None or not DOT_ATOM_TEXT.match(local) or local.lower() in _CASE_INSENSITIVE:
        return None
    normalised = f"{local}@{known[0]}"
    for form in (value, normalised, f"{local}@{known[1]}"):
        if len(form.encode()) > _MAX_ADDRESS_OCTETS:
            return None
    return normalised, None


@lru_cache(maxsize=20_000)
def is_possible_phone(e164: str) -> bool:
    """Whether an E.164 number has a length its country code allows (`+12` has none): the check a request
    body gets, so a number that can never receive an SMS is refused naming its field, not at send time.
    Remembered: the same numbers come back, and parsing costs more than the rest of a body's checks."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_possible_number(number))


def check_phone(value: str | None, allowed_countries: list[str], reject_voip: bool) -> DestinationCheck:
    """E.164 number that is valid, in an allowed country, and not of a type used for SMS pumping."""
    if not value:
        return DestinationCheck(False, reason="no phone number")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return DestinationCheck(False, reason="not a phone number")
    if not phonenumbers.is_valid_number(number):
        return DestinationCheck(False, reason="not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number)
    if region not in allowed_countries:
        return DestinationCheck(False, e164, f"SMS to {region} is not allowed for this client", region)
    ntype = phonenumbers.number_type(number)
    if ntype in _REFUSED_TYPES:
        return DestinationCheck(False, e164, _REFUSED_TYPES[ntype], region)
    if reject_voip and ntype == PhoneNumberType.VOIP:
        return DestinationCheck(False, e164, "VoIP numbers are refused by this client's settings", region)
    return DestinationCheck(True, e164, country=region)


def normalise_destination(channel: str, value: str | None) -> DestinationCheck:
    """An email address or phone number in the form challenges store and hash it (normalised address,
    E.164 number), whatever the client's country and VoIP rules: for finding a destination's counters."""
    if channel == "EMAIL":
        return check_email(value)
    if not value:
        return DestinationCheck(False, reason="no phone number")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return DestinationCheck(False, reason="must be a phone number in E.164 form, e.g. +15551234567")
    if not phonenumbers.is_possible_number(number):
        return DestinationCheck(False, reason="not a possible phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return DestinationCheck(True, e164, country=phonenumbers.region_code_for_number(number))


def phone_prefix(e164: str) -> str:
    """The number less its last four digits: the unit SMS-pumping rings rotate through."""
    return e164[:-4] if len(e164) > 8 else e164


def mask(channel: str, value: str) -> str:
    if channel == "SMS":
        return value[:3] + "•" * max(0, len(value) - 5) + value[-2:]
    local, _, domain = value.partition("@")
    shown = local[:1] if len(local) <= 3 else local[:2]
    return f"{shown}{'•' * max(1, len(local) - len(shown))}@{domain}"
