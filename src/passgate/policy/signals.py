"""Facts about a request that conditions can read (the catalogue is `fields`). Derived signals are computed
only when the active set reads them: the compiled set knows every field path its conditions and raw CEL
read, and its `fields.SignalPlan` names the signals to compute."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import phonenumbers
from sqlalchemy.orm import Session

from passgate.policy import queries
from passgate.policy.fields import SignalPlan, dimension_keys, lookup
from passgate.policy.lists import ListCache
from passgate.policy.velocity import VelocityStore

FREE_PROVIDERS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "proton.me",
        "protonmail.com",
        "zoho.com",
        "qq.com",
        "163.com",
        "126.com",
        "naver.com",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "libero.it",
        "t-online.de",
        "tutanota.com",
        "fastmail.com",
        "hey.com",
    }
)
LINE_TYPES = {
    0: "FIXED_LINE",
    1: "MOBILE",
    2: "FIXED_LINE_OR_MOBILE",
    3: "TOLL_FREE",
    4: "PREMIUM_RATE",
    5: "SHARED_COST",
    6: "VOIP",
    7: "PERSONAL_NUMBER",
    8: "PAGER",
    9: "UAN",
    10: "VOICEMAIL",
    99: "UNKNOWN",
}


def request_facts(event_type: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request as CEL facts, every known attribute present (null when absent)."""
    person = body.get("person") or {}
    name = person.get("name") or {}
    account = body.get("account") or {}
    return {
        "eventType": event_type,
        "inquiryId": body.get("inquiryId"),
        "channel": body.get("channel"),
        "deviceSessionId": body.get("deviceSessionId"),
        "userIp": body.get("userIp"),
        "loginUrl": body.get("loginUrl"),
        "accountCreationUrl": body.get("accountCreationUrl"),
        "preferredLanguageCode": body.get("preferredLanguageCode"),
        "person": {
            "name": {
                "first": name.get("first"),
                "last": name.get("last"),
                "preferred": name.get("preferred"),
            },
            "emailAddress": person.get("emailAddress"),
            "phoneNumber": person.get("phoneNumber"),
        },
        "account": {
            "id": account.get("id"),
            "username": account.get("username"),
            "type": account.get("type"),
            "creationDateTime": account.get("creationDateTime"),
            "accountIsActive": account.get("accountIsActive"),
            "ageDays": None,
        },
        "customFields": body.get("customFields") or {},
    }


def device_facts(
    session: Session, client_id: str, account_id: str | None, device_session_id: str
) -> dict[str, Any]:
    if account_id is None:
        return {"seenForAccount": False, "trusted": False, "banned": False}
    rows = queries.device_marks(session.connection(), client_id, account_id, device_session_id)
    if not rows:
        return {"seenForAccount": False, "trusted": False, "banned": False}
    seen, trust_state = rows[0]
    trusted = trust_state == "TRUSTED"
    return {
        "seenForAccount": bool(seen) or trusted,
        "trusted": trusted,
        "banned": trust_state == "BANNED",
    }


@lru_cache(maxsize=20_000)
def email_facts(address: str | None) -> dict[str, Any]:
    from disposable_email_domains import blocklist

    if not address or "@" not in address:
        return {"domain": None, "disposable": False, "freeProvider": False, "valid": False}
    domain = address.rsplit("@", 1)[1].lower()
    return {
        "domain": domain,
        "disposable": domain in blocklist,
        "freeProvider": domain in FREE_PROVIDERS,
        "valid": True,  # the request schema already refused malformed addresses
    }


@lru_cache(maxsize=20_000)
def phone_facts(number: str | None) -> dict[str, Any]:
    if not number:
        return {"country": None, "lineType": None, "valid": False}
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return {"country": None, "lineType": None, "valid": False}
    valid = phonenumbers.is_valid_number(parsed)
    return {
        "country": phonenumbers.region_code_for_number(parsed) if valid else None,
        "lineType": LINE_TYPES.get(phonenumbers.number_type(parsed), "UNKNOWN") if valid else None,
        "valid": valid,
    }


@lru_cache(maxsize=1)
def _geoip() -> Any:
    from geoip2fast import GeoIP2Fast

    # The IPv6 data file covers IPv4 too.
    return GeoIP2Fast(verbose=False, geoip2fast_data_file="geoip2fast-ipv6.dat.gz")


@lru_cache(maxsize=20_000)
def ip_facts(ip: str | None) -> dict[str, Any]:
    if not ip:
        return {"country": None, "private": False, "version": None}
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return {"country": None, "private": False, "version": None}
    private = not addr.is_global
    country = None
    if not private:
        code = _geoip().lookup(str(addr)).country_code
        country = code if code and code != "--" else None
    return {"country": country, "private": private, "version": addr.version}


def account_age_days(created: Any, now: datetime) -> float | None:
    when = _creation_time(str(created)) if created else None
    if when is None:
        return None
    return round((now - when).total_seconds() / 86400, 3)


@lru_cache(maxsize=20_000)
def _creation_time(created: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass
class SignalSources:
    velocity: VelocityStore
    lists: ListCache


def build_facts(
    session: Session,
    client_id: str,
    event_type: str,
    body: dict[str, Any],
    plan: SignalPlan,
    sources: SignalSources,
    now: datetime,
) -> dict[str, Any]:
    """The request's facts and the signals of the plan (a compiled set's `signals`), and nothing more.
    Live decisions and simulations both build their facts here."""
    facts = request_facts(event_type, body)
    person = facts["person"]
    if plan.device:
        facts["device"] = device_facts(session, client_id, facts["account"]["id"], body["deviceSessionId"])
    if plan.email:
        facts["email"] = email_facts(person["emailAddress"])
    if plan.phone:
        facts["phone"] = phone_facts(person["phoneNumber"])
    if plan.ip:
        facts["ip"] = ip_facts(facts["userIp"])
    if plan.account_age:
        facts["account"]["ageDays"] = account_age_days(facts["account"]["creationDateTime"], now)
    if plan.velocity:
        facts["velocity"] = sources.velocity.counts(
            session, client_id, dimension_keys(body), plan.velocity, now
        )
    if plan.lists:
        memberships = sources.lists.memberships(session, client_id, {name for _, name in plan.lists})
        in_list: dict[str, bool] = {}
        for field, name in plan.lists:
            membership = memberships.get(name)
            in_list[f"{field}|{name}"] = membership is not None and membership.contains(lookup(facts, field))
        facts["inList"] = in_list
    return facts
